"""LoRA fine-tuning of a trained flow processor (``--lora_rank``), as diffusers' ``train_*_lora`` scripts do it.

peft adds low-rank adapters to the flow processor's attention and MLP projections (``--lora_target_modules``);
the base weights are frozen, only the adapters train, and only they are saved: diffusers' LoRA file
(``pytorch_lora_weights.safetensors``, ``transformer.``-prefixed peft keys, the adapter config in its metadata),
which ``FluxFlowPipeline.load_lora_weights`` reads. The VAE and the text encoder are the base's, untouched.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import torch
from torch import nn

from ..atomic import atomic_path
from ..pipelines.lora import LORA_EXTRA, LORA_WEIGHT_NAME

LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out", "fc1", "fc2")  # self-/cross-attention and MLP projections
LORA_FOLDER = "lora"  # the exported adapter: the weights file, its model card and a sample grid


def lora_problems(cfg, after_stage: bool = False) -> list[str]:
    """Everything wrong with the ``--lora_*`` flags of ``cfg`` (a ``TrainConfig``), before anything is built."""
    if not cfg.lora_rank:
        p = ["--lora_alpha needs --lora_rank"] if cfg.lora_alpha is not None else []
        return p + (["--lora_target_modules needs --lora_rank"] if list(cfg.lora_target_modules) != list(LORA_TARGETS)
                    else [])
    flag = f"--lora_rank {cfg.lora_rank}"
    p = []
    if not cfg.trains_flow:
        p.append(f"{flag} trains an adapter of the flow processor: give --train_diff_full or --train_diff")
    if cfg.trains_vae or cfg.train_text_encoder:
        others = [f"--{n}" for n in ("train_vae", "gan_training", "train_spade", "train_text_encoder")
                  if getattr(cfg, n)]
        p.append(f"{flag} trains only the adapter (the base stays frozen): it excludes {', '.join(others)}")
    if cfg.use_ema:
        p.append(f"{flag} with --use_ema: an EMA of a LoRA run is not supported (the adapter is saved as trained); "
                 "drop --use_ema")
    if importlib.util.find_spec("peft") is None:
        p.append(f"{flag} needs the peft package: {LORA_EXTRA}")
    if not cfg.model_checkpoint and not after_stage:
        p.append(f"{flag} fine-tunes a trained flow processor: give its base with --model_checkpoint (alias "
                 "--pretrained_model_name_or_path): a pipeline folder, a checkpoint.safetensors or a Hub repo id")
    return p + _target_problems(cfg)


def _target_problems(cfg) -> list[str]:
    """``--lora_target_modules`` against the Linear layers of the base's flow processor (its config, built on the
    meta device) or, without a readable base (named by ``checkpoint_problems``), of the preset's."""
    from ..models import FluxFlowTransformer
    from ..models.presets import preset_config
    from .checkpoint_check import checkpoint_configs, local_checkpoint

    configs = {}
    if cfg.model_checkpoint:
        try:
            configs = checkpoint_configs(local_checkpoint(cfg.model_checkpoint))
        except Exception:  # noqa: BLE001 -- an unreadable or missing base is named by checkpoint_problems
            pass
        if configs and "transformer" not in configs:
            return [f"--lora_rank: --model_checkpoint {cfg.model_checkpoint!r} holds no flow processor to adapt "
                    f"(it has {', '.join(configs)})"]
    config = configs.get("transformer", (None, None))[1]
    config = {k: v for k, v in (config or preset_config(cfg.model_preset, "transformer")).items()
              if not k.startswith("_")}
    with torch.device("meta"):
        names = linear_names(FluxFlowTransformer.from_config(config))
    short = sorted({n.rsplit(".", 1)[-1] for n in names})
    return [f"--lora_target_modules: {target!r} names no Linear layer of the flow processor; its layers end in "
            f"{', '.join(short)}" for target in cfg.lora_target_modules if not matching(names, target)]


def linear_names(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]


