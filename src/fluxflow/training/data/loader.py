"""A DataLoader for a dataset from ``build_dataset``: buckets, shuffling and worker seeding done right."""

from __future__ import annotations

import random
import signal

import numpy as np
import torch
from accelerate.data_loader import prepare_data_loader

from fluxflow.training.data.buckets import BucketBatchSampler


def _seed_worker(worker_id: int) -> None:
    # torch seeds each worker's torch RNG; python's and numpy's follow it so any library randomness differs
    # between workers and repeats between runs.
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)
    # Ctrl+C and SIGTERM reach the whole process group; the main process finishes its step and saves, so the
    # workers must not die under it (they end with the main process).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def make_dataloader(dataset, batch_size: int, workers: int = 0, collate_fn=None, *, shuffle: bool = True,
                    seed: int | None = 0, drop_last: bool = False) -> torch.utils.data.DataLoader:
    """Map-style: shuffled with a seeded generator, or bucket batches; streaming: in stream order.

    Workers are not persistent so that ``dataset.set_epoch`` reaches them each epoch. ``seed=None`` means 0.
    """
    seed = seed or 0
    common = {"num_workers": workers, "collate_fn": collate_fn, "worker_init_fn": _seed_worker,
              "pin_memory": torch.cuda.is_available()}
    if workers > 0:
        common["prefetch_factor"] = 2
    if isinstance(dataset, torch.utils.data.IterableDataset):
        return torch.utils.data.DataLoader(dataset, batch_size=batch_size, drop_last=drop_last, **common)
    if getattr(dataset, "bucket_of", None) is not None:  # an ImageCaptionDataset or its latent cache
        sampler = BucketBatchSampler(dataset.bucket_of, batch_size, shuffle=shuffle, seed=seed,
                                     drop_last=drop_last)
        return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, **common)
    generator = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
                                       generator=generator, **common)


def prepare_dataloader(accelerator, loader: torch.utils.data.DataLoader) -> torch.utils.data.DataLoader:
    """``accelerator.prepare(loader)`` (sharding, device placement, end-of-data tracking).

    A streamed data set already reads only this process's shard (``split_dataset_by_node``, by files when it
    can); Accelerate would cut that shard again into every N-th batch and drop the rest, so it is prepared
    as for one process.
    """
    if accelerator.num_processes == 1 or not isinstance(loader.dataset, torch.utils.data.IterableDataset):
        return accelerator.prepare(loader)
    prepared = prepare_data_loader(loader, accelerator.device, num_processes=1, process_index=0,
                                   put_on_device=True, dispatch_batches=False,
                                   non_blocking=accelerator.non_blocking)
    accelerator._dataloaders.append(prepared)  # saved and restored with the state, like a prepared one
    return prepared
