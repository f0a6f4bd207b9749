"""Images for VAE samples: ``--test_image_address`` files, or the first training images."""

from __future__ import annotations

import itertools

import torch

from .config import TrainConfig
from .data.images import open_image
from .data.transforms import ImageTransform


def pick_test_images(cfg: TrainConfig, dataset, count: int = 2) -> list[tuple[str, torch.Tensor]]:
    """``[(address, image [C, H, W] in [-1, 1])]`` prepared exactly like training images."""
    if cfg.test_image_address:
        transform = ImageTransform(cfg.img_size, cfg.channels, interpolation=cfg.resize_interpolation)
        return [(path, transform(open_image(path, path, cfg.max_image_pixels))) for path in cfg.test_image_address]
    if hasattr(dataset, "__len__") and not isinstance(dataset, torch.utils.data.IterableDataset):
        return [(f"train:{i}", dataset[i][0]) for i in range(min(count, len(dataset)))]
    return [(f"train:{i}", image) for i, (image, _) in enumerate(itertools.islice(iter(dataset), count))]
