"""Convolutional blocks of the VAE: residual block (optionally SPADE-normalized), attention, resampling."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import make_activation, num_groups
from .spade import SPADE, LeanSPADE


class ResnetBlock(nn.Module):
    """``x + conv(act(norm(conv(norm1(x)))))``: one non-linearity per residual branch, like a 2-layer MLP.

    With ``context_channels > 0`` the first normalization is :class:`SPADE` (the expander's conditioning).
    """

    def __init__(self, in_channels: int, out_channels: int, activation: str, context_channels: int = 0,
                 spade_hidden_channels: int = 64):
        super().__init__()
        if context_channels:
            self.norm1 = LeanSPADE(in_channels, context_channels, spade_hidden_channels)
        else:
            self.norm1 = nn.GroupNorm(num_groups(in_channels), in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(num_groups(out_channels), out_channels)
        self.act = make_activation(activation, out_channels, conv=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        h = self.norm1(x, context) if isinstance(self.norm1, SPADE) else self.norm1(x)
        h = self.conv2(self.act(self.norm2(self.conv1(h))))
        return h.add_(self.skip(x))  # in place: conv2 keeps no output for backward; same sum as skip(x) + h


class AttentionBlock(nn.Module):
    """Multi-head self-attention over the pixels of a (low-resolution) feature map, with a residual."""

    def __init__(self, channels: int, head_dim: int = 64):
        super().__init__()
        self.heads = max(1, channels // head_dim)
        self.norm = nn.GroupNorm(num_groups(channels), channels)
        self.to_qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = self.to_qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w)
        q, k, v = qkv.transpose(-1, -2).unbind(1)  # each [B, heads, HW, head_dim]
        out = F.scaled_dot_product_attention(q, k, v)
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class Downsample(nn.Module):
    """Halve H and W with a stride-2 3x3 convolution (which also moves to the next stage's width)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Double H and W: nearest-neighbour resize then a 3x3 convolution (no transposed convolution).

    The convolution already narrows to the next stage's width, so the costly high-resolution conv runs
    at ``in * out`` instead of ``in * in`` channels."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
