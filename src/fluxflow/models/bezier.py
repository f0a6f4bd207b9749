"""Bezier activations: FluxFlow's learned, input-dependent cubic curves.

``B(t) = (1-t)^3 p0 + 3(1-t)^2 t p1 + 3(1-t) t^2 p2 + t^3 p3``

``BezierActivation`` reads ``t`` and the four control points from its input (five equal channel chunks
``[t | p0 | p1 | p2 | p3]``), so ``Linear(d, 5*h) -> BezierActivation -> h`` is a layer whose non-linearity
is predicted per element.

The backward pass is written out by hand (``_BezierFunction``). Autograd of the formula keeps ~13 tensors
(17x the output's bytes); with the control points used as they are (``p_pre_activation="none"``, the default)
the function keeps only ``t`` and ``k = dB/dt * dt/da_t`` (2x the output's bytes: the gradient of the chunk
``t`` is ``grad * k``, those of the points ``grad`` times the Bernstein weights of ``t``); with a
pre-activation on the points it keeps its 5-chunk input (5x) and recomputes the curve in backward. (The
first form cannot be differentiated twice, and says so; the second can.)

Two kernel sets compute it (``benchmarks/bezier_cost.py`` measures both, results in
``benchmarks/results/bezier_cost.md``):

* ``"eager"``: de Casteljau's levels of ``torch.lerp`` for the curve and ``dB/dt``, temporaries updated in
  place and the input gradient written straight into one buffer (no ``torch.cat``): about half the passes
  over memory of the formula and a lower peak;
* ``"compiled"``: the out-of-place formulas through ``torch.compile`` with dynamic shapes (one fused kernel
  each way, compiled on first use per pre-activation, dtype and layout, a few seconds each; on CPU this needs
  a C++ compiler).

The default ``"auto"`` uses the compiled kernels for CUDA tensors and the eager ones elsewhere (CPU runs are
tests and small demos, where compiling costs more than it saves). The environment variable
``FLUXFLOW_BEZIER_KERNELS=auto|eager|compiled`` or :func:`set_bezier_kernels` chooses. Compiled kernels are
used for float32, bfloat16 and float16 only (float64, e.g. gradcheck, stays eager); if compiling fails, a
warning is issued and the eager kernels are used from then on.

While an outer ``torch.compile`` traces a model, the function is traced through the out-of-place formulas
(inductor fuses them; the saved tensors stay t and k).
"""

from __future__ import annotations

import os
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

PRE_ACTIVATIONS = ("sigmoid", "tanh", "silu", "relu", "none")
KERNELS = ("auto", "eager", "compiled")
_COMPILED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_kernels = os.environ.get("FLUXFLOW_BEZIER_KERNELS", "auto")
if _kernels not in KERNELS:
    warnings.warn(f"FLUXFLOW_BEZIER_KERNELS={_kernels!r} is not one of {KERNELS}; using 'auto'", stacklevel=1)
    _kernels = "auto"
_compiled_fns: dict[str, object] = {}
_compile_failed = False


def set_bezier_kernels(kernels: str) -> str:
    """Select the kernels of :class:`BezierActivation`: ``"auto"`` (compiled on CUDA, eager elsewhere),
    ``"eager"`` or ``"compiled"``; returns the previous choice. A backward uses its forward's choice."""
    global _kernels
    if kernels not in KERNELS:
        raise ValueError(f"unknown Bezier kernels {kernels!r}; allowed: {', '.join(KERNELS)}")
    previous, _kernels = _kernels, kernels
    return previous


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


def _de_casteljau(t: torch.Tensor, p0, p1, p2, p3) -> tuple[torch.Tensor, torch.Tensor]:
    """The last two de Casteljau points ``(r0, r1)``: ``B = lerp(r0, r1, t)`` and ``dB/dt = 3 (r1 - r0)``.

    Five ``torch.lerp`` passes into three fresh buffers (the inputs are never written)."""
    q0, q1, q2 = torch.lerp(p0, p1, t), torch.lerp(p1, p2, t), torch.lerp(p2, p3, t)
    return q0.lerp_(q1, t), q1.lerp_(q2, t)


