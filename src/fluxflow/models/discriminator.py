"""PatchDiscriminator: a spectral-norm PatchGAN for adversarial VAE training (hinge losses live in training)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import ModelMixin  # bound at module level: diffusers' loader looks it up here
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.utils import BaseOutput
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

from .layers import run_block
from .modeling import FluxFlowModelMixin


@dataclass
class PatchDiscriminatorOutput(BaseOutput):
    """``logits [B, 1, H / 2**n, W / 2**n]``: one real/fake score per image patch."""

    logits: torch.Tensor


class DiscriminatorBlock(nn.Module):
    """SN-conv 3x3 -> LeakyReLU -> SN-conv 4x4 stride 2 -> LeakyReLU (halves H and W)."""

    def __init__(self, in_channels: int, out_channels: int, negative_slope: float):
        super().__init__()
        self.conv1 = spectral_norm(nn.Conv2d(in_channels, out_channels, 3, padding=1))
        self.conv2 = spectral_norm(nn.Conv2d(out_channels, out_channels, 4, stride=2, padding=1))
        self.negative_slope = negative_slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.conv1(x), self.negative_slope)
        return F.leaky_relu(self.conv2(x), self.negative_slope)


class PatchDiscriminator(FluxFlowModelMixin, ModelMixin, ConfigMixin):
    """Spectral-norm PatchGAN: image ``[B, C, H, W]`` -> patch logits.

    With ``context_dim > 0`` and a ``context [B, context_dim]`` it adds a projection term (Miyato & Koyama,
    2018) per patch: ``<features(patch), embed(context)>``. Spectral norm does one power iteration per
    training forward, before the blocks run, so gradient checkpointing recomputes identical weights.
    """

    _supports_gradient_checkpointing = True
    _preset_key = "discriminator"

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        block_out_channels: tuple[int, ...] = (64, 128, 256, 512),
        context_dim: int = 0,
        negative_slope: float = 0.2,
    ):
        super().__init__()
        self.gradient_checkpointing = False
        channels = [block_out_channels[0], *block_out_channels]
        self.conv_in = spectral_norm(nn.Conv2d(in_channels, channels[0], 3, padding=1))
        self.blocks = nn.ModuleList(
            DiscriminatorBlock(c_in, c_out, negative_slope) for c_in, c_out in zip(channels[:-1], channels[1:])
        )
        self.conv_out = spectral_norm(nn.Conv2d(channels[-1], 1, 3, padding=1))
        self.context_proj = spectral_norm(nn.Linear(context_dim, channels[-1], bias=False)) if context_dim else None
        self._freeze_power_iteration()

    def _spectral_norms(self):
        return [(m, m.parametrizations.weight[0]) for m in self.modules() if parametrize.is_parametrized(m, "weight")]

    def _freeze_power_iteration(self):
        for _, sn in self._spectral_norms():
            sn.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_power_iteration()  # power iteration runs explicitly, once per forward (see class doc)
        return self

    @torch.no_grad()
    def _power_iteration(self):
        for module, sn in self._spectral_norms():
            sn.train()
            module.weight  # noqa: B018 -- reading the weight in train mode runs torch's power iteration
            sn.eval()

    def forward(self, sample: torch.Tensor, context: torch.Tensor | None = None, return_dict: bool = True):
        if context is not None and self.context_proj is None:
            raise ValueError("this PatchDiscriminator was built with context_dim=0; pass context=None")
        if self.training:
            self._power_iteration()
        h = F.leaky_relu(self.conv_in(sample), self.config.negative_slope)
        for block in self.blocks:
            h = run_block(self, block, h)
        logits = self.conv_out(h)
        if context is not None:
            embed = self.context_proj(context.to(h.dtype))[:, :, None, None]
            logits = logits + (h * embed).sum(dim=1, keepdim=True)
        return PatchDiscriminatorOutput(logits=logits) if return_dict else (logits,)
