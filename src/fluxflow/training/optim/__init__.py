"""Optimizers and LR schedulers per model component, from an optimizer/scheduler config (docs/SCHEDULERS.md).

Imports go one way: ``schema`` (what a config may hold) <- ``config`` (reading and validating one) <-
``build`` (torch optimizers and schedulers); ``imported`` (optimizers by import path) serves ``schema``;
``lr_file`` (``--preserve_lr``) needs only ``schema``; ``train_eval`` switches schedule-free optimizers'
train/eval modes.
"""

from .build import (ComponentOptim, OptimSchedSet, build_optimizer, build_optimizers_and_schedulers,
                    build_scheduler, lr_curves, parameter_groups)
from .config import SECTIONS, OptimSchedConfig, load_optim_sched_config
from .imported import ESTIMATED_LR, OptimizerImportError, resolve_optimizer
from .lr_file import LR_FILE, load_lrs, save_lrs
from ..errors import ConfigError
from .schema import DEFAULT_LR
from .train_eval import ensure_train_mode, evaluation_mode, needs_train_eval

__all__ = [
    "DEFAULT_LR", "ESTIMATED_LR", "LR_FILE", "SECTIONS", "ComponentOptim", "ConfigError", "OptimSchedConfig",
    "OptimSchedSet", "OptimizerImportError", "build_optimizer", "build_optimizers_and_schedulers",
    "build_scheduler", "ensure_train_mode", "evaluation_mode", "load_lrs", "load_optim_sched_config",
    "lr_curves", "needs_train_eval", "parameter_groups", "resolve_optimizer", "save_lrs",
]
