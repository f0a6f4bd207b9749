"""What may skip an optimizer step or end a run early: a non-finite loss or gradient.

Every process takes the same decision: the flags are summed across processes once per optimizer step.
"""

from __future__ import annotations

import logging
import math

import torch

logger = logging.getLogger("fluxflow.train")


class NonFiniteError(RuntimeError):
    """Too many optimizer steps in a row had a non-finite loss or gradient, or weights became non-finite."""


def step_is_finite(logs: dict, grads: bool = True) -> bool:
    """Whether every loss and (with ``grads``) every gradient norm of this step is finite; a NaN/Inf
    gradient gives a NaN/Inf norm. Under fp16 an overflowing gradient is the grad scaler's to skip, so there
    only the losses count."""
    keys = ("loss/", "grad_norm/") if grads else ("loss/",)
    return all(math.isfinite(float(v)) for k, v in logs.items() if k.startswith(keys))


def agree(accelerator, *flags: bool) -> list[bool]:
    """Each flag, true on any process (one collective per call under several processes)."""
    if accelerator.num_processes == 1:
        return list(flags)
    summed = accelerator.reduce(torch.tensor([float(f) for f in flags], device=accelerator.device), "sum")
    return [bool(v > 0) for v in summed.tolist()]


def nonfinite_weight(models: dict) -> str | None:
    """The name of the first weight holding NaN or Inf (such a model is never saved), else ``None``."""
    for name, model in models.items():
        for key, value in model.state_dict().items():
            if value.is_floating_point() and not torch.isfinite(value).all():
                return f"{name}.{key}"
    return None