def matching(names: list[str], target: str) -> list[str]:
    """The module names peft's ``target_modules`` entry ``target`` selects: the name itself or a dotted suffix."""
    return [n for n in names if n == target or n.endswith("." + target)]


def add_lora(transformer: nn.Module, rank: int, alpha: float | None, targets: list[str]) -> nn.Module:
    """Freeze ``transformer`` and add a trainable adapter (peft, Gaussian A and zero B as diffusers' scripts: the
    model computes exactly what the base did until the first step)."""
    from peft import LoraConfig

    transformer.requires_grad_(False)
    transformer.add_adapter(LoraConfig(r=rank, lora_alpha=alpha or rank, init_lora_weights="gaussian",
                                       target_modules=list(targets)))
    return transformer


def save_lora(path: str | Path, transformer: nn.Module) -> Path:
    """The adapter of ``transformer`` in diffusers' LoRA format at ``path`` (atomic), its config in the metadata
    so that ``load_lora_weights`` restores rank and alpha."""
    from peft.utils import get_peft_model_state_dict

    from ..pipelines import FluxFlowPipeline

    layers = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in get_peft_model_state_dict(transformer).items()}
    with atomic_path(path) as tmp:
        FluxFlowPipeline.save_lora_weights(tmp.parent, transformer_lora_layers=layers, weight_name=tmp.name,
                                           transformer_lora_adapter_metadata=transformer.peft_config["default"].to_dict())
    return Path(path)


CARD = """---
{metadata}
---

# {title}

A LoRA adapter of the flow processor of [{base}]({base_link}), trained with
[fluxflow](https://github.com/fluxflow/fluxflow) for {steps} steps on {data} (rank {rank}, alpha {alpha}, layers
{targets}).

{grid}
## Use

```python
from fluxflow import FluxFlowPipeline

pipe = FluxFlowPipeline.from_pretrained({base_literal})
pipe.load_lora_weights({location}, adapter_name="lora")
pipe.set_adapters(["lora"], [1.0])  # the adapter's strength
image = pipe({caption}).images[0]
```

or `fluxflow-generate --model {base} --lora {location_plain}:1.0 --prompt ...`.
"""


def export_lora(folder: str | Path, transformer: nn.Module, *, base: str, steps: int, data: str | None,
                caption: str, base_is_hub_id: bool, grid: Path | None = None) -> Path:
    """``folder`` (replaced atomically): the adapter file, a model card naming the base and how to load it, and
    the newest flow sample grid (``samples.webp``)."""
    import json

    from huggingface_hub import ModelCard, ModelCardData

    from .checkpoint import save_folder

    folder = Path(folder)
    config = transformer.peft_config["default"]
    data_md = f"`{data}`" if data else "data not recorded"
    card_data = ModelCardData(library_name="diffusers", pipeline_tag="text-to-image", license="other",
                              tags=["fluxflow", "lora", "text-to-image", "diffusers-training"],
                              base_model=base if base_is_hub_id else None)
    text = CARD.format(metadata=card_data.to_yaml(), title=folder.resolve().parent.name + " (LoRA)", base=base,
                       base_link=f"https://huggingface.co/{base}" if base_is_hub_id else Path(base).resolve().as_uri(),
                       steps=steps, data=data_md, rank=config.r, alpha=config.lora_alpha,
                       targets=", ".join(f"`{t}`" for t in sorted(config.target_modules)),
                       grid="![samples](samples.webp)\n" if grid is not None else "",
                       base_literal=json.dumps(base), location=json.dumps(folder.resolve().as_posix()),
                       location_plain=folder.resolve().as_posix(), caption=json.dumps(caption, ensure_ascii=False))

    def write(tmp: Path) -> None:
        save_lora(tmp / LORA_WEIGHT_NAME, transformer)
        ModelCard(text).save(tmp / "README.md")
        if grid is not None:
            shutil.copyfile(grid, tmp / "samples.webp")

    return save_folder(folder, write)
