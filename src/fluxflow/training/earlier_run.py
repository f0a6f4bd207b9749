"""An earlier run's results in ``--output_path`` are never overwritten by a new run.

A new run (no ``--resume_from_checkpoint``) in a folder holding an earlier run's checkpoints is an error,
unless it continues from weights (``--model_checkpoint`` / ``--preserve_lr``, the earlier release's way): then
everything the earlier run wrote (its state folders, ``checkpoint.safetensors``, ``lr_sav.json``, ``vae/``,
``pipeline/``, ``samples/``, ``logs/``) moves into ``state.before-<time>/``, and the paths this run reads from
it (the ``--model_checkpoint`` and ``lr_sav.json``) follow it there.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from .checkpoint import CHECKPOINT_FILE, STATE_DIR, state_folders
from .errors import ConfigError

logger = logging.getLogger("fluxflow.train")

# what a run writes at the top of its output folder (the state folder moves first, as the aside folder)
RESULTS = (CHECKPOINT_FILE, "lr_sav.json", "vae", "pipeline", "samples", "logs")


def has_earlier_results(output_path: str | Path) -> bool:
    """True when the folder holds a run's checkpoints (state folders or ``checkpoint.safetensors``)."""
    return bool(state_folders(output_path)) or (Path(output_path) / CHECKPOINT_FILE).is_file()


def set_aside_earlier_run(output_path: str | Path, continuing: bool) -> Path | None:
    """Move an earlier run's results into ``state.before-<time>/`` and return that folder (``None`` when the
    folder holds no earlier run). Without ``continuing`` an earlier run is an error naming the way on."""
    out = Path(output_path)
    if not has_earlier_results(out):
        return None
    folders = state_folders(out)
    if not continuing:
        what = f"the checkpoints of an earlier run (up to {folders[-1].name})" if folders else \
            f"an earlier run's {CHECKPOINT_FILE}"
        raise ConfigError(f"--output_path {output_path} holds {what}: continue it with --resume_from_checkpoint "
                          "latest, or choose another --output_path")
    aside = out / f"{STATE_DIR}.before-{time.strftime('%Y%m%d-%H%M%S')}"
    if (out / STATE_DIR).is_dir():
        os.replace(out / STATE_DIR, aside)
    aside.mkdir(exist_ok=True)
    for name in RESULTS:
        if (out / name).exists():
            os.replace(out / name, aside / name)
    if (aside / "logs" / "metrics.jsonl").exists():  # where earlier versions kept it
        os.replace(aside / "logs" / "metrics.jsonl", aside / "metrics.jsonl")
    logger.warning("the earlier run's results (checkpoints, exports, samples, logs) moved to %s", aside)
    return aside


def follow(path: str | None, output_path: str | Path, aside: Path | None) -> str | None:
    """``path`` as it is now: moved into ``aside`` when it was one of the earlier run's results."""
    if path is None or aside is None:
        return path
    out, target = Path(output_path).resolve(), Path(path).resolve()
    if out in target.parents and target.relative_to(out).parts[0] in RESULTS:
        moved = aside / target.relative_to(out)
        logger.info("%s moved with the earlier run: reading %s", path, moved)
        return str(moved)
    return path
