"""Metrics: one JSON line per log step in ``logs/metrics.jsonl``, plus the Accelerate trackers."""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..atomic import write_text_atomically


class MetricsLog:
    """Appends ``{"step": ..., name: value, ...}`` lines (main process only); non-finite values become null."""

    def __init__(self, accelerator, folder: Path, resumed_at: int = 0):
        self.accelerator = accelerator
        self.path = Path(folder) / "metrics.jsonl"
        if accelerator.is_main_process:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._truncate(resumed_at)

    def _truncate(self, step: int) -> None:
        """Drop lines after the step a run starts from: a resumed run logs those steps again (once)."""
        if not self.path.exists():
            return
        rows = [row for row in read_metrics(self.path) if row["step"] <= step]
        write_text_atomically(self.path, "".join(json.dumps(row) + "\n" for row in rows))

    def log(self, step: int, values: dict[str, float]) -> None:
        clean = {k: (float(v) if math.isfinite(float(v)) else None) for k, v in values.items()}
        self.accelerator.log({k: v for k, v in clean.items() if v is not None}, step=step)
        if self.accelerator.is_main_process:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"step": step, **clean}) + "\n")


def read_metrics(path: str | Path) -> list[dict]:
    """All lines of a ``metrics.jsonl`` (for plots and tests). A last line that does not parse is a line being
    written by a running training and is left out; a bad line before it is an error."""
    with open(path, encoding="utf-8") as f:
        lines = [line for line in f if line.strip()]
    rows = [json.loads(line) for line in lines[:-1]]
    try:
        rows += [json.loads(line) for line in lines[-1:]]
    except json.JSONDecodeError:
        pass
    return rows
