"""Aspect-ratio buckets: train on whole pictures at about ``img_size**2`` pixels instead of square crops.

Each image goes to the bucket ``(width, height)`` whose aspect ratio is closest to its own (in log scale);
it is resized to cover the bucket and centre- (or randomly) cropped, losing at most a thin border. A batch
holds one bucket only, so its tensors stack. Bucket sides are multiples of ``step`` (keep that a multiple
of the VAE's downsampling factor, 8).
"""

from __future__ import annotations

import math

import numpy as np
import torch


def bucket_sizes(img_size: int, step: int = 64, max_ratio: float = 2.0) -> list[tuple[int, int]]:
    """``(width, height)`` pairs: sides multiples of ``step``, area within 25% of ``img_size**2``, aspect
    ratio at most ``max_ratio``."""
    area, out = img_size * img_size, set()
    for w in range(step, int(img_size * math.sqrt(max_ratio)) + step, step):
        h = max(step, round(area / w / step) * step)
        if max(w / h, h / w) <= max_ratio + 1e-9 and abs(w * h / area - 1) <= 0.25:
            out.update({(w, h), (h, w)})
    side = max(step, round(img_size / step) * step)
    out.add((side, side))
    return sorted(out, key=lambda s: s[0] / s[1])


def nearest_bucket(width: int, height: int, buckets: list[tuple[int, int]]) -> int:
    """Index of the bucket whose aspect ratio is closest to ``width / height`` (ties: the larger area)."""
    r = math.log(width / height)
    def distance(i: int) -> tuple[float, int]:
        w, h = buckets[i]
        return abs(math.log(w / h) - r), -w * h

    return min(range(len(buckets)), key=distance)


class BucketBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Batches of indices that share a bucket; order fixed by (seed, epoch), so a resumed run sees the same.

    ``set_epoch(e)`` is idempotent: calling it again with the same epoch gives the same batches.
    """

    def __init__(self, bucket_of: list[int], batch_size: int, *, shuffle: bool = True, seed: int | None = 0,
                 drop_last: bool = False) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.bucket_of, self.batch_size = list(bucket_of), batch_size
        self.shuffle, self.seed, self.drop_last, self.epoch = shuffle, seed or 0, drop_last, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        groups: dict[int, list[int]] = {}
        for i, b in enumerate(self.bucket_of):
            groups.setdefault(b, []).append(i)
        batches = []
        for b in sorted(groups):
            idx = groups[b]
            if self.shuffle:
                idx = [idx[k] for k in rng.permutation(len(idx))]
            for s in range(0, len(idx), self.batch_size):
                chunk = idx[s:s + self.batch_size]
                if len(chunk) == self.batch_size or not self.drop_last:
                    batches.append(chunk)
        if self.shuffle:
            batches = [batches[k] for k in rng.permutation(len(batches))]
        return batches

    def __iter__(self):
        yield from self._batches()

    def __len__(self) -> int:
        return len(self._batches())
