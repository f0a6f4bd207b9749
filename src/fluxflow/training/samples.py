"""Sample images written during training, named exactly as the reference specifies.

VAE samples, per test image: ``vae_epoch_{global_step:04d}-{hash}{suffix}.webp`` where ``hash`` is the first six
hex digits of the MD5 of the image's address and ``suffix`` is one of:

- ``-ctx``: reconstruction, decoded with SPADE context;      ``-nc``: reconstruction without context;
- ``_ns_i``: a random-noise input image;                      ``_ns_o``: its reconstruction;
- ``-nr_o``: the decode of a random latent drawn from N(0, I).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from diffusers.image_processor import VaeImageProcessor

from ..atomic import atomic_path

VAE_SUFFIXES = ("-ctx", "-nc", "_ns_i", "_ns_o", "-nr_o")


def image_hash(address: str) -> str:
    return hashlib.md5(address.encode("utf-8")).hexdigest()[:6]


def vae_sample_paths(folder: str | Path, step: int, address: str) -> dict[str, Path]:
    """``{suffix: path}`` of the five VAE sample files of one test image at ``step``."""
    stem = f"vae_epoch_{step:04d}-{image_hash(address)}"
    return {suffix: Path(folder) / f"{stem}{suffix}.webp" for suffix in VAE_SUFFIXES}


def to_pil(image: torch.Tensor):
    """An image tensor ``[C, H, W]`` in ``[-1, 1]`` as a PIL image (as the samples are written)."""
    return VaeImageProcessor().postprocess(image[None].float().cpu(), output_type="pil")[0]


@torch.no_grad()
def save_vae_samples(vae, images: list[tuple[str, torch.Tensor]], folder: str | Path, step: int,
                     seed: int = 0) -> list[Path]:
    """Write the five sample files for each ``(address, image [C, H, W] in [-1, 1])``.

    Noise comes from a generator seeded with ``seed``, not from the global RNG, so sampling never changes
    what training draws next (resumed runs stay identical to uninterrupted ones)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    processor = VaeImageProcessor(vae_scale_factor=vae.spatial_compression_ratio)
    device, dtype = next(vae.parameters()).device, next(vae.parameters()).dtype
    generator = torch.Generator().manual_seed(seed)
    was_training = vae.training
    vae.eval()
    written = []
    for address, image in images:
        x = image[None].to(device, dtype)
        z = vae.encode(x).latent_dist.mode()
        noise = torch.randn(x.shape, generator=generator).clamp(-1, 1).to(device, dtype)
        random_latent = torch.randn(z.shape, generator=generator).to(device, dtype)
        outputs = {
            "-ctx": vae.decode(z, use_context=True).sample,
            "-nc": vae.decode(z, use_context=False).sample,
            "_ns_i": noise,
            "_ns_o": vae(noise).sample,
            "-nr_o": vae.decode(random_latent).sample,
        }
        for suffix, path in vae_sample_paths(folder, step, address).items():
            pil = processor.postprocess(outputs[suffix].float().cpu(), output_type="pil")[0]
            with atomic_path(path) as tmp:
                pil.save(tmp, format="WEBP", lossless=True)
            written.append(path)
    vae.train(was_training)
    return written
