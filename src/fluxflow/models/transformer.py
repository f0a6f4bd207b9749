"""FluxFlowTransformer: the flow processor, a rectified-flow transformer over patchified VAE latents.

A DiT-style stack: image tokens attend to each other (2-D RoPE, QK-norm, SDPA), then to the text tokens
(cross-attention with the padding mask), then an MLP (GELU by default). The noise level and the pooled
text vector modulate every block through adaLN-Zero, so a freshly built model predicts zero velocity.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import ModelMixin  # bound at module level: diffusers' loader looks it up here
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.loaders import PeftAdapterMixin
from diffusers.models.embeddings import CombinedTimestepTextProjEmbeddings, apply_rotary_emb, get_2d_sincos_pos_embed
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.models.transformers.transformer_flux import FluxPosEmbed

from .layers import FeedForward, check_activation, run_block
from .modeling import FluxFlowModelMixin


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


PATCH_SIZES = (1, 2, 4)  # 4: a VAE that downsamples little (16x16 latents at 32 px) at the token count of 8x


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """``[B, C, H, W]`` -> tokens ``[B, (H/p)(W/p), C*p*p]`` in raster order."""
    return F.pixel_unshuffle(x, p).flatten(2).transpose(1, 2) if p > 1 else x.flatten(2).transpose(1, 2)


def unpatchify(tokens: torch.Tensor, p: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`patchify` for a grid of ``h x w`` patches."""
    x = tokens.transpose(1, 2).reshape(tokens.shape[0], -1, h, w)
    return F.pixel_shuffle(x, p) if p > 1 else x


def grid_positions(h: int, w: int, device) -> torch.Tensor:
    """(row, column) of each token of an ``h x w`` grid, raster order: ``[h*w, 2]``."""
    rows, cols = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    return torch.stack([rows, cols], dim=-1).reshape(-1, 2)


