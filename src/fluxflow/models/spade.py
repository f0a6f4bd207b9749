"""SPADE: spatially-adaptive normalization, used by the expander to condition on the latent."""

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
