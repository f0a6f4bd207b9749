"""PIL image -> model tensor: channel conversion, resize + crop in one resampling pass, flip, [-1, 1].

Randomness comes from a ``numpy.random.Generator`` the caller seeds per sample (seed, epoch, index), so
the crops and flips of a run do not depend on worker count or on where a resumed run restarted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from fluxflow.training.data.images import convert_channels

INTERPOLATIONS = {
    "lanczos": Image.Resampling.LANCZOS,
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
}


@dataclass(frozen=True)
class ImageTransform:
    """Short side to ``img_size`` (or cover a bucket's ``(width, height)``), crop, maybe flip, to tensor."""

    img_size: int
    channels: int = 3
    random_crop: bool = False
    random_flip: bool = False
    interpolation: str = "lanczos"

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, "
                             f"got {self.interpolation!r}")

    def __call__(self, im: Image.Image, rng: np.random.Generator | None = None,
                 size: tuple[int, int] | None = None) -> torch.Tensor:
        """``im`` -> float tensor ``[channels, height, width]`` in [-1, 1]; ``size`` = ``(width, height)``."""
        tw, th = size or (self.img_size, self.img_size)
        im = convert_channels(im, self.channels)
        box = crop_box(im.size, (tw, th), rng if self.random_crop else None)
        # Cropping in source coordinates and resampling once is the same picture as "resize the short side,
        # then crop", without resampling pixels that the crop throws away.
        im = im.resize((tw, th), INTERPOLATIONS[self.interpolation], box=box, reducing_gap=3.0)
        if self.random_flip and rng is not None and rng.random() < 0.5:
            im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return to_tensor(im)


def crop_box(src: tuple[int, int], dst: tuple[int, int],
             rng: np.random.Generator | None = None) -> tuple[float, float, float, float]:
    """The region of a ``src``-sized image that, scaled to cover ``dst``, is kept: centred, or random."""
    (w, h), (tw, th) = src, dst
    scale = max(tw / w, th / h)
    cw, ch = min(w, tw / scale), min(h, th / scale)
    if rng is None:
        left, top = (w - cw) / 2, (h - ch) / 2
    else:
        left, top = float(rng.uniform(0, w - cw)), float(rng.uniform(0, h - ch))
    return (left, top, left + cw, top + ch)


def to_tensor(im: Image.Image) -> torch.Tensor:
    """8-bit PIL image -> float32 ``[C, H, W]`` in [-1, 1]."""
    a = np.array(im, dtype=np.uint8, copy=True)
    if a.ndim == 2:
        a = a[:, :, None]
    return torch.from_numpy(a).permute(2, 0, 1).float().div_(127.5).sub_(1.0).contiguous()
