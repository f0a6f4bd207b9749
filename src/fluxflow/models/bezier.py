"""Bezier activations: FluxFlow's learned, input-dependent cubic curves.

``B(t) = (1-t)^3 p0 + 3(1-t)^2 t p1 + 3(1-t) t^2 p2 + t^3 p3``

``BezierActivation`` reads ``t`` and the four control points from its input (five equal channel chunks
``[t | p0 | p1 | p2 | p3]``), so ``Linear(d, 5*h) -> BezierActivation -> h`` is a layer whose non-linearity
is predicted per element. ``TrainableBezier`` instead learns four control points per channel and applies
the curve to ``sigmoid(x)``.

The backward pass is written out by hand (``_BezierFunction``): it saves only the 5-chunk input instead of
the ~10 intermediates autograd would keep, and recomputes the cheap element-wise terms.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

PRE_ACTIVATIONS = ("sigmoid", "tanh", "silu", "relu", "none")


def bezier(t: torch.Tensor, p0, p1, p2, p3) -> torch.Tensor:
    """The cubic Bernstein polynomial at ``t`` (plain autograd; the reference formula)."""
    s = 1 - t
    return s * s * s * p0 + 3 * s * s * t * p1 + 3 * s * t * t * p2 + t * t * t * p3


def _pre_activation(name: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Apply a named pre-activation; return ``(y, dy/dx)`` (``None`` derivative means identity)."""
    if name == "none":
        return x, None
    if name == "sigmoid":
        y = torch.sigmoid(x)
        return y, y * (1 - y)
    if name == "tanh":
        y = torch.tanh(x)
        return y, 1 - y * y
    if name == "silu":
        sig = torch.sigmoid(x)
        return x * sig, sig * (1 + x * (1 - sig))
    if name == "relu":
        return F.relu(x), (x > 0).to(x.dtype)
    raise ValueError(f"unknown pre-activation {name!r}; allowed: {', '.join(PRE_ACTIVATIONS)}")


def _apply_pre(name: str, x: torch.Tensor) -> torch.Tensor:
    return _pre_activation(name, x)[0]


class _BezierFunction(torch.autograd.Function):
    """Fused Bezier over five chunks along ``dim`` with an analytic, recomputing backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, dim: int, t_pre: str, p_pre: str) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.dim, ctx.t_pre, ctx.p_pre = dim, t_pre, p_pre
        a_t, a0, a1, a2, a3 = x.chunk(5, dim=dim)
        t = _apply_pre(t_pre, a_t)
        return bezier(t, *(_apply_pre(p_pre, a) for a in (a0, a1, a2, a3)))

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (x,) = ctx.saved_tensors
        a_t, *a_p = x.chunk(5, dim=ctx.dim)
        t, dt = _pre_activation(ctx.t_pre, a_t)
        ps, dps = zip(*(_pre_activation(ctx.p_pre, a) for a in a_p))
        p0, p1, p2, p3 = ps
        s = 1 - t
        # dB/dt = 3 [ s^2 (p1 - p0) + 2 s t (p2 - p1) + t^2 (p3 - p2) ]
        dB_dt = 3 * (s * s * (p1 - p0) + 2 * s * t * (p2 - p1) + t * t * (p3 - p2))
        weights = (s * s * s, 3 * s * s * t, 3 * s * t * t, t * t * t)
        g_t = grad_out * dB_dt if dt is None else grad_out * dB_dt * dt
        g_ps = [grad_out * w if d is None else grad_out * w * d for w, d in zip(weights, dps)]
        return torch.cat([g_t, *g_ps], dim=ctx.dim), None, None, None


def bezier_activation(
    x: torch.Tensor, dim: int | None = None, t_pre_activation: str = "sigmoid", p_pre_activation: str = "none"
) -> torch.Tensor:
    """Functional form of :class:`BezierActivation`."""
    dim = _channel_dim(x) if dim is None else dim
    if x.shape[dim] % 5:
        raise ValueError(
            f"BezierActivation needs a channel count divisible by 5 along dim {dim}, got shape {tuple(x.shape)}"
        )
    return _BezierFunction.apply(x, dim, t_pre_activation, p_pre_activation)


def _channel_dim(x: torch.Tensor) -> int:
    """Channels are last for 2-D ``[B, C]`` and 3-D token ``[B, S, C]`` tensors, dim 1 for NCHW and up."""
    return -1 if x.ndim <= 3 else 1


class BezierActivation(nn.Module):
    """``5*C -> C`` activation: chunks ``[t | p0 | p1 | p2 | p3]`` along the channel dim.

    Args:
        t_pre_activation: applied to ``t`` (default ``"sigmoid"`` keeps ``t`` in (0, 1)).
        p_pre_activation: applied to each control point (default ``"none"``).
        dim: channel dim; ``None`` picks the last dim for 2-D/3-D inputs and dim 1 for 4-D and up.
    """

    def __init__(self, t_pre_activation: str = "sigmoid", p_pre_activation: str = "none", dim: int | None = None):
        super().__init__()
        for name in (t_pre_activation, p_pre_activation):
            if name not in PRE_ACTIVATIONS:
                raise ValueError(f"unknown pre-activation {name!r}; allowed: {', '.join(PRE_ACTIVATIONS)}")
        self.t_pre_activation = t_pre_activation
        self.p_pre_activation = p_pre_activation
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return bezier_activation(x, self.dim, self.t_pre_activation, self.p_pre_activation)

    def extra_repr(self) -> str:
        return f"t_pre_activation={self.t_pre_activation!r}, p_pre_activation={self.p_pre_activation!r}"


class TrainableBezier(nn.Module):
    """Per-channel learned cubic on ``sigmoid(x)``: four control points of shape ``(C,)``.

    The initial points default to ``(0, 1/3, 2/3, 1)`` so that at init the output is exactly
    ``sigmoid(x)`` (a cubic Bezier with evenly spaced points is linear in ``t``).
    """

    def __init__(
        self,
        num_channels: int,
        init: tuple[float, float, float, float] = (0.0, 1 / 3, 2 / 3, 1.0),
        dim: int | None = None,
    ):
        super().__init__()
        self.num_channels = num_channels
        self.dim = dim
        self.control_points = nn.Parameter(torch.tensor(init, dtype=torch.float32).repeat(num_channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dim = _channel_dim(x) if self.dim is None else self.dim
        dim = dim % x.ndim
        if x.shape[dim] != self.num_channels:
            raise ValueError(f"TrainableBezier expects {self.num_channels} channels on dim {dim}, got {x.shape[dim]}")
        shape = [1] * x.ndim
        shape[dim] = self.num_channels
        p0, p1, p2, p3 = (p.reshape(shape) for p in self.control_points.to(x.dtype).unbind(-1))
        return bezier(torch.sigmoid(x), p0, p1, p2, p3)

    def extra_repr(self) -> str:
        return f"num_channels={self.num_channels}"
