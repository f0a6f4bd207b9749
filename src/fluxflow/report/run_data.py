"""Reading a training run's output folder: its metrics, sample grids, modes and stages. One reader for the
report page (``fluxflow-report``) and the app's Runs tab; it only reads, and imports neither torch nor gradio.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

MODES = ("train_vae", "gan_training", "train_spade", "train_diff", "train_diff_full", "train_text_encoder")
GRID_TITLES = {"vae": "VAE reconstructions", "flow": "Flow samples"}
GRID_NAME = re.compile(r"^(vae|flow)_grid_(\d+)\.webp$")  # training/grids.py's grid_path
CHART_TITLES = {"loss": "Losses", "lr": "Learning rates", "grad_norm": "Gradient norms", "val": "Validation"}
RUN_PARTS = ("logs/metrics.jsonl", "samples", "pipeline")  # any of these: a training run's output folder


def finite_number(value) -> float | int | None:
    """``value`` when it is a finite int or float (not a bool), else None (a null or a NaN in the log)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return value if ok else None


def rows_by_step(rows) -> list[dict]:
    """The metric rows that have a numeric step, in step order (validation rows share their step)."""
    return sorted((r for r in rows or [] if isinstance(r, dict) and finite_number(r.get("step")) is not None),
                  key=lambda r: r["step"])


def read_rows_skipping_bad(path: Path) -> list[dict]:
    """Every line of a ``metrics.jsonl`` that parses as a JSON object; other lines (one being written by a
    running training, a torn or foreign line) are skipped, so a live file can always be read."""
    rows = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict):
                rows.append(row)
    return rows


def chart_groups(names) -> dict[str, list[str]]:
    """Series names by chart: ``loss``, ``lr`` and ``grad_norm`` by their first part; validation by its second
    (``val/vae``, ``val/flow``, ...; two-part names such as ``val/seconds`` go to ``val``)."""
    groups: dict[str, list[str]] = {}
    for name in sorted(names):
        parts = name.split("/")
        if parts[0] in ("loss", "lr", "grad_norm") and len(parts) > 1:
            groups.setdefault(parts[0], []).append(name)
        elif parts[0] == "val" and len(parts) > 1:
            groups.setdefault("/".join(parts[:2]) if len(parts) > 2 else "val", []).append(name)
    order = ["loss", "lr", "grad_norm"]  # then val/<sub> by name, then the other val/ values (times, mostly)
    rank = {group: order.index(group) if group in order else 3 + (group == "val") for group in groups}
    return dict(sorted(groups.items(), key=lambda kv: (rank[kv[0]], kv[0])))


def chart_title(group: str) -> str:
    return CHART_TITLES.get(group) or f"Validation: {group.split('/', 1)[1]}"


def numeric_names(rows: list[dict]) -> set[str]:
    return {k for r in rows for k, v in r.items() if finite_number(v) is not None}


def series(rows: list[dict], groups: dict[str, list[str]]) -> dict[str, list]:
    """``{name: [[step, value or None], ...]}`` for every name in ``groups`` (None: a logged null, a gap)."""
    return {name: [[r["step"], finite_number(r[name])] for r in rows if name in r]
            for names in groups.values() for name in names}


def grid_files(samples: Path) -> dict[str, list[tuple[int, Path]]]:
    """The grid images in ``samples/`` by kind (``vae``, ``flow``), each as ``(step, path)`` in step order."""
    grids: dict[str, list[tuple[int, Path]]] = {}
    for path in sorted(samples.iterdir()) if samples.is_dir() else []:
        if (match := GRID_NAME.match(path.name)) and path.is_file():
            grids.setdefault(match[1], []).append((int(match[2]), path))
    return {kind: sorted(grids[kind]) for kind in GRID_TITLES if kind in grids}


def training_modes(config: dict | None) -> list[str]:
    """The training modes a run's ``train_config.json`` switches on, in :data:`MODES` order."""
    return [m for m in MODES if isinstance(config, dict) and config.get(m) is True]


def stage_folders(folder: Path) -> list[Path]:
    """A pipeline run's stages (``stages/<i>-<name>/``) in order; none for a one-stage run."""
    stages = folder / "stages"
    return sorted((p for p in stages.glob("*-*") if p.is_dir()), key=_stage_order) if stages.is_dir() else []


def _stage_order(path: Path):
    index = path.name.split("-", 1)[0]
    return (int(index), path.name) if index.isdigit() else (1 << 30, path.name)


def is_run(folder: Path) -> bool:
    """Whether ``folder`` is a training run's output folder (or a pipeline run, holding ``stages/``)."""
    parts = any((folder / part).exists() for part in RUN_PARTS)
    return folder.is_dir() and (parts or bool(stage_folders(folder)))
