"""SPADE: spatially-adaptive normalization, used by the expander to condition on the latent; ``LeanSPADE``, the
same maths with a backward that keeps one tensor of the input's size instead of four."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import num_groups


class SPADE(nn.Module):
    """GroupNorm whose per-pixel scale and shift are predicted from a context map (Park et al., 2019).

    ``forward(x, context=None)``: without a context it is an ordinary affine GroupNorm, so the expander
    can decode with ``use_context=False``; with one, ``norm(x) * (1 + gamma) + beta`` where ``gamma`` and
    ``beta`` come from the context. The context here is the latent grid, so the small conv stack runs at the
    context's own resolution and only ``gamma``/``beta`` are upsampled: running it at pixel resolution would
    cost more than the decoder convs while adding nothing but interpolated detail. The gamma/beta heads start
    at zero, so a freshly built SPADE matches the unconditioned path exactly.
    """

    def __init__(self, num_features: int, context_channels: int, hidden_channels: int = 64):
        super().__init__()
        self.norm = nn.GroupNorm(num_groups(num_features), num_features, affine=False)
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.shared = nn.Sequential(nn.Conv2d(context_channels, hidden_channels, 3, padding=1), nn.ReLU())
        self.to_gamma = nn.Conv2d(hidden_channels, num_features, 3, padding=1)
        self.to_beta = nn.Conv2d(hidden_channels, num_features, 3, padding=1)
        for conv in (self.to_gamma, self.to_beta):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        h = self.norm(x) * self.weight[:, None, None] + self.bias[:, None, None]
        if context is None:
            return h
        feat = self.shared(context.to(x.dtype))
        gamma, beta = self.to_gamma(feat), self.to_beta(feat)
        if gamma.shape[-2:] != x.shape[-2:]:
            gamma = F.interpolate(gamma, size=x.shape[-2:], mode="bilinear", align_corners=False)
            beta = F.interpolate(beta, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return h * (1 + gamma) + beta


class _SpadeModulation(torch.autograd.Function):
    """``(norm(x) * weight + bias) * (1 + resize(gamma)) + beta``, SPADE's arithmetic op for op, keeping only
    ``x`` and the low-resolution ``gamma`` for backward. Autograd of the same ops keeps four tensors of
    ``x``'s size (the input, the normalized input, the affine result and the resized ``1 + gamma``); this
    backward recomputes the normalization and the resize (element-wise passes, no convolution) instead and
    gives the same gradients bit for bit (``tests/unit/test_vae_design.py``)."""

    @staticmethod
    def forward(ctx, x, weight, bias, gamma, beta, groups: int, eps: float):
        n = F.group_norm(x, groups, eps=eps)
        h = n * weight[:, None, None] + bias[:, None, None]
        full = _resize(gamma, x)
        ctx.save_for_backward(x, weight, bias, gamma)
        ctx.groups, ctx.eps, ctx.norm_dtype, ctx.gamma_dtype = groups, eps, n.dtype, full.dtype
        return h * (1 + full) + beta

    @staticmethod
    def backward(ctx, grad):
        x, weight, bias, gamma = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: autograd of the recomputed ops (second order works)
            return (*_recomputed_grads(ctx, grad, x, weight, bias, gamma), grad, None, None)
        xn = x.to(ctx.norm_dtype).contiguous()
        b, c = xn.shape[:2]
        hw = xn[0, 0].numel()
        n, mean, rstd = torch.ops.aten.native_group_norm(xn, None, None, b, c, hw, ctx.groups, ctx.eps)
        w, bias_ = weight[:, None, None], bias[:, None, None]
        full = _resize(gamma.to(ctx.gamma_dtype), x)
        g_gamma = None
        if ctx.needs_input_grad[3]:
            g_gamma = grad * (n * w + bias_)  # the derivative by 1 + gamma is the affine result
        if g_gamma is not None and full.shape != gamma.shape:
            g_gamma = torch.ops.aten.upsample_bilinear2d_backward(
                g_gamma.to(ctx.gamma_dtype), list(full.shape[-2:]), list(gamma.shape), False)
        g_h = grad * (1 + full)
        g_weight = (g_h * n).sum((0, 2, 3)) if ctx.needs_input_grad[1] else None
        g_bias = g_h.sum((0, 2, 3)) if ctx.needs_input_grad[2] else None
        g_x = None
        if ctx.needs_input_grad[0]:
            g_n = g_h.mul_(w).to(xn.dtype).contiguous()
            g_x = torch.ops.aten.native_group_norm_backward(g_n, xn, mean, rstd, None, b, c, hw, ctx.groups,
                                                            [True, False, False])[0]
        return g_x, g_weight, g_bias, g_gamma, grad, None, None


def _recomputed_grads(ctx, grad, *inputs) -> list:
    """Gradients by ``x, weight, bias, gamma`` through autograd of the recomputed forward (its own graph)."""
    x, weight, bias, gamma = inputs
    n = F.group_norm(x.to(ctx.norm_dtype), ctx.groups, eps=ctx.eps)
    out = (n * weight[:, None, None] + bias[:, None, None]) * (1 + _resize(gamma.to(ctx.gamma_dtype), x))
    wanted = [t for t, need in zip(inputs, ctx.needs_input_grad) if need]
    grads = iter(torch.autograd.grad(out, wanted, grad, create_graph=True))
    return [next(grads) if need else None for need in ctx.needs_input_grad[:4]]


def _resize(gamma: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``gamma`` bilinearly resized to ``x``'s height and width (itself when they already match)."""
    if gamma.shape[-2:] == x.shape[-2:]:
        return gamma
    return F.interpolate(gamma, size=x.shape[-2:], mode="bilinear", align_corners=False)


class LeanSPADE(SPADE):
    """:class:`SPADE` with the same parameters, outputs and gradients, whose conditioned path keeps only its
    input (and the latent-resolution ``gamma``) for backward: one tensor of the input's size instead of four
    (``_SpadeModulation``). Under ``torch.compile`` SPADE's own ops run (the compiler plans memory itself)."""

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        if context is None or torch.compiler.is_compiling() or not torch.is_grad_enabled():
            return super().forward(x, context)
        feat = self.shared(context.to(x.dtype))
        gamma, beta = self.to_gamma(feat), _resize(self.to_beta(feat), x)
        norm = self.norm
        return _SpadeModulation.apply(x, self.weight, self.bias, gamma, beta, norm.num_groups, norm.eps)
