"""Small building blocks shared by several models: activation factory, feed-forward, group counts."""

from __future__ import annotations

import torch
import torch.nn as nn

from .bezier import BezierActivation

ACTIVATIONS = ("bezier", "silu", "gelu")


def check_activation(name: str) -> str:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; allowed: {', '.join(ACTIVATIONS)}")
    return name


def num_groups(channels: int, max_groups: int = 32) -> int:
    """The largest group count <= ``max_groups`` that divides ``channels`` (for GroupNorm)."""
    return next(g for g in range(min(max_groups, channels), 0, -1) if channels % g == 0)


def plain_activation(name: str) -> nn.Module:
    return {"silu": nn.SiLU, "gelu": nn.GELU}[name]()


class BezierGate(nn.Module):
    """``C -> C`` Bezier non-linearity for places that need a drop-in activation (conv feature maps):
    a pointwise projection to the five chunks ``[t | p0..p3]`` followed by :class:`BezierActivation`."""

    def __init__(self, channels: int, conv: bool):
        super().__init__()
        self.proj = nn.Conv2d(channels, 5 * channels, 1) if conv else nn.Linear(channels, 5 * channels)
        self.act = BezierActivation()

    def forward(self, x):
        return self.act(self.proj(x))


def make_activation(name: str, channels: int, conv: bool = False) -> nn.Module:
    """A ``C -> C`` activation module by name (``conv=True`` for NCHW feature maps)."""
    check_activation(name)
    return BezierGate(channels, conv) if name == "bezier" else plain_activation(name)


class FeedForward(nn.Module):
    """Token MLP ``dim -> hidden -> dim``; with Bezier the first projection emits the five chunks directly
    (``Linear(dim, 5*hidden) -> BezierActivation``), the pattern the design names."""

    def __init__(self, dim: int, hidden_dim: int, activation: str = "bezier", out_dim: int | None = None):
        super().__init__()
        check_activation(activation)
        width = 5 * hidden_dim if activation == "bezier" else hidden_dim
        self.fc1 = nn.Linear(dim, width)
        self.act = BezierActivation() if activation == "bezier" else plain_activation(activation)
        self.fc2 = nn.Linear(hidden_dim, out_dim or dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


def run_block(owner: nn.Module, block: nn.Module, *args):
    """Call ``block(*args)``, through ``owner``'s gradient-checkpointing function when diffusers' switch
    (``enable_gradient_checkpointing``) has turned it on and gradients are being recorded."""
    if owner.gradient_checkpointing and torch.is_grad_enabled():
        return owner._gradient_checkpointing_func(block, *args)
    return block(*args)
