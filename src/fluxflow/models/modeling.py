"""What every FluxFlow model adds to diffusers' ``ModelMixin``: presets, and loading into fresh memory."""

from __future__ import annotations

import torch

from .presets import preset_config


class FluxFlowModelMixin:
    """Listed before ``ModelMixin`` in each model's bases; the model class sets ``_preset_key``."""

    _preset_key: str

    @classmethod
    def from_preset(cls, name: str = "base", **overrides):
        """Build from a named preset (``tiny``, ``small``, ``base``) plus config overrides."""
        return cls.from_config({**preset_config(name, cls._preset_key), **overrides})

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """diffusers' loader (safetensors only), then each tensor copied into fresh memory. Tensors loaded from safetensors can sit
        at unaligned addresses inside the file mapping, where vectorized kernels round differently: a loaded
        model must compute exactly what the saved one did."""
        kwargs.setdefault("use_safetensors", True)  # weights never come from a pickle
        model = super().from_pretrained(*args, **kwargs)
        with torch.no_grad():
            for tensor in [*model.parameters(), *model.buffers()]:
                tensor.data = tensor.data.clone()
        return model
