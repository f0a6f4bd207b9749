"""Images to the Accelerate trackers of ``--report_to`` (scalars go through ``accelerator.log``)."""

from __future__ import annotations

import logging

import numpy as np
from PIL import Image

logger = logging.getLogger("fluxflow.train")


def log_images(accelerator, images: dict[str, Image.Image], step: int) -> None:
    """Send each ``{name: image}`` to every tracker that takes images (main process; others have none)."""
    if not images or not accelerator.is_main_process:
        return
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":  # SummaryWriter.add_images: a batch of one, channels last
            tracker.log_images({k: np.asarray(im.convert("RGB"))[None] for k, im in images.items()}, step=step,
                               dataformats="NHWC")
        elif hasattr(tracker, "log_images"):  # wandb and others: lists of PIL images
            tracker.log_images({k: [im] for k, im in images.items()}, step=step)
        else:
            logger.debug("tracker %s takes no images", tracker.name)
