"""The models a run trains, built from the preset flags or a ``--model_checkpoint``."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ..models import FluxFlowVAE, PatchDiscriminator
from ..models.spade import SPADE
from ..pipelines.single_file import load_single_file, read_metadata
from .config import TrainConfig
from .errors import ConfigError

logger = logging.getLogger("fluxflow.train")


@dataclass
class Components:
    """What a run trains; ``trained()`` is the ``{component: module}`` map the optimizers are built for."""

    vae: FluxFlowVAE
    discriminator: PatchDiscriminator | None = None

    def trained(self) -> dict:
        parts = {"vae": self.vae}
        if self.discriminator is not None:
            parts["discriminator"] = self.discriminator
        return parts


def build_components(cfg: TrainConfig) -> Components:
    """VAE (and discriminator with ``--gan_training``) from ``--model_checkpoint`` or ``--model_preset``."""
    loaded = load_checkpoint_models(cfg.model_checkpoint) if cfg.model_checkpoint else {}
    overrides = {"in_channels": cfg.channels, "out_channels": cfg.channels}
    if cfg.activation:
        overrides["activation"] = cfg.activation
    vae = loaded.get("vae") or FluxFlowVAE.from_preset(cfg.model_preset, **overrides)
    if vae.config.in_channels != cfg.channels:
        raise ConfigError(f"--channels {cfg.channels} does not match the checkpoint's VAE "
                          f"({vae.config.in_channels} channels)")
    if cfg.train_spade and not vae.config.use_spade:
        raise ConfigError("--train_spade needs a VAE built with use_spade=True")
    disc = None
    if cfg.gan_training:
        disc = loaded.get("discriminator") or PatchDiscriminator.from_preset(
            cfg.model_preset, in_channels=cfg.channels, context_dim=vae.config.latent_channels)
    select_trainable(cfg, vae)
    if cfg.gradient_checkpointing:
        vae.enable_gradient_checkpointing()
        if disc is not None:
            disc.enable_gradient_checkpointing()
    return Components(vae=vae.train(), discriminator=disc.train() if disc is not None else None)


def select_trainable(cfg: TrainConfig, vae: FluxFlowVAE) -> None:
    """``--train_vae`` or ``--gan_training``: the whole VAE; ``--train_spade`` alone: only its SPADE layers.

    Without ``--train_spade`` the decoder runs without context, so SPADE's context convolutions get no
    gradient: they are frozen (DDP would otherwise stop on parameters unused in the loss)."""
    whole = cfg.train_vae or cfg.gan_training
    vae.requires_grad_(whole)
    for module in vae.expander.modules():
        if isinstance(module, SPADE):
            if cfg.train_spade:
                module.requires_grad_(True)
            else:
                for part in (module.shared, module.to_gamma, module.to_beta):
                    part.requires_grad_(False)


def load_checkpoint_models(path: str) -> dict:
    """``{component: model}`` from a ``checkpoint.safetensors`` or a saved pipeline / model folder."""
    p = Path(path)
    if p.is_file():
        read_metadata(p)  # names the file if it is not a fluxflow checkpoint
        models = load_single_file(p)
    elif (p / "vae" / "config.json").is_file():
        models = {"vae": FluxFlowVAE.from_pretrained(p / "vae")}
    elif (p / "config.json").is_file():
        models = {"vae": FluxFlowVAE.from_pretrained(p)}
    else:
        raise ConfigError(f"--model_checkpoint {path!r} is neither a checkpoint file nor a model folder")
    logger.info("initialised %s from %s", ", ".join(models), path)
    return {name: model.train() for name, model in models.items()}