class FluxFlowAttention(nn.Module):
    """Multi-head attention with RMS QK-norm; self-attention (optionally rotary) or cross-attention."""

    def __init__(self, dim: int, heads: int, context_dim: int | None = None):
        super().__init__()
        self.heads = heads
        kv_dim = context_dim or dim
        self.to_q = nn.Linear(dim, dim)
        self.to_k = nn.Linear(kv_dim, dim)
        self.to_v = nn.Linear(kv_dim, dim)
        self.norm_q = nn.RMSNorm(dim // heads, eps=1e-6)
        self.norm_k = nn.RMSNorm(dim // heads, eps=1e-6)
        self.to_out = nn.Linear(dim, dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)  # [B, heads, S, head_dim]

    def forward(self, x, context=None, rotary=None, mask=None):
        kv = x if context is None else context
        q, k, v = self._heads(self.to_q(x)), self._heads(self.to_k(kv)), self._heads(self.to_v(kv))
        q, k = self.norm_q(q), self.norm_k(k)
        if rotary is not None:
            q, k = apply_rotary_emb(q, rotary), apply_rotary_emb(k, rotary)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.to_out(out.transpose(1, 2).flatten(2))


class FluxFlowTransformerBlock(nn.Module):
    """adaLN-Zero self-attention and MLP around a plain pre-norm cross-attention to the text tokens."""

    def __init__(self, dim: int, heads: int, mlp_hidden_dim: int, activation: str):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = FluxFlowAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.cross_attn = FluxFlowAttention(dim, heads)
        self.norm3 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ff = FeedForward(dim, mlp_hidden_dim, activation)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x, context, temb, rotary, context_mask):
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = (
            self.adaLN_modulation(temb)[:, None].chunk(6, dim=-1)
        )
        x = x + gate_msa * self.attn(modulate(self.norm1(x), shift_msa, scale_msa), rotary=rotary)
        x = x + self.cross_attn(self.norm2(x), context=context, mask=context_mask)
        return x + gate_mlp * self.ff(modulate(self.norm3(x), shift_mlp, scale_mlp))


class FluxFlowTransformer(FluxFlowModelMixin, ModelMixin, ConfigMixin, PeftAdapterMixin):
    """The flow processor: predicts the velocity ``v = noise - x0`` of normalized latents.

    ``forward(hidden_states [B, C, h, w], encoder_hidden_states [B, L, text_embed_dim],
    pooled_projections [B, pooled_projection_dim], timestep [B] = s * 1000, encoder_attention_mask [B, L])``
    returns a tensor shaped like ``hidden_states``; ``h`` and ``w`` must be multiples of ``patch_size``.
    LoRA adapters (peft) attach through diffusers' ``PeftAdapterMixin``: ``add_adapter``, ``load_lora_adapter``,
    ``set_adapters``.
    """

    _supports_gradient_checkpointing = True
    _no_split_modules = ["FluxFlowTransformerBlock"]
    _repeated_blocks = ["FluxFlowTransformerBlock"]
    _skip_layerwise_casting_patterns = ["pos_embed", "norm"]
    _preset_key = "transformer"

    @register_to_config
    def __init__(
        self,
        in_channels: int = 16,
        out_channels: int | None = None,
        patch_size: int = 2,
        hidden_size: int = 512,
        num_layers: int = 12,
        num_attention_heads: int = 8,
        mlp_ratio: float = 2.0,
        activation: str = "gelu",
        text_embed_dim: int = 384,
        pooled_projection_dim: int = 384,
        rope_theta: int = 10000,
        sample_size: int = 32,
        absolute_pos_embed: bool = False,
        pos_embed_base_size: int | None = None,
    ):
        super().__init__()
        check_activation(activation)
        if absolute_pos_embed and pos_embed_base_size is None:  # fixed at build: an export rewrites sample_size
            self.register_to_config(pos_embed_base_size=max(1, sample_size // patch_size))
        if patch_size not in PATCH_SIZES:
            raise ValueError(f"patch_size must be one of {PATCH_SIZES}, got {patch_size}")
        head_dim, rem = divmod(hidden_size, num_attention_heads)
        if rem or head_dim % 4:
            raise ValueError(
                f"hidden_size ({hidden_size}) / num_attention_heads ({num_attention_heads}) must be an integer "
                "head size divisible by 4 (2-D rotary embedding splits it between rows and columns)"
            )
        self.out_channels = out_channels or in_channels
        self.gradient_checkpointing = False
        self.x_embedder = nn.Linear(in_channels * patch_size**2, hidden_size)
        self.context_embedder = nn.Linear(text_embed_dim, hidden_size)
        self.time_text_embed = CombinedTimestepTextProjEmbeddings(hidden_size, pooled_projection_dim)
        self.pos_embed = FluxPosEmbed(theta=rope_theta, axes_dim=[head_dim // 2, head_dim // 2])
        mlp_hidden = int(hidden_size * mlp_ratio)
        self.transformer_blocks = nn.ModuleList(
            FluxFlowTransformerBlock(hidden_size, num_attention_heads, mlp_hidden, activation)
            for _ in range(num_layers)
        )
        self.norm_out = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.norm_out_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))
        self.proj_out = nn.Linear(hidden_size, patch_size**2 * self.out_channels)
        self._init_weights()

    def _init_weights(self):
        """adaLN-Zero (DiT): modulations, the cross-attention output and the final projection start at zero,
        so every block starts as the identity and the model as a zero-velocity predictor."""
        zero = [self.norm_out_modulation[-1], self.proj_out]
        for block in self.transformer_blocks:
            zero += [block.adaLN_modulation[-1], block.cross_attn.to_out]
        for layer in zero:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        pooled_projections: torch.Tensor,
        timestep: torch.Tensor | float,
        encoder_attention_mask: torch.Tensor | None = None,
        return_dict: bool = True,
    ):
        b, _, h, w = hidden_states.shape
        p = self.config.patch_size
        if h % p or w % p:
            raise ValueError(f"latent height and width must be multiples of patch_size={p}, got {h}x{w}")
        timestep = torch.as_tensor(timestep, device=hidden_states.device).float().expand(b)
        x = self.x_embedder(patchify(hidden_states, p))
        if self.config.absolute_pos_embed:
            x = x + self.absolute_positions(h // p, w // p, x)
        context = self.context_embedder(encoder_hidden_states)
        temb = self.time_text_embed(timestep, pooled_projections)
        rotary = self.pos_embed(grid_positions(h // p, w // p, x.device))
        mask = _attention_mask(encoder_attention_mask, b, context.shape[1], x.device)
        for block in self.transformer_blocks:
            x = run_block(self, block, x, context, temb, rotary, mask)
        shift, scale = self.norm_out_modulation(temb)[:, None].chunk(2, dim=-1)
        x = self.proj_out(modulate(self.norm_out(x), shift, scale))
        out = unpatchify(x, p, h // p, w // p)
        return Transformer2DModelOutput(sample=out) if return_dict else (out,)

    def absolute_positions(self, h: int, w: int, x: torch.Tensor) -> torch.Tensor:
        """DiT/PixArt's fixed 2-D sin-cos embedding of each token's place in the image, ``[h*w, hidden]``.

        Rotary embedding only tells a token where the others are relative to it; a caption's "top left" needs
        where it is in the picture. Positions are fractions of the grid on a scale of ``pos_embed_base_size``
        steps (PixArt's ``base_size``: the token grid at the size the model was built for), so they mean the
        same at every size."""
        return get_2d_sincos_pos_embed(self.config.hidden_size, (h, w), base_size=self.config.pos_embed_base_size,
                                       device=x.device).to(x.dtype)


def _attention_mask(mask: torch.Tensor | None, batch: int, length: int, device) -> torch.Tensor | None:
    """Padding mask ``[B, L]`` (1 = real token) -> boolean SDPA mask ``[B, 1, 1, L]``.

    A row with no real token (only possible with hand-made masks) keeps its first token, so attention
    never averages over an empty set and returns NaN."""
    if mask is None:
        return None
    if mask.shape != (batch, length):
        raise ValueError(f"encoder_attention_mask must be [batch, text_len] = [{batch}, {length}], got "
                         f"{tuple(mask.shape)}")
    mask = mask.to(device=device, dtype=torch.bool)
    empty = ~mask.any(dim=-1)
    if empty.any():
        mask = mask.clone()
        mask[empty, 0] = True
    return mask[:, None, None, :]
