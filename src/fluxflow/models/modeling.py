"""What every FluxFlow model adds to diffusers' ``ModelMixin``: presets, and loading into fresh memory."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .presets import preset_config


def refuse_pickle_only_folder(folder: str | os.PathLike) -> None:
    """Name the way out when a local folder holds only pickled ``.bin`` weights, which the safetensors-only
    default refuses (diffusers' own error just says no safetensors file was found)."""
    folder = Path(folder)
    if not folder.is_dir() or any(folder.glob("*.safetensors")):
        return
    pickled = sorted(p.name for p in folder.glob("*.bin"))
    if pickled:
        raise OSError(f"{folder} holds only pickled .bin weights ({', '.join(pickled)}) and no .safetensors: "
                      "fluxflow loads safetensors by default, since unpickling can run code. If you trust this "
                      "folder, pass use_safetensors=False to from_pretrained (or re-save it with "
                      "save_pretrained(..., safe_serialization=True)).")


class FluxFlowModelMixin:
    """Listed before ``ModelMixin`` in each model's bases; the model class sets ``_preset_key``."""

    _preset_key: str

    @classmethod
    def from_preset(cls, name: str = "base", **overrides):
        """Build from a named preset (``tiny``, ``small``, ``base``) plus config overrides."""
        return cls.from_config({**preset_config(name, cls._preset_key), **overrides})

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """diffusers' loader (safetensors unless ``use_safetensors=False``), then each tensor copied into fresh
        memory. Tensors loaded from safetensors can sit at unaligned addresses inside the file mapping, where
        vectorized kernels round differently: a loaded model must compute exactly what the saved one did."""
        if kwargs.setdefault("use_safetensors", True):  # weights come from a pickle only when asked for
            refuse_pickle_only_folder(Path(pretrained_model_name_or_path, kwargs.get("subfolder") or ""))
        model = super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        with torch.no_grad():
            for tensor in [*model.parameters(), *model.buffers()]:
                tensor.data = tensor.data.clone()
        return model
