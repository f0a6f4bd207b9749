"""``build_dataset``: the one way from data flags to a torch dataset of ``(pixel_values, caption)``."""

from __future__ import annotations

import logging
import os
import random

import torch

from fluxflow.training.data.buckets import bucket_sizes, nearest_bucket
from fluxflow.training.data.config import DataConfig
from fluxflow.training.data.dataset import ImageCaptionDataset, StreamingImageCaptionDataset
from fluxflow.training.data.folder import FolderRecords
from fluxflow.training.data.hub import HFRecords, load_hf_dataset, prepare_columns, resolve_columns
from fluxflow.training.data.skips import DataError, SkipLog
from fluxflow.training.data.transforms import ImageTransform

logger = logging.getLogger("fluxflow.data")


def split_indices(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """``(training, held-out)`` indices of ``n`` records: ``round(n * fraction)`` (at least 1) held out, chosen by
    ``seed``, so every start and every process holds out the same samples."""
    held = max(1, round(n * fraction))
    if held >= n:
        raise DataError(f"--validation_split {fraction} of {n} samples leaves none to train on")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return sorted(order[held:]), sorted(order[:held])


class RecordSubset:
    """The records ``indices`` of ``records``: the training or the held-out part of a ``--validation_split``."""

    def __init__(self, records, indices: list[int]) -> None:
        self.records, self.indices = records, indices
        self.n_named, self.problems = records.n_named, records.problems

    def __len__(self) -> int:
        return len(self.indices)

    def raw(self, i: int):
        return self.records.raw(self.indices[i])


def build_dataset(config: DataConfig, *, process_index: int = 0, num_processes: int = 1,
                  part: str = "train") -> ImageCaptionDataset | StreamingImageCaptionDataset:
    """The training data set of a validated ``config`` (``DataConfig.validate``, which ``TrainConfig.validate``
    includes); its ``skips`` holds the tally of bad samples.

    Map-style (captions file, imagefolder, a downloaded ``datasets`` split): a ``torch.utils.data.Dataset``
    with ``len``; shard it with the sampler (Accelerate does). Streaming: a torch ``IterableDataset`` that
    already reads only this process's shard (``process_index`` of ``num_processes``): prepare its
    DataLoader with ``dispatch_batches=False``. Unusable data raises ``DataError`` before any image is decoded
    (``--strict_data`` decodes every image once). With a ``validation_split`` in ``config`` (``TrainConfig``),
    ``part`` picks the samples trained on (``"train"``) or the ones held out (``"validation"``).
    """
    seed = config.seed or 0
    transform = ImageTransform(config.img_size, config.channels, config.random_crop, config.random_flip,
                               config.resize_interpolation)
    skips = SkipLog()
    if config.source == "captions_file":
        records = FolderRecords(config.data_path, config.captions_file, skips, config.strict_data)
        if config.max_train_samples and config.max_train_samples < len(records):
            keep = sorted(random.Random(seed).sample(range(len(records)), config.max_train_samples))
            records.lines = [records.lines[i] for i in keep]
    else:
        flag = (f"--dataset_name {config.dataset_name!r}" if config.dataset_name
                else f"--data_path {config.data_path!r}")
        ds = load_hf_dataset(config, process_index, num_processes)
        if config.streaming:
            image, caption = resolve_columns(ds, config.image_column, config.caption_column, flag)
            ds = prepare_columns(ds, image, caption)
            return StreamingImageCaptionDataset(ds, image, caption, transform, skips, seed=seed,
                                                strict=config.strict_data, max_pixels=config.max_image_pixels,
                                                flag=flag)
        records = HFRecords(ds, config, skips, flag)
    fraction = getattr(config, "validation_split", 0.0)
    if fraction:
        records = RecordSubset(records, split_indices(len(records), fraction, seed)[part == "validation"])
    dataset = ImageCaptionDataset(records, transform, skips, seed=seed, strict=config.strict_data,
                                  max_pixels=config.max_image_pixels)
    if config.strict_data:
        dataset.verify(threads=min(8, os.cpu_count() or 1))
    if config.aspect_buckets:
        buckets = bucket_sizes(config.img_size, config.bucket_step)
        dataset.use_buckets(buckets, lambda w, h: nearest_bucket(w, h, buckets))
    if skips.total():
        logger.warning("data: %s", skips.summary())
    logger.info("data: %d samples%s from %s, %d px, %d channels", len(dataset),
                " held out for validation" if part == "validation" else "", config.source, config.img_size,
                config.channels)
    return dataset


def is_streaming(dataset) -> bool:
    """True for a data set without ``len`` (size the run with ``--max_train_steps``)."""
    return isinstance(dataset, torch.utils.data.IterableDataset)
