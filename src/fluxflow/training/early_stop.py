"""Ending a run when a metric stops improving (``--early_stop_metric``; a pipeline stage's ``transition``).

Like Keras' and Lightning's ``EarlyStopping``: each time the metric is logged (a training loss at every log
line, a validation metric at every validation) it counts as an improvement when it beats the best value so
far by more than ``--early_stop_threshold``; ``--early_stop_patience`` evaluations in a row without one end
the run. The record lives in ``TrainProgress.early_stop``, saved with every checkpoint: a resumed run ends
at the same step as an uninterrupted one.
"""

from __future__ import annotations

import math

from .config import TrainConfig
from .errors import ConfigError


def observe(cfg: TrainConfig, record: dict, step: int, values: dict) -> str | None:
    """Update ``record`` with this evaluation of ``cfg.early_stop_metric`` in ``values`` (nothing when the
    metric is not among them); the reason the run ends, once patience has run out, else ``None``."""
    metric = cfg.early_stop_metric
    if not metric or record["ended"] is not None or not _evaluated(metric, values):
        return record["ended"]
    if metric not in values:
        logged = ", ".join(sorted(k for k in values if k.startswith(metric.split("/")[0] + "/")))
        raise ConfigError(f"--early_stop_metric {metric}: this run logs no such value; it logs {logged}")
    value, best = float(values[metric]), record["best"]
    sign = 1.0 if cfg.early_stop_mode == "min" else -1.0
    if math.isfinite(value) and (best is None or sign * (best - value) > cfg.early_stop_threshold):
        record.update(best=value, best_step=step, bad=0)
    else:
        record["bad"] += 1
    if record["bad"] >= cfg.early_stop_patience:
        record["ended"] = (f"{metric} did not improve by more than {cfg.early_stop_threshold:g} for "
                          f"{record['bad']} evaluations (best {record['best']:.6g} at step {record['best_step']})")
    return record["ended"]


def _evaluated(metric: str, values: dict) -> bool:
    """Whether ``values`` is a row the metric belongs to: a validation row for ``val/``, a training row else."""
    return ("val/seconds" in values) == metric.startswith("val/")
