"""Optimizers and LR schedulers per model component, from an optimizer/scheduler config (docs/SCHEDULERS.md).

Imports go one way: ``schema`` (what a config may hold) <- ``config`` (reading and validating one) <-
``build`` (torch optimizers and schedulers); ``lr_file`` (``--preserve_lr``) needs only ``schema``.
"""

from .build import (ComponentOptim, OptimSchedSet, build_optimizer, build_optimizers_and_schedulers, build_scheduler,
                    lr_curves, parameter_groups)
from .config import SECTIONS, OptimSchedConfig, load_optim_sched_config
from .lr_file import LR_FILE, load_lrs, save_lrs
from ..errors import ConfigError
from .schema import DEFAULT_LR

__all__ = [
    "DEFAULT_LR", "LR_FILE", "SECTIONS", "ComponentOptim", "ConfigError", "OptimSchedConfig", "OptimSchedSet", "build_optimizer",
    "build_optimizers_and_schedulers", "build_scheduler", "load_lrs", "load_optim_sched_config", "lr_curves",
    "parameter_groups", "save_lrs",
]
