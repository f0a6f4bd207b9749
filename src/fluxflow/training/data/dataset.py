"""The two torch datasets every source ends in, map-style and streaming: ``(pixel_values, caption)`` items.

A bad sample never stops a run: the map-style dataset answers with the next readable record in its place
(so batches keep their size) and the streaming one moves on; both count the skip in a ``SkipLog``.
With ``strict`` any bad sample raises instead.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import numpy as np
import torch
from PIL import Image

from fluxflow.training.data.hub import caption_text, image_source
from fluxflow.training.data.images import BadSample, check_image, open_image, read_size
from fluxflow.training.data.skips import DataError, SkipLog, strict_error
from fluxflow.training.data.transforms import ImageTransform

MAX_SUBSTITUTES = 1000  # candidates tried for one bad index before the data set is declared unusable


class Records(Protocol):
    """A map-style source: ``raw(i)`` gives ``(image cell or path, caption cell, name for messages)``.

    ``problems``: the samples left out up front (missing files, empty captions, ...), for ``verify()``.
    """

    n_named: int
    problems: list[BadSample]

    def __len__(self) -> int: ...
    def raw(self, i: int) -> tuple[object, object, str]: ...


def load_sample(cell: object, caption_cell: object, name: str, transform: ImageTransform, max_pixels: int,
                rng: np.random.Generator, size: tuple[int, int] | None) -> tuple[torch.Tensor, str]:
    """Decode and transform one sample; raises ``BadSample`` for any problem with it."""
    caption = caption_text(caption_cell, rng)
    if not caption:
        raise BadSample("empty_caption", name)
    source = image_source(cell, name)
    if isinstance(source, Image.Image):
        im = _checked_pil(source, name, max_pixels)
    else:
        target = size or (transform.img_size, transform.img_size)
        im = open_image(source, name, max_pixels, draft_size=max(target))
    return transform(im, rng, size), caption


def check_sample(cell: object, caption_cell: object, name: str, transform: ImageTransform,
                 max_pixels: int) -> BadSample | None:
    """What is wrong with one sample, decoding its whole image as training would; None when it is fine."""
    try:
        if not caption_text(caption_cell):
            raise BadSample("empty_caption", name)
        source = image_source(cell, name)
        if isinstance(source, Image.Image):
            _checked_pil(source, name, max_pixels)
        else:
            check_image(source, name, max_pixels, transform.channels, draft_size=transform.img_size)
    except BadSample as bad:
        return bad
    return None


def _checked_pil(im: Image.Image, name: str, max_pixels: int) -> Image.Image:
    """``im`` (an already decoded cell), unless it is over ``max_pixels``."""
    if im.width * im.height > max_pixels:
        raise BadSample("bomb", name, f"{im.width}x{im.height} pixels > max_image_pixels={max_pixels}")
    return im


class ImageCaptionDataset(torch.utils.data.Dataset):
    """Map-style ``(pixel_values, caption)`` over ``records``; crops, flips seeded by (seed, epoch, index)."""

    def __init__(self, records: Records, transform: ImageTransform, skips: SkipLog, *, seed: int = 0,
                 strict: bool = False, max_pixels: int = Image.MAX_IMAGE_PIXELS) -> None:
        self.records, self.transform, self.skips = records, transform, skips
        self.seed, self.strict, self.max_pixels = seed, strict, max_pixels
        self.epoch = 0
        self.buckets: list[tuple[int, int]] | None = None  # set by use_buckets()
        self.bucket_of: list[int] | None = None
        skips.track(len(records))
        if skips.n_named is None:  # records that do not say it themselves (the sources do)
            skips.n_named = getattr(records, "n_named", len(records))

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        """New crops and flips each epoch (call before creating the epoch's DataLoader iterator)."""
        self.epoch = epoch

    def size_of(self, index: int) -> tuple[int, int]:
        """``(width, height)`` that sample ``index`` is resized and cropped to."""
        if self.bucket_of is None:
            return (self.transform.img_size, self.transform.img_size)
        return self.buckets[self.bucket_of[index]]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        size = self.size_of(index)
        n = len(self.records)
        for attempt in range(min(n, MAX_SUBSTITUTES)):
            j = (index + attempt) % n
            if self.skips.is_marked(j):
                continue
            try:
                return load_sample(*self.records.raw(j), self.transform, self.max_pixels, rng, size)
            except BadSample as bad:
                if self.strict:
                    raise DataError(f"--strict_data: {bad}") from None
                self.skips.record(bad, j)
        raise DataError(f"no readable sample in the {min(n, MAX_SUBSTITUTES)} records from index {index}; "
                        f"{self.skips.summary()}")

    def use_buckets(self, buckets: list[tuple[int, int]], assign) -> None:
        """Read every image header once and give each sample the bucket ``assign(width, height)`` returns."""
        self.buckets, out = buckets, []
        for i in range(len(self.records)):
            cell, _, name = self.records.raw(i)
            try:
                source = image_source(cell, name)
                w, h = source.size if isinstance(source, Image.Image) else read_size(source, self.max_pixels)
                out.append(assign(w, h))
            except Exception:  # noqa: BLE001 -- a bad header: the sample is skipped when read
                out.append(assign(1, 1))
        self.bucket_of = out

    def verify(self, threads: int = 4) -> None:
        """``--strict_data``: decode every image once; raise one ``DataError`` listing every bad sample,
        those the records left out up front (``records.problems``) and those that fail to decode."""

        def check(i: int) -> BadSample | None:
            return check_sample(*self.records.raw(i), self.transform, self.max_pixels)

        with ThreadPoolExecutor(max_workers=threads) as pool:
            decoded = [b for b in pool.map(check, range(len(self.records))) if b is not None]
        problems = [*getattr(self.records, "problems", []), *decoded]
        if problems:
            raise strict_error(problems, self.records.n_named)


class StreamingImageCaptionDataset(torch.utils.data.IterableDataset):
    """``(pixel_values, caption)`` from a streamed ``datasets.IterableDataset``; bad samples skipped, counted.

    Inside DataLoader workers the underlying data set gives each worker its own shards (datasets does this
    when it sees a worker), so no sample is read twice.
    """

    def __init__(self, ds, image: str, caption: str, transform: ImageTransform, skips: SkipLog, *,
                 seed: int = 0, strict: bool = False, max_pixels: int = Image.MAX_IMAGE_PIXELS,
                 flag: str = "--dataset_name") -> None:
        self.ds, self.image, self.caption, self.transform, self.skips = ds, image, caption, transform, skips
        self.seed, self.strict, self.max_pixels, self.flag = seed, strict, max_pixels, flag
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle (shards and buffer) and draw new crops and flips for the next pass."""
        self.epoch = epoch
        self.ds.set_epoch(epoch)

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else 0
        rng = np.random.default_rng([self.seed, self.epoch, worker])
        for k, row in enumerate(self.ds):
            cell = row[self.image]
            path = cell.get("path") if isinstance(cell, dict) else None
            name = os.path.basename(path) if path else f"{self.flag} worker {worker} row {k}"
            try:
                yield load_sample(cell, row[self.caption], name, self.transform, self.max_pixels, rng,
                                  None)
            except BadSample as bad:
                if self.strict:
                    raise DataError(f"--strict_data: {bad}") from None
                self.skips.record(bad)
