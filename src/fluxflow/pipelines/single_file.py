"""One-file checkpoints: every component's weights in one safetensors file, configs in its metadata.

Layout of ``checkpoint.safetensors`` (what training writes and ``FluxFlowPipeline.from_single_file`` reads):

- tensors ``<component>.<parameter name>``, e.g. ``vae.compressor.conv_in.weight``;
- metadata (strings): ``fluxflow_components`` (JSON ``{component: class name}``), ``fluxflow_config.<component>``
  (JSON model config), optionally ``fluxflow_scheduler`` (JSON scheduler config), ``fluxflow_tokenizer`` (JSON
  ``{file name: text}`` of the tokenizer's files, so the file is self-contained) and ``fluxflow_extra`` (JSON
  of anything the writer adds, e.g. the training step).

Only the known FluxFlow classes (and diffusers' ``AutoencoderKL``, a pretrained VAE a flow run used) can be named
in a file: loading never imports code a file asks for.
Writes go to a temporary name, are fsynced and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from accelerate import init_empty_weights
from diffusers import AutoencoderKL
from safetensors import safe_open
from safetensors.torch import save_file

from .. import __version__
from ..atomic import LIBRARY_WRITE_ERRORS, as_disk_full, atomic_path, size_on_disk
from ..models import FluxFlowTextEncoder, FluxFlowTransformer, FluxFlowVAE, PatchDiscriminator

# AutoencoderKL: a pretrained diffusers VAE that a flow run used (frozen) instead of a FluxFlowVAE
MODEL_CLASSES = {cls.__name__: cls for cls in (FluxFlowVAE, AutoencoderKL, FluxFlowTransformer, FluxFlowTextEncoder,
                                               PatchDiscriminator)}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "vocab.json",
                   "merges.txt", "added_tokens.json")


def _public_config(model) -> str:
    return json.dumps({k: v for k, v in json.loads(model.to_json_string()).items() if not k.startswith("_")})


def tokenizer_files(tokenizer) -> dict[str, str]:
    """The text files ``tokenizer.save_pretrained`` writes, as ``{name: content}``."""
    with tempfile.TemporaryDirectory() as folder:
        tokenizer.save_pretrained(folder)
        return {name: (Path(folder) / name).read_text(encoding="utf-8")
                for name in TOKENIZER_FILES if (Path(folder) / name).exists()}


def save_single_file(path: str | os.PathLike, models: dict, scheduler=None, tokenizer=None,
                     extra: dict | None = None) -> Path:
    """Write ``models`` (``{component: FluxFlow model}``) and optional scheduler/tokenizer into one file."""
    path = Path(path)
    tensors, metadata = {}, {"format": "pt", "fluxflow_version": __version__}
    components = {}
    for name, model in models.items():
        if type(model).__name__ not in MODEL_CLASSES:
            raise TypeError(f"component {name!r} is a {type(model).__name__}; allowed: {', '.join(MODEL_CLASSES)}")
        components[name] = type(model).__name__
        metadata[f"fluxflow_config.{name}"] = _public_config(model)
        for key, value in model.state_dict().items():
            tensors[f"{name}.{key}"] = value.detach().contiguous().cpu()
    metadata["fluxflow_components"] = json.dumps(components)
    if scheduler is not None:
        metadata["fluxflow_scheduler"] = json.dumps(dict(scheduler.config))
    if tokenizer is not None:
        metadata["fluxflow_tokenizer"] = json.dumps(tokenizer_files(tokenizer))
    if extra:
        metadata["fluxflow_extra"] = json.dumps(extra)
    with atomic_path(path) as tmp:
        _save_file(tensors, tmp, metadata, path)
    return path


def _save_file(tensors: dict, tmp: Path, metadata: dict, path: Path) -> None:
    """``save_file`` into ``tmp``; a full disk, which safetensors reports without its errno ("iostream error"), is
    raised as ``OSError(ENOSPC)`` naming ``path`` (judged while the partial file still takes its space)."""
    try:
        save_file(tensors, tmp, metadata=metadata)
    except LIBRARY_WRITE_ERRORS as err:
        needed = sum(t.numel() * t.element_size() for t in tensors.values()) - size_on_disk(tmp)
        full = as_disk_full(err, path, needed)
        if full:
            raise full from err
        raise


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
    if "fluxflow_components" not in metadata:
        raise ValueError(f"{path} is not a fluxflow checkpoint (no 'fluxflow_components' in its metadata)")
    return metadata


def load_single_file(path: str | os.PathLike, components: list[str] | None = None,
                     dtype: torch.dtype | None = None) -> dict:
    """``{component: model}`` for the (chosen) components of a one-file checkpoint, in eval mode."""
    metadata = read_metadata(path)
    available = json.loads(metadata["fluxflow_components"])
    wanted = components if components is not None else list(available)
    missing = [c for c in wanted if c not in available]
    if missing:
        raise ValueError(f"{path} has no component(s) {missing}; it has: {', '.join(available)}")
    models = {}
    with safe_open(str(path), framework="pt") as f:
        keys = list(f.keys())
        for name in wanted:
            class_name = available[name]
            if class_name not in MODEL_CLASSES:
                raise ValueError(f"{path}: component {name!r} names unknown class {class_name!r}")
            config = json.loads(metadata[f"fluxflow_config.{name}"])
            with init_empty_weights():
                model = MODEL_CLASSES[class_name].from_config(config)
            prefix = f"{name}."
            state = {k[len(prefix):]: f.get_tensor(k).clone() for k in keys if k.startswith(prefix)}
            model.load_state_dict(state, strict=True, assign=True)
            if dtype is not None:
                model.to(dtype)
            models[name] = model.eval()
    return models
