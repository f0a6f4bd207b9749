"""The ``--dataset_name`` source: ``datasets.load_dataset`` on a Hub id, a local folder or an imagefolder.

Images are read with decoding turned off (``Image(decode=False)``) and decoded by ``images.open_image``,
so bad files, bombs and channel conversion behave exactly as for the captions-file source.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import datasets
from PIL import Image as PILImage

from fluxflow.training.data.config import FOLDER_BUILDERS, DataConfig
from fluxflow.training.data.images import BadSample
from fluxflow.training.data.skips import DataError, SkipLog

CAPTION_COLUMNS = ("text", "caption", "captions", "prompt", "description", "sentence", "label")
IMAGE_COLUMNS = ("image", "img", "picture", "file_name", "path")


def load_hf_dataset(cfg: DataConfig, process_index: int = 0,
                    num_processes: int = 1) -> datasets.Dataset | datasets.IterableDataset:
    """Load one split; a stream is shuffled (buffer), cut to ``max_train_samples`` and sharded by process."""
    if cfg.dataset_name:
        path = cfg.dataset_name
        kwargs = {"data_dir": cfg.data_path} if cfg.dataset_name in FOLDER_BUILDERS else {}
        flag = f"--dataset_name {cfg.dataset_name!r}"
    else:
        path, kwargs, flag = "imagefolder", {"data_dir": cfg.data_path}, f"--data_path {cfg.data_path!r}"
    if os.path.isdir(path) and not cfg.streaming:
        kwargs["cache_dir"] = local_cache_dir(path)
    try:
        ds = datasets.load_dataset(path, cfg.dataset_config_name, split=cfg.dataset_split,
                                   streaming=cfg.streaming, **kwargs)
    except ValueError as e:
        if "split" in str(e).lower():
            raise DataError(f"--dataset_split {cfg.dataset_split!r} is not in {flag}: {e}") from None
        raise DataError(f"{flag}: {e}") from None
    except Exception as e:  # noqa: BLE001 -- not found, no network, bad config name, unreadable files
        hint = ""
        if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes") and not os.path.exists(path):
            hint = " (HF_HUB_OFFLINE is set: a Hub data set must already be in the cache)"
        raise DataError(f"{flag} could not be loaded: {type(e).__name__}: {e}{hint}") from None
    if cfg.streaming:
        seed = cfg.seed or 0
        if cfg.shuffle_buffer_size:
            ds = ds.shuffle(seed=seed, buffer_size=cfg.shuffle_buffer_size)
        if cfg.max_train_samples:
            ds = ds.take(cfg.max_train_samples)
        if num_processes > 1:
            from datasets.distributed import split_dataset_by_node

            ds = split_dataset_by_node(ds, rank=process_index, world_size=num_processes)
    return ds


def local_cache_dir(folder: str) -> str | None:
    """A cache folder for a local data set whose README declares its ``configs`` (else None: the default).

    datasets 5.2 names the cache of such a folder after its base name and its README only, so two folders
    named alike (or one folder regenerated) silently load each other's stale rows. Keying the cache by
    the absolute path and every file's size and mtime avoids that.
    """
    root = Path(folder).resolve()
    readme = root / "README.md"
    if not (readme.is_file() and "configs:" in readme.read_text(encoding="utf-8", errors="replace")):
        return None
    digest = hashlib.sha1(str(root).encode())
    for p in sorted(root.rglob("*")):
        if p.is_file():
            st = p.stat()
            digest.update(f"{p.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return str(Path(datasets.config.HF_DATASETS_CACHE) / "fluxflow-local" / digest.hexdigest()[:16])


def resolve_columns(ds: datasets.Dataset | datasets.IterableDataset, image_column: str | None,
                    caption_column: str | None, flag: str) -> tuple[str, str]:
    """The image and caption column names: given ones are checked, missing ones guessed from the features."""
    features = ds.features
    if features is None:  # some streamed builders only know their columns after the first row
        features = ds._resolve_features().features
    names = list(features)
    for given, what in ((image_column, "--image_column"), (caption_column, "--caption_column")):
        if given is not None and given not in names:
            raise DataError(f"{what} {given!r} is not a column of {flag}; columns: {', '.join(names)}")
    image_like = [n for n in names if isinstance(features[n], datasets.Image)]
    image = image_column or next(iter(image_like + [n for n in IMAGE_COLUMNS if n in names]), None)
    if image is None:
        raise DataError(f"{flag} has no Image column; give --image_column (columns: {', '.join(names)})")
    text_like = [n for n in names if getattr(features[n], "dtype", None) in ("string", "large_string")]
    guesses = [n for n in CAPTION_COLUMNS if n in names] + text_like
    caption = caption_column or next((n for n in guesses if n != image), None)
    if caption is None:
        raise DataError(f"{flag} has no caption column; give --caption_column (columns: {', '.join(names)})")
    return image, caption


def prepare_columns(ds, image: str, caption: str):
    """Keep the two columns and turn off image decoding (we decode, with our checks)."""
    ds = ds.select_columns([image, caption])
    if isinstance(ds.features[image], datasets.Image):
        ds = ds.cast_column(image, datasets.Image(decode=False))
    return ds


def image_source(value: Any, name: str) -> str | bytes | PILImage.Image:
    """What ``open_image`` reads for one image cell: encoded bytes, a local path, or a PIL image."""
    if isinstance(value, dict):
        if value.get("bytes") is not None:  # b"" too: a zero-byte image, not a missing one
            return value["bytes"]
        value = value.get("path")
    if isinstance(value, PILImage.Image):
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str) and value:
        if os.path.exists(value) or "://" not in value:
            return value
        from datasets.utils.file_utils import xopen  # a remote file of a streamed imagefolder

        try:
            with xopen(value, "rb") as f:
                return f.read()
        except Exception as e:  # noqa: BLE001 -- one bad sample must not end the run
            raise BadSample("unreadable", name, f"{type(e).__name__}: {e}") from None
    raise BadSample("missing", name, f"no image data in this row ({type(value).__name__})")


def caption_text(value: Any, rng=None) -> str:
    """A caption cell as text, stripped; a list gives one element (random with ``rng``, else the first)."""
    if isinstance(value, (list, tuple)):
        value = [v for v in value if isinstance(v, str) and v.strip()]
        if not value:
            return ""
        value = value[int(rng.integers(len(value)))] if rng is not None else value[0]
    return value.strip() if isinstance(value, str) else ""


class HFRecords:
    """Rows of a map-style ``datasets.Dataset``; rows with an empty caption are left out and counted (or,
    with ``--strict_data``, kept in ``problems`` for the data set's ``verify()``)."""

    def __init__(self, ds: datasets.Dataset, cfg: DataConfig, skips: SkipLog, flag: str) -> None:
        image, caption = resolve_columns(ds, cfg.image_column, cfg.caption_column, flag)
        if cfg.max_train_samples and cfg.max_train_samples < len(ds):
            ds = ds.shuffle(seed=cfg.seed or 0).select(range(cfg.max_train_samples))
            ds = ds.flatten_indices()  # contiguous rows: faster random access than an indices mapping
        self.ds, self.image, self.caption = prepare_columns(ds, image, caption), image, caption
        self.n_named = skips.n_named = len(ds)  # the tally's total: rows with an empty caption included
        if self.n_named == 0:
            raise DataError(f"{flag} split {cfg.dataset_split!r} is empty")
        captions = self.ds[caption]
        self.rows = [i for i, c in enumerate(captions) if caption_text(c)]
        empty = [BadSample("empty_caption", f"row {i}")
                 for i, c in enumerate(captions) if not caption_text(c)]
        self.problems = empty  # with --strict_data, reported by the data set's verify() with the rest
        for bad in [] if cfg.strict_data else empty:
            skips.record(bad)
        if not self.rows:
            raise DataError(f"{flag}: no row has a caption in column {caption!r}")

    def __len__(self) -> int:
        return len(self.rows)

    def raw(self, i: int) -> tuple[Any, Any, str]:
        """``(image cell, caption cell, name)`` of record ``i``."""
        row = self.ds[self.rows[i]]
        cell = row[self.image]
        path = cell.get("path") if isinstance(cell, dict) else cell if isinstance(cell, str) else None
        name = f"row {self.rows[i]}" + (f" ({os.path.basename(path)})" if path else "")
        return cell, row[self.caption], name
