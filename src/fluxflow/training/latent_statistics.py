"""The latent statistics a VAE's ``shift_factor`` / ``scaling_factor`` hold, measured from training data.

``(z - shift) * scale`` must have zero mean and unit variance for the flow processor. Stage 1 measures them
after training its VAE; a pretrained VAE whose config.json sets no ``scaling_factor`` needs the same before
flow training starts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution


@torch.no_grad()
def measure_latent_statistics(vae, batches: Iterable[dict], generator: torch.Generator,
                              accelerator=None) -> tuple[float, float]:
    """``(shift_factor, scaling_factor)``: the mean and 1 / standard deviation of the VAE's latents (posterior
    samples drawn with ``generator``) over ``batches`` (dicts with ``pixel_values``, or the latent cache's
    ``moments``). Sums in float64 over any batch shapes (aspect buckets) and, with an ``accelerator`` of several
    processes, over all processes, so every process gets the same values."""
    was_training = vae.training
    vae.eval()
    try:
        latents = [_posterior(vae, batch).sample(generator=generator).double().flatten() for batch in batches]
    finally:
        vae.train(was_training)
    if not latents:
        raise ValueError("no batches to measure the latent statistics on")
    count, total = _summed(accelerator, sum(z.numel() for z in latents), sum(z.sum() for z in latents))
    mean = total / count
    (squares,) = _summed(accelerator, sum(((z - mean) ** 2).sum() for z in latents))
    std = math.sqrt(squares / max(count - 1, 1))
    return mean, 1.0 / max(std, 1e-6)


def _posterior(vae, batch: dict) -> DiagonalGaussianDistribution:
    if "moments" in batch:  # a batch of the latent cache: the VAE's posterior, stored
        return DiagonalGaussianDistribution(batch["moments"])
    return vae.encode(batch["pixel_values"].to(vae.device, vae.dtype)).latent_dist


def _summed(accelerator, *values) -> list[float]:
    """Each value summed over all processes (float64); as it is without an accelerator or with one process."""
    local = torch.tensor([float(v) for v in values], dtype=torch.float64)
    if accelerator is None or accelerator.num_processes == 1:
        return local.tolist()
    return accelerator.reduce(local.to(accelerator.device), "sum").tolist()
