"""FluxFlowTextEncoder: a `transformers` encoder plus Bezier projection heads for tokens and a pooled vector."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn as nn
from diffusers import ModelMixin  # bound at module level: diffusers' loader looks it up here
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.utils import BaseOutput
from transformers import AutoConfig, AutoModel

from .layers import FeedForward, check_activation
from .modeling import FluxFlowModelMixin
from .presets import MINILM_BACKBONE


@dataclass
class FluxFlowTextEncoderOutput(BaseOutput):
    """``last_hidden_state [B, L, embed_dim]`` per token; ``pooled_output [B, pooled_dim]`` (masked mean)."""

    last_hidden_state: torch.Tensor
    pooled_output: torch.Tensor


def masked_mean(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over the sequence of the real tokens only (padding never counts)."""
    if attention_mask is None:
        return hidden.mean(dim=1)
    mask = attention_mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


def build_backbone(backbone_config: dict) -> nn.Module:
    """A randomly initialized `transformers` encoder from a stored config dict (never touches the Hub).

    A BERT pooler is dropped: it is unused here and would leave DDP with parameters that get no gradient."""
    cfg = dict(backbone_config)
    if "model_type" not in cfg:
        raise ValueError("text encoder backbone_config needs a 'model_type' key (e.g. 'bert', 'distilbert')")
    backbone = AutoModel.from_config(AutoConfig.for_model(**cfg))
    if getattr(backbone, "pooler", None) is not None:
        backbone.pooler = None
    return backbone


class FluxFlowTextEncoder(FluxFlowModelMixin, ModelMixin, ConfigMixin):
    """Text -> (per-token embeddings, pooled vector) for the flow processor.

    The backbone is built from ``backbone_config`` (stored in our config.json), so ``from_pretrained`` loads
    everything from the saved folder. :meth:`from_pretrained_backbone` starts from pretrained weights instead.
    With ``freeze_backbone`` the backbone runs without gradients and stays in eval mode (no dropout).
    """

    _supports_gradient_checkpointing = True
    _preset_key = "text_encoder"

    @register_to_config
    def __init__(
        self,
        backbone_config: dict | None = None,
        embed_dim: int = 384,
        pooled_dim: int = 384,
        activation: str = "gelu",
        freeze_backbone: bool = False,
        max_length: int = 77,
    ):
        super().__init__()
        check_activation(activation)
        self.backbone = build_backbone(backbone_config or MINILM_BACKBONE)
        hidden = self.backbone.config.hidden_size
        self.token_head = nn.Sequential(nn.LayerNorm(hidden), FeedForward(hidden, hidden, activation, embed_dim))
        self.pooled_head = nn.Sequential(nn.LayerNorm(hidden), FeedForward(hidden, hidden, activation, pooled_dim))
        if freeze_backbone:
            self.backbone.requires_grad_(False)

    @classmethod
    def from_pretrained_backbone(cls, name_or_path: str, freeze_backbone: bool = True, **config) -> FluxFlowTextEncoder:
        """Build the encoder around pretrained backbone weights (a Hub id or a local folder).

        The pretrained tensors are copied in with ``strict=True`` after construction, so they stay exactly
        as trained (only the projection heads are new)."""
        pretrained = AutoModel.from_pretrained(name_or_path, use_safetensors=True)  # never a pickled .bin
        backbone_config = pretrained.config.to_diff_dict()
        backbone_config["model_type"] = pretrained.config.model_type
        for key in ("architectures", "transformers_version", "_name_or_path", "dtype", "torch_dtype"):
            backbone_config.pop(key, None)
        model = cls(backbone_config=backbone_config, freeze_backbone=freeze_backbone, **config)
        state = {k: v for k, v in pretrained.state_dict().items() if not k.startswith("pooler.")}
        model.backbone.load_state_dict(state, strict=True)
        return model

    def train(self, mode: bool = True):
        super().train(mode)
        if self.config.freeze_backbone:
            self.backbone.eval()
        return self

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, return_dict: bool = True):
        frozen = self.config.freeze_backbone
        with torch.no_grad() if frozen else contextlib.nullcontext():
            hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        tokens = self.token_head(hidden)
        pooled = self.pooled_head(masked_mean(hidden, attention_mask))
        if not return_dict:
            return tokens, pooled
        return FluxFlowTextEncoderOutput(last_hidden_state=tokens, pooled_output=pooled)
