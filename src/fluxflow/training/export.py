"""Flow samples and the exported pipeline: what a flow run leaves for ``FluxFlowPipeline``."""

from __future__ import annotations

import copy
import shutil
from contextlib import contextmanager
from pathlib import Path

import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from PIL import Image

from ..atomic import atomic_path
from ..pipelines import FluxFlowPipeline
from .checkpoint import save_folder
from .hub import GRID_NAME, model_card


def flow_sample_path(folder: str | Path, step: int, index: int, size: int) -> Path:
    """The reference's name: ``samples_epoch_{global_step:04d}_caption_{idx}-{size:04d}.webp``."""
    return Path(folder) / f"samples_epoch_{step:04d}_caption_{index}-{size:04d}.webp"


def sampling_scheduler(shift: float) -> FlowMatchEulerDiscreteScheduler:
    return FlowMatchEulerDiscreteScheduler(shift=shift)


@contextmanager
def ema_weights(transformer, ema):
    """Temporarily put the EMA weights into ``transformer`` (no-op without EMA)."""
    if ema is None:
        yield transformer
        return
    ema.store(transformer.parameters())
    ema.copy_to(transformer.parameters())
    try:
        yield transformer
    finally:
        ema.restore(transformer.parameters())


def ema_copy(transformer, ema):
    """A separate transformer holding the EMA weights (for checkpoints)."""
    model = copy.deepcopy(transformer)
    ema.copy_to(model.parameters())
    return model


def build_pipeline(vae, transformer, text_encoder, tokenizer, shift: float) -> FluxFlowPipeline:
    pipe = FluxFlowPipeline(vae=vae, transformer=transformer, text_encoder=text_encoder, tokenizer=tokenizer,
                            scheduler=sampling_scheduler(shift))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@torch.no_grad()
def save_flow_samples(pipe: FluxFlowPipeline, captions: list[str], sizes: list[int], folder: str | Path,
                      step: int, steps: int, guidance_scale: float, seed: int = 0) -> list[Path]:
    """One image per caption and size, each from its own seeded generator (never the global RNG)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    modes = {m: m.training for m in (pipe.vae, pipe.transformer, pipe.text_encoder)}
    for m in modes:
        m.eval()
    try:
        for index, caption in enumerate(captions):
            for size in sizes:
                image = pipe(caption, height=size, width=size, num_inference_steps=steps,
                             guidance_scale=guidance_scale,
                             generator=torch.Generator().manual_seed(seed + index)).images[0]
                path = flow_sample_path(folder, step, index, size)
                with atomic_path(path) as tmp:
                    image.save(tmp, format="WEBP", lossless=True)
                written.append(path)
    finally:
        for m, training in modes.items():
            m.train(training)
    return written


def export_pipeline(pipe: FluxFlowPipeline, folder: str | Path, card: dict,
                    grid: Image.Image | str | Path | None = None) -> Path:
    """``pipe.save_pretrained`` into ``folder`` with its model card (``README.md``, see
    :func:`~fluxflow.training.hub.model_card`: ``card`` holds its arguments) and the sample ``grid`` the card
    shows (``samples.webp``; a file keeps its format), atomically (a full disk is a ``CheckpointError``, the
    previous folder kept). Without ``card["repo_id"]`` the card loads from ``folder``'s path."""
    folder = Path(folder)
    name = None
    if grid is not None:
        name = f"{GRID_NAME}{Path(grid).suffix.lower() or '.webp'}" if isinstance(grid, (str, Path)) \
            else f"{GRID_NAME}.webp"
    fields = {"folder": folder, "vae": type(pipe.vae).__name__, **card, "grid": name}

    def write(tmp: Path) -> None:
        pipe.save_pretrained(tmp)
        if isinstance(grid, (str, Path)):
            shutil.copyfile(grid, tmp / name)
        elif grid is not None:
            grid.save(tmp / name, format="WEBP", lossless=True)
        model_card(**fields).save(tmp / "README.md")

    return save_folder(folder, write)