def _eager_forward(x: torch.Tensor, dim: int, t_pre: str, p_pre: str, keep: bool) -> tuple[torch.Tensor, ...]:
    """``(B,)``, or with ``keep`` ``(B, t, k)``: ``t`` and ``k = dB/dt * dt/da_t``, all the backward needs
    when the control points have no pre-activation."""
    a_t, *a_p = x.chunk(5, dim=dim)
    t, dt = _pre_activation(t_pre, a_t) if keep else (_apply_pre(t_pre, a_t), None)
    r0, r1 = _de_casteljau(t, *(_apply_pre(p_pre, a) for a in a_p))
    if not keep:
        return (r0.lerp_(r1, t),)
    k = torch.sub(r1, r0).mul_(3)  # dB/dt = 3 (r1 - r0)
    if dt is not None:
        k.mul_(dt)
    if t_pre == "none":  # t is a view of x: keep a copy, not the whole input
        t = t.clone(memory_format=torch.contiguous_format)
    return r0.lerp_(r1, t), t, k


def _eager_backward(x: torch.Tensor, grad_out: torch.Tensor, dim: int, t_pre: str, p_pre: str):
    """The input gradient from the saved input (points with a pre-activation): recomputes the curve."""
    a_t, *a_p = x.chunk(5, dim=dim)
    t, dt = _pre_activation(t_pre, a_t)
    ps, dps = zip(*(_pre_activation(p_pre, a) for a in a_p))
    r0, r1 = _de_casteljau(t, *ps)
    grad = torch.empty_like(x)  # same layout as x: its five chunks are views written in place
    g_t, g0, g1, g2, g3 = grad.chunk(5, dim=dim)
    torch.sub(r1, r0, out=g_t).mul_(grad_out).mul_(3)  # dB/dt = 3 (r1 - r0)
    if dt is not None:
        g_t.mul_(dt)
    _bernstein_grads(t, grad_out, (g0, g1, g2, g3), r0, r1)
    for g_p, d in zip((g0, g1, g2, g3), dps):
        if d is not None:
            g_p.mul_(d)
    return grad


def _eager_backward_curve(t: torch.Tensor, k: torch.Tensor, grad_out: torch.Tensor, dim: int) -> torch.Tensor:
    """The input gradient from the saved ``(t, k)``: no recomputation of the curve."""
    shape = list(t.shape)
    shape[dim] *= 5
    grad = t.new_empty(shape)
    g_t, *g_p = grad.chunk(5, dim=dim)
    torch.mul(grad_out, k, out=g_t)
    _bernstein_grads(t, grad_out, g_p, torch.empty_like(t), torch.empty_like(t))
    return grad


def _bernstein_grads(t, grad_out, outs, scratch0, scratch1) -> None:
    """``outs`` = grad_out times the Bernstein weights ``s^3, 3 s^2 t, 3 s t^2, t^3`` (``s = 1 - t``)."""
    g0, g1, g2, g3 = outs
    s = 1 - t
    gs2 = torch.mul(grad_out, s, out=scratch0).mul_(s)  # g s^2
    gt2 = torch.mul(grad_out, t, out=scratch1).mul_(t)  # g t^2
    torch.mul(gs2, s, out=g0)
    torch.mul(gs2, t, out=g1).mul_(3)
    torch.mul(gt2, s, out=g2).mul_(3)
    torch.mul(gt2, t, out=g3)


def _dbdt(t, s, p0, p1, p2, p3):
    """``dB/dt = 3 [ s^2 (p1 - p0) + 2 s t (p2 - p1) + t^2 (p3 - p2) ]`` with ``s = 1 - t`` (out of place)."""
    return 3 * (s * s * (p1 - p0) + 2 * s * t * (p2 - p1) + t * t * (p3 - p2))


def _bernstein_weights(t, s):
    """The cubic Bernstein weights ``s^3, 3 s^2 t, 3 s t^2, t^3`` (out of place)."""
    return s * s * s, 3 * s * s * t, 3 * s * t * t, t * t * t


def _formula_forward(x: torch.Tensor, dim: int, t_pre: str, p_pre: str, keep: bool):
    """Out-of-place formulas for ``torch.compile`` (inductor fuses each into one kernel); same results as the
    eager kernels."""
    a_t, *a_p = x.chunk(5, dim=dim)
    t, dt = _pre_activation(t_pre, a_t)
    p0, p1, p2, p3 = (_apply_pre(p_pre, a) for a in a_p)
    out = bezier(t, p0, p1, p2, p3)
    if not keep:
        return (out,)
    k = _dbdt(t, 1 - t, p0, p1, p2, p3)
    if dt is not None:
        k = k * dt
    if t_pre == "none":
        t = t.clone(memory_format=torch.contiguous_format)
    return out, t, k


