"""Train and eval modes of schedule-free optimizers (``schedulefree.AdamWScheduleFree``, ...).

Such an optimizer keeps the weights at a training point during training; ``optimizer.eval()`` moves them to
the averaged point that is meant for evaluation, sampling and saving, ``optimizer.train()`` moves them back.
Every process must switch together (each holds its own copy of the weights). Other optimizers are left alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch


def _unwrapped(optimizer: Any) -> Any:
    """The optimizer inside Accelerate's wrapper(s) (DeepSpeed's too), which always define train()/eval()."""
    from accelerate.optimizer import AcceleratedOptimizer

    while isinstance(optimizer, AcceleratedOptimizer):
        optimizer = optimizer.optimizer
    return optimizer


def needs_train_eval(optimizer: Any) -> bool:
    """Whether ``optimizer`` (or the one an Accelerate wrapper holds) has schedule-free train/eval modes."""
    inner = type(_unwrapped(optimizer))
    return callable(getattr(inner, "train", None)) and callable(getattr(inner, "eval", None))


def _in_train_mode(optimizer: Any) -> bool:
    groups = _unwrapped(optimizer).param_groups
    return bool(groups[0].get("train_mode", True)) if groups else False


def _optimizers(optimizers: Any) -> list[Any]:
    """The optimizers of an ``OptimSchedSet`` or mapping of ``ComponentOptim``, a ``ComponentOptim``, one
    optimizer, or an iterable of optimizers."""
    if isinstance(optimizers, torch.optim.Optimizer):
        return [optimizers]
    if hasattr(optimizers, "optimizer") and hasattr(optimizers, "scheduler"):  # a ComponentOptim
        return [optimizers.optimizer]
    items: Iterable[Any] = optimizers.values() if isinstance(optimizers, Mapping) else optimizers
    return [o for item in items for o in _optimizers(item)]


@contextmanager
def evaluation_mode(optimizers: Any) -> Iterator[list[Any]]:
    """Schedule-free optimizers in eval mode (weights at their averaged point) inside the block, back in train
    mode after it. Only those in train mode are switched, so blocks nest; yields the switched optimizers.

    The training-point weights are copied before and put back after, bit for bit: ``optimizer.train()`` would
    compute them back from the average with rounding, and a run that saved and sampled would then drift from
    one resumed from its state (which holds the training point)."""
    switched = [o for o in _optimizers(optimizers) if needs_train_eval(o) and _in_train_mode(o)]
    kept = [[p.detach().clone() for group in _unwrapped(o).param_groups for p in group["params"]] for o in switched]
    for optimizer in switched:
        optimizer.eval()
    try:
        yield switched
    finally:
        for optimizer, copies in zip(switched, kept):
            params = [p for group in _unwrapped(optimizer).param_groups for p in group["params"]]
            with torch.no_grad():
                for p, copy in zip(params, copies):
                    p.copy_(copy)
            for group in _unwrapped(optimizer).param_groups:
                group["train_mode"] = True


def ensure_train_mode(optimizers: Any) -> None:
    """Put every schedule-free optimizer in train mode: after building, and after loading a state saved in
    eval mode (``accelerator.load_state``), before the next training step."""
    for optimizer in _optimizers(optimizers):
        if needs_train_eval(optimizer):
            optimizer.train()
