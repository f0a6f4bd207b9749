"""The Runs tab's data: each training run (each stage of a pipeline run) with its state, latest losses and
validation metrics, its curves and its sample grids. Read with :mod:`fluxflow.report.run_data`, the report
page's reader; files are only read, and a line or image being written is skipped, never an error."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from ..report.run_data import (chart_groups, chart_title, finite_number, grid_files, numeric_names,
                               read_rows_skipping_bad, rows_by_step, stage_folders, training_modes)
from .access import Access

RUN_END = "run_end.json"  # in logs/: written by training when a run (or a stage) has finished
MAX_POINTS = 2000  # per series in a plot: a long run's log is thinned evenly, its last point kept
SUMMARY_COLUMNS = ["run", "stage", "status", "step", "last losses", "validation"]


@dataclass(frozen=True)
class RunEntry:
    """One run of the tab: ``label`` (its path from the folder above ``--runs``), its ``folder``, and for a
    pipeline run's stage the stage folder's name."""

    label: str
    folder: Path
    stage: str | None = None


def run_entries(access: Access) -> list[RunEntry]:
    """Every run under ``--runs``; a pipeline run as one entry per stage (each stage logs on its own)."""
    entries = []
    for run in access.run_folders():
        base = run.relative_to(access.runs.parent)
        stages = stage_folders(run)
        entries += ([RunEntry(str(base / "stages" / s.name), s, s.name) for s in stages]
                    or [RunEntry(str(base), run)])
    return entries


def latest_run(entries: list[RunEntry]) -> str | None:
    """The label of the run that logged last (the one training now, most likely): the tab opens on it."""
    def logged(entry):
        try:
            return (entry.folder / "logs" / "metrics.jsonl").stat().st_mtime
        except OSError:
            return 0.0
    return max(entries, key=logged).label if entries else None


_rows_cache: dict[Path, tuple[tuple[int, int], list[dict]]] = {}


def metric_rows(folder: Path) -> list[dict]:
    """The rows of ``logs/metrics.jsonl`` in step order, re-read only when the file changed (size or time)."""
    path = folder / "logs" / "metrics.jsonl"
    try:
        stat = path.stat()
    except OSError:
        return []
    stamp = (stat.st_mtime_ns, stat.st_size)
    cached = _rows_cache.get(path)
    if cached is None or cached[0] != stamp:
        try:
            cached = (stamp, rows_by_step(read_rows_skipping_bad(path)))
        except OSError:
            return []
        _rows_cache[path] = cached
    return cached[1]


def latest_values(rows: list[dict], prefix: str) -> dict[str, float]:
    """The last finite value of every metric named ``prefix...`` (a validation row is logged at its step)."""
    latest = {}
    for row in rows:
        latest.update({k: v for k, v in row.items() if k.startswith(prefix) and finite_number(v) is not None})
    return dict(sorted(latest.items()))


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # missing, being replaced, or not JSON
        return None


def status(folder: Path, now: float | None = None) -> str:
    """``finished (reason)`` from ``logs/run_end.json``, else how long ago the run last logged."""
    end = _read_json(folder / "logs" / RUN_END)
    if isinstance(end, dict):
        return f"finished ({end.get('reason', 'done')})"
    try:
        age = (now or time.time()) - (folder / "logs" / "metrics.jsonl").stat().st_mtime
    except OSError:
        return "not started"
    return f"last log {_ago(age)}"


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s ago"
    return f"{seconds // 60} min ago" if seconds < 7200 else f"{seconds // 3600} h ago"


def stage_text(entry: RunEntry) -> str:
    """The stage's name and the training modes its config switches on (``2-flow: train_diff_full``)."""
    modes = ", ".join(training_modes(_read_json(entry.folder / "logs" / "train_config.json")))
    return ": ".join(part for part in (entry.stage, modes) if part) or "-"


def summary(entry: RunEntry) -> dict:
    """A run's row of the table: stage, status, last step, latest losses and validation metrics."""
    rows = metric_rows(entry.folder)
    return {"run": entry.label, "stage": stage_text(entry), "status": status(entry.folder),
            "step": rows[-1]["step"] if rows else None, "losses": latest_values(rows, "loss/"),
            "validation": latest_values(rows, "val/")}


def summary_rows(entries: list[RunEntry]) -> list[list]:
    """:data:`SUMMARY_COLUMNS` for each run, metrics as ``name value`` text."""
    out = []
    for entry in entries:
        s = summary(entry)
        out.append([s["run"], s["stage"], s["status"], "-" if s["step"] is None else s["step"],
                    _values_text(s["losses"], "loss/"), _values_text(s["validation"], "val/")])
    return out


def _values_text(values: dict[str, float], prefix: str) -> str:
    return ", ".join(f"{k[len(prefix):]} {v:.4g}" for k, v in values.items()) or "-"


def curve_groups(rows: list[dict]) -> dict[str, str]:
    """``{group: title}`` of the charts the run's metrics make (losses, learning rates, validation groups)."""
    return {group: chart_title(group) for group in chart_groups(numeric_names(rows))}


def curve_points(rows: list[dict], group: str) -> list[dict]:
    """Long-format points ``{"step", "value", "series"}`` of one chart group, at most :data:`MAX_POINTS` per
    series (logged nulls are left out)."""
    names = chart_groups(numeric_names(rows)).get(group, [])
    points = []
    for name in names:
        series = [(r["step"], finite_number(r[name])) for r in rows if name in r]
        series = [(s, v) for s, v in series if v is not None]
        keep = max(1, -(-len(series) // MAX_POINTS))
        thinned = series[::keep] + ([series[-1]] if series and (len(series) - 1) % keep else [])
        points += [{"step": s, "value": float(v), "series": name} for s, v in thinned]
    return points


def grid_steps(folder: Path) -> dict[str, list[tuple[int, Path]]]:
    """The run's sample grids by kind (``vae``, ``flow``), each ``(step, path)`` in step order."""
    return grid_files(folder / "samples")


def load_grid(steps: list[tuple[int, Path]], index: int):
    """``(index, step, image)`` of the grid at ``index`` (clamped), or of the nearest earlier one that reads
    in full (a grid being written is skipped); ``(None, None, None)`` when none does."""
    from PIL import Image

    last = max(0, min(index, len(steps) - 1))
    for i in range(last, -1, -1):
        try:
            with Image.open(steps[i][1]) as image:
                image.load()  # every byte: a torn file fails here, not in the page
                return i, steps[i][0], image.copy()
        except Exception:  # noqa: BLE001 (PIL raises many types for a torn or foreign file: skip it)
            continue
    return None, None, None