def _formula_backward(x: torch.Tensor, grad_out: torch.Tensor, dim: int, t_pre: str, p_pre: str):
    a_t, *a_p = x.chunk(5, dim=dim)
    t, dt = _pre_activation(t_pre, a_t)
    ps, dps = zip(*(_pre_activation(p_pre, a) for a in a_p))
    s = 1 - t
    dB_dt, weights = _dbdt(t, s, *ps), _bernstein_weights(t, s)
    g_t = grad_out * dB_dt if dt is None else grad_out * dB_dt * dt
    g_ps = [grad_out * w if d is None else grad_out * w * d for w, d in zip(weights, dps)]
    return torch.cat([g_t, *g_ps], dim=dim)


def _formula_backward_curve(t: torch.Tensor, k: torch.Tensor, grad_out: torch.Tensor, dim: int):
    return torch.cat([grad_out * k, *(grad_out * w for w in _bernstein_weights(t, 1 - t))], dim=dim)


_EAGER = {"forward": _eager_forward, "backward": _eager_backward, "backward_curve": _eager_backward_curve}
_FORMULA = {"forward": _formula_forward, "backward": _formula_backward,
            "backward_curve": _formula_backward_curve}


def _kernel(name: str, x: torch.Tensor, kernels: str):
    """The compiled ``name`` kernel when ``kernels`` selects it and it can run on ``x``, else the eager one;
    the out-of-place formulas while an outer ``torch.compile`` traces and for a backward that builds a
    graph (double backward)."""
    if torch.compiler.is_compiling() or (name != "forward" and torch.is_grad_enabled()):
        return _FORMULA[name]
    eager = _EAGER[name]
    wanted = kernels == "compiled" or (kernels == "auto" and x.is_cuda)
    if not wanted or _compile_failed or x.dtype not in _COMPILED_DTYPES:
        return eager
    if name not in _compiled_fns:
        # dynamic shapes from the start: one graph per layout (2-D/3-D tokens, NCHW) and dtype, not per size
        _compiled_fns[name] = torch.compile(_FORMULA[name], dynamic=True)
    compiled = _compiled_fns[name]

    def run(*args):
        global _compile_failed
        try:
            return compiled(*args)
        except Exception as err:  # noqa: BLE001 - e.g. no C++ compiler or Triton: fall back, once, loudly
            warnings.warn(f"compiled Bezier kernels failed ({type(err).__name__}: {err}); "
                          "using eager kernels", RuntimeWarning, stacklevel=3)
            _compile_failed = True
            return eager(*args)

    return run


class _BezierFunction(torch.autograd.Function):
    """Bezier over five chunks along ``dim`` with an analytic backward.

    What it saves for backward: with control points used as they are (``p_pre="none"``, the default) only
    ``t`` and ``k = dB/dt * dt/da_t``, two output-sized tensors (2/5 of the input; the gradient needs nothing
    else); with a pre-activation on the points, the input ``x`` (the curve is recomputed in backward)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, dim: int, t_pre: str, p_pre: str) -> torch.Tensor:
        keep = p_pre == "none"
        ctx.dim, ctx.t_pre, ctx.p_pre, ctx.keep = dim, t_pre, p_pre, keep
        ctx.kernels = _kernels  # the backward uses the kernels of its forward
        out, *saved = _kernel("forward", x, _kernels)(x, dim, t_pre, p_pre, keep)
        if keep:
            ctx.save_for_backward(*saved)
        else:
            ctx.save_for_backward(x)
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        if ctx.keep:
            if torch.is_grad_enabled() and not torch.compiler.is_compiling():
                raise RuntimeError(
                    "BezierActivation with p_pre_activation='none' keeps only (t, dB/dt) for backward, so "
                    "its gradient cannot be differentiated again (create_graph=True); use another "
                    "p_pre_activation (the function then saves its input) for double backward"
                )
            t, k = ctx.saved_tensors
            grad = _kernel("backward_curve", t, ctx.kernels)(t, k, grad_out, ctx.dim)
        else:
            (x,) = ctx.saved_tensors
            grad = _kernel("backward", x, ctx.kernels)(x, grad_out, ctx.dim, ctx.t_pre, ctx.p_pre)
        return grad, None, None, None


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

