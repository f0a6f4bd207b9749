"""``--preserve_lr``: carry the LRs a run ended with into the next run that starts from its weights.

A run writes ``{component: lr}`` to ``lr_sav.json`` next to its checkpoint (``save_lrs``). A later run
started from those weights *without* their optimizer/scheduler state, with ``--preserve_lr``, passes
``load_lrs(...)`` as ``initial_lrs`` to ``build_optimizers_and_schedulers``: each named component starts
its configured schedule from the saved LR instead of the config's ``lr``, so the LR does not jump back
up. A run resumed from full training state restores its schedulers exactly and does not need this.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...atomic import write_text_atomically
from ..errors import ConfigError, did_you_mean
from ..files import read_structured_file
from .schema import COMPONENTS, canonical

LR_FILE = "lr_sav.json"  # the earlier release's file name, kept so its files can be read


_LEGACY_LR_KEYS = {"optimizer_FDiff": "flow", "optimizer_Diff": "vae", "optimizer_te": "text_encoder",
                   "optimizer_Dimg": "discriminator"}


def save_lrs(path: str | os.PathLike, lrs: Any) -> None:
    """Write ``{component: current lr}`` (atomically) for a later ``--preserve_lr`` run.

    ``lrs``: an ``OptimSchedSet`` (its ``.lrs()``) or a mapping component -> lr.
    """
    values = lrs.lrs() if hasattr(lrs, "lrs") else dict(lrs)
    write_text_atomically(path, json.dumps(values, indent=2) + "\n")


def load_lrs(path: str | os.PathLike) -> dict[str, float]:
    """Read the LRs ``save_lrs`` wrote, as ``initial_lrs`` for ``build_optimizers_and_schedulers``.

    Also reads the earlier release's files: ``{"lr": flow, "vae": vae}`` and ``{"optimizer_FDiff": flow,
    "optimizer_Diff": vae, "optimizer_te": ..., "optimizer_Dimg": ...}``.
    """
    data = read_structured_file(Path(path))
    if not isinstance(data, Mapping):
        raise ConfigError(f"must map component -> lr, got {type(data).__name__}", str(path))
    if set(data) == {"lr", "vae"}:
        data = {"flow": data["lr"], "vae": data["vae"]}
    problems, out = [], {}
    for key, value in data.items():
        name = canonical(_LEGACY_LR_KEYS.get(key, key))
        if name not in COMPONENTS:
            problems.append(f"{key!r} is not a component{did_you_mean(key, COMPONENTS)}")
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value < math.inf):
            problems.append(f"{key} must be a positive number, got {value!r}")
        else:
            out[name] = float(value)
    if problems:
        raise ConfigError(problems, str(path))
    return out
