"""FluxFlowVAE: the compressor (encoder) and expander (decoder) with SPADE conditioning on the latent."""

from __future__ import annotations

import torch
import torch.nn as nn
from diffusers import ModelMixin  # bound at module level: diffusers' loader looks it up here
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import DecoderOutput, DiagonalGaussianDistribution
from diffusers.models.modeling_outputs import AutoencoderKLOutput

from .layers import check_activation, make_activation, num_groups, run_block
from .modeling import FluxFlowModelMixin
from .spade import SPADE, LeanSPADE
from .vae_blocks import AttentionBlock, Downsample, ResnetBlock, Upsample


def vae_scale_factor(vae) -> int:
    """Pixels per latent cell along each side of any diffusers-style VAE (ours or an ``AutoencoderKL``), computed
    from its config as diffusers' pipelines do: an ``AutoencoderKL`` has no ``spatial_compression_ratio``."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


class FluxFlowCompressor(nn.Module):
    """Image ``[B, C, H, W]`` -> Gaussian moments ``[B, 2*latent, H/f, W/f]`` (mean and log-variance).
    ``layers_per_block``: residual blocks per stage, highest resolution first (:func:`stage_layers`)."""

    def __init__(self, in_channels, latent_channels, block_out_channels, layers_per_block, activation,
                 mid_block_attention, attention_head_dim):
        super().__init__()
        self.gradient_checkpointing = False
        self.conv_in = nn.Conv2d(in_channels, block_out_channels[0], 3, padding=1)
        blocks, c_prev = [], block_out_channels[0]
        for i, c in enumerate(block_out_channels):
            for _ in range(layers_per_block[i]):
                blocks.append(ResnetBlock(c_prev, c, activation))
                c_prev = c
            if i < len(block_out_channels) - 1:
                c_prev = block_out_channels[i + 1]
                blocks.append(Downsample(c, c_prev))
        self.down_blocks = nn.ModuleList(blocks)
        self.mid_blocks = _mid_blocks(c_prev, activation, mid_block_attention, attention_head_dim)
        self.norm_out = nn.GroupNorm(num_groups(c_prev), c_prev)
        self.act_out = make_activation(activation, c_prev, conv=True)
        self.conv_out = nn.Conv2d(c_prev, 2 * latent_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for block in [*self.down_blocks, *self.mid_blocks]:
            h = run_block(self, block, h)
        return self.conv_out(self.act_out(self.norm_out(h)))


class FluxFlowExpander(nn.Module):
    """Latent ``[B, latent, h, w]`` -> image; SPADE-normalized residual blocks read the latent as context."""

    def __init__(self, out_channels, latent_channels, block_out_channels, layers_per_block, activation,
                 mid_block_attention, attention_head_dim, use_spade, spade_hidden_channels):
        super().__init__()
        self.gradient_checkpointing = False
        ctx = latent_channels if use_spade else 0
        channels = list(reversed(block_out_channels))
        self.conv_in = nn.Conv2d(latent_channels, channels[0], 3, padding=1)
        self.mid_blocks = _mid_blocks(channels[0], activation, mid_block_attention, attention_head_dim)
        blocks, c_prev = [], channels[0]
        for i, c in enumerate(channels):
            for _ in range(layers_per_block[-1 - i] + 1):
                blocks.append(ResnetBlock(c_prev, c, activation, ctx, spade_hidden_channels))
                c_prev = c
            if i < len(channels) - 1:
                c_prev = channels[i + 1]
                blocks.append(Upsample(c, c_prev))
        self.up_blocks = nn.ModuleList(blocks)
        if use_spade:
            self.norm_out = LeanSPADE(c_prev, latent_channels, spade_hidden_channels)
        else:
            self.norm_out = nn.GroupNorm(num_groups(c_prev), c_prev)
        self.act_out = make_activation(activation, c_prev, conv=True)
        self.conv_out = nn.Conv2d(c_prev, out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv_in(z)
        for block in self.mid_blocks:
            h = run_block(self, block, h)
        for block in self.up_blocks:
            h = run_block(self, block, h, context) if isinstance(block, ResnetBlock) else run_block(self, block, h)
        h = self.norm_out(h, context) if isinstance(self.norm_out, SPADE) else self.norm_out(h)
        return self.conv_out(self.act_out(h))


def stage_layers(layers_per_block: int | tuple[int, ...], stages: int) -> list[int]:
    """Residual blocks per compressor stage, highest resolution first (the expander's matching stage has
    one more, as in diffusers). An int (>= 1) is the same for every stage; a tuple gives one count (>= 0) per
    stage, as diffusers' ``UNet2DConditionModel`` takes it, so that depth can sit at the low resolutions
    where a block costs little time and memory per parameter."""
    if isinstance(layers_per_block, int) and not isinstance(layers_per_block, bool):
        if layers_per_block < 1:
            raise ValueError(f"FluxFlowVAE needs layers_per_block >= 1, got {layers_per_block}")
        return [layers_per_block] * stages
    counts = list(layers_per_block) if isinstance(layers_per_block, (list, tuple)) else [layers_per_block]
    if len(counts) != stages or any(not isinstance(n, int) or isinstance(n, bool) or n < 0 for n in counts):
        raise ValueError(f"FluxFlowVAE layers_per_block as a list needs one count >= 0 per stage "
                         f"({stages} stages), got {counts}")
    return counts


def _mid_blocks(channels, activation, attention, head_dim) -> nn.ModuleList:
    blocks = [ResnetBlock(channels, channels, activation)]
    if attention:
        blocks.append(AttentionBlock(channels, head_dim))
    blocks.append(ResnetBlock(channels, channels, activation))
    return nn.ModuleList(blocks)


class FluxFlowVAE(FluxFlowModelMixin, ModelMixin, ConfigMixin):
    """The FluxFlow autoencoder, with the :class:`~diffusers.AutoencoderKL` surface.

    ``encode(x).latent_dist`` is a :class:`DiagonalGaussianDistribution`; ``decode(z, use_context=True)``
    conditions the expander's SPADE norms on ``z`` itself (``use_context=False`` decodes without it).
    ``scaling_factor``/``shift_factor`` normalize latents for the flow processor: ``(z - shift) * scale``.
    The spatial factor is ``2 ** (len(block_out_channels) - 1)``. ``layers_per_block`` is an int or one
    count per stage, highest resolution first (:func:`stage_layers`): at equal parameters ``(0, 1, 2, 2)``
    trains faster and in less memory than one block per stage (``benchmarks/vae_peer.py``).
    """

    _supports_gradient_checkpointing = True
    _no_split_modules = ["ResnetBlock"]
    # regional compilation (diffusers' compile_repeated_blocks): the residual blocks, 2-3 per resolution
    # level. Not Downsample/Upsample (one convolution each: nothing to fuse) nor the two mid-block attentions.
    _repeated_blocks = ["ResnetBlock"]
    _preset_key = "vae"

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        latent_channels: int = 16,
        block_out_channels: tuple[int, ...] = (128, 256, 256, 512),
        layers_per_block: int | tuple[int, ...] = 1,
        activation: str = "silu",
        mid_block_attention: bool = True,
        attention_head_dim: int = 64,
        use_spade: bool = True,
        spade_hidden_channels: int = 64,
        scaling_factor: float = 1.0,
        shift_factor: float = 0.0,
        sample_size: int = 256,
    ):
        super().__init__()
        check_activation(activation)
        if len(block_out_channels) < 1:
            raise ValueError("FluxFlowVAE needs at least one block_out_channels entry")
        layers = stage_layers(layers_per_block, len(block_out_channels))
        common = dict(latent_channels=latent_channels, block_out_channels=tuple(block_out_channels),
                      layers_per_block=layers, activation=activation,
                      mid_block_attention=mid_block_attention, attention_head_dim=attention_head_dim)
        self.compressor = FluxFlowCompressor(in_channels, **common)
        self.expander = FluxFlowExpander(out_channels, use_spade=use_spade,
                                         spade_hidden_channels=spade_hidden_channels, **common)

    @property
    def spatial_compression_ratio(self) -> int:
        """Pixels per latent cell along each side (8 for four ``block_out_channels``)."""
        return 2 ** (len(self.config.block_out_channels) - 1)

    def encode(self, x: torch.Tensor, return_dict: bool = True):
        f = self.spatial_compression_ratio
        if x.ndim != 4 or x.shape[1] != self.config.in_channels or x.shape[-2] % f or x.shape[-1] % f:
            raise ValueError(
                f"FluxFlowVAE.encode expects [B, {self.config.in_channels}, H, W] with H and W multiples of {f}, "
                f"got {tuple(x.shape)}"
            )
        posterior = DiagonalGaussianDistribution(self.compressor(x))
        return AutoencoderKLOutput(latent_dist=posterior) if return_dict else (posterior,)

    def decode(self, z: torch.Tensor, use_context: bool = True, return_dict: bool = True):
        if z.ndim != 4 or z.shape[1] != self.config.latent_channels:
            raise ValueError(
                f"FluxFlowVAE.decode expects latents [B, {self.config.latent_channels}, h, w], got {tuple(z.shape)}"
            )
        sample = self.expander(z, context=z if use_context else None)
        return DecoderOutput(sample=sample) if return_dict else (sample,)

    def forward(self, sample: torch.Tensor, sample_posterior: bool = False, use_context: bool = True,
                generator: torch.Generator | None = None, return_dict: bool = True):
        posterior = self.encode(sample).latent_dist
        z = posterior.sample(generator=generator) if sample_posterior else posterior.mode()
        return self.decode(z, use_context=use_context, return_dict=return_dict)
