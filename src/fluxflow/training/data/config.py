"""The data options, one field per command-line flag (same names), and their up-front validation.

The training config schema builds its flags from these fields (``schema.flag``: the help, and the choices of
the two choice flags). ``validate()`` runs before any model is built and names every bad flag at once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from fluxflow.training.data.folder import encoding_problem
from fluxflow.training.errors import ConfigError
from fluxflow.training.schema import Field, flag

CHANNELS = (1, 3, 4)
RESIZE_INTERPOLATIONS = ("lanczos", "bicubic", "bilinear")
METADATA_FILES = ("metadata.jsonl", "metadata.csv", "metadata.parquet")
# `datasets` builders that read files from a folder: with them, --data_path is the folder (data_dir).
FOLDER_BUILDERS = ("imagefolder", "parquet", "csv", "json", "arrow", "webdataset")


@dataclass
class DataConfig:
    """Where training images and captions come from and how they become ``[-1, 1]`` tensors."""

    data_path: str | None = flag(None, "Folder of training images (the files named in --captions_file); "
                                     "without --captions_file, an imagefolder with metadata.jsonl/.csv "
                                     "captions")
    captions_file: str | None = flag(None, "Text file, one 'file_name<TAB>caption' per line (see docs/DATA.md)")
    dataset_name: str | None = flag(None, "A `datasets` data set: Hub id, local folder, or a builder name "
                                        "such as 'imagefolder' (then --data_path is its folder)")
    dataset_config_name: str | None = flag(None, "Config (subset) name of --dataset_name")
    dataset_split: str = flag("train", "Split of --dataset_name to train on")
    image_column: str | None = flag(None, "Image column of --dataset_name (default: the first Image column)")
    caption_column: str | None = flag(None, "Caption column of --dataset_name "
                                          "(default: text, caption, prompt, ...)")
    streaming: bool = flag(False, "Stream --dataset_name instead of downloading it; size the run with "
                                "--max_train_steps; each process reads its own shard")
    max_train_samples: int | None = flag(None, "Train on at most this many samples (a --seed-chosen subset; "
                                             "the first N when streaming)")
    shuffle_buffer_size: int = flag(1000, "Shuffle buffer of a streamed data set (0: no shuffling)")
    img_size: int = flag(1024, "Target image size: short side resized to this, then cropped square")
    channels: int = flag(3, "Image channels: 1 (grey), 3 (RGB) or 4 (RGBA)", Field("choice", choices=CHANNELS))
    resize_interpolation: str = flag("lanczos", "Resampling filter for resizing", Field("choice", choices=RESIZE_INTERPOLATIONS))
    random_crop: bool = flag(False, "Crop at a random position instead of the centre")
    random_flip: bool = flag(False, "Flip images horizontally with probability 0.5")
    aspect_buckets: bool = flag(False, "Group images into aspect-ratio buckets of about img_size^2 pixels "
                                     "instead of square crops (map-style sources only)")
    bucket_step: int = flag(64, "Bucket sides are multiples of this (keep it a multiple of the VAE's 8)")
    strict_data: bool = flag(False, "Fail up front on any bad sample (reads every image once) instead of "
                                  "skipping and counting")
    max_image_pixels: int = flag(Image.MAX_IMAGE_PIXELS, "Images with more pixels are skipped as decompression "
                                                       "bombs (read from the header, never decoded)")
    seed: int | None = flag(None, "Seed for model init, noise, the sample subset, crops, flips and shuffling "
                                "(not given: a random seed is drawn, logged and saved in logs/train_config.json)")

    @property
    def source(self) -> str:
        """``"captions_file"``, ``"imagefolder"`` (``--data_path`` with metadata) or ``"datasets"``."""
        if self.dataset_name:
            return "datasets"
        return "captions_file" if self.captions_file else "imagefolder"

    def validate(self) -> None:
        """Raise ``ConfigError`` naming every bad or missing data flag; touches only the file system."""
        problems = [*self._source_problems(), *self._value_problems()]
        if problems:
            raise ConfigError(problems)

    def _source_problems(self) -> list[str]:
        p: list[str] = []
        if not self.dataset_name and not self.data_path and not self.captions_file:
            return [("no training data: give --data_path with --captions_file, --data_path alone (an "
                     "imagefolder with metadata.jsonl/.csv), or --dataset_name")]
        if self.dataset_name and self.captions_file:
            p.append("give either --dataset_name or --captions_file, not both")
        if self.dataset_name and self.data_path and self.dataset_name not in FOLDER_BUILDERS:
            p.append(f"--data_path is only used with --dataset_name set to a folder builder "
                     f"({', '.join(FOLDER_BUILDERS)}), got --dataset_name {self.dataset_name!r}")
        if self.dataset_name in FOLDER_BUILDERS and not self.data_path:
            p.append(f"--dataset_name {self.dataset_name} needs --data_path (the folder to read)")
        if self.captions_file and not self.data_path:
            p.append("--captions_file needs --data_path (the folder its file names are relative to)")
        if self.captions_file and not os.path.isfile(self.captions_file):
            p.append(f"--captions_file {self.captions_file!r} is not a file")
        elif self.captions_file and (wide := encoding_problem(self.captions_file)):
            p.append(wide)
        if self.data_path and not os.path.isdir(self.data_path):
            p.append(f"--data_path {self.data_path!r} is not a folder")
        elif self.source == "imagefolder" and not has_metadata(self.data_path):
            p.append(f"--data_path {self.data_path!r} has no {' / '.join(METADATA_FILES)}: give "
                     f"--captions_file (one 'file_name<TAB>caption' per line) or add a metadata file")
        if self.streaming and self.source != "datasets":
            p.append("--streaming needs --dataset_name (local folders are read directly)")
        if self.streaming and self.aspect_buckets:
            p.append("--aspect_buckets needs a map-style source: it cannot be combined with --streaming")
        return p

    def _value_problems(self) -> list[str]:
        p: list[str] = []
        if self.channels not in CHANNELS:
            p.append(f"--channels must be one of {', '.join(map(str, CHANNELS))}, got {self.channels}")
        if self.resize_interpolation not in RESIZE_INTERPOLATIONS:
            p.append(f"--resize_interpolation must be one of {', '.join(RESIZE_INTERPOLATIONS)}, "
                     f"got {self.resize_interpolation!r}")
        if not isinstance(self.img_size, int) or self.img_size < 8:
            p.append(f"--img_size must be an integer >= 8, got {self.img_size!r}")
        if self.max_train_samples is not None and self.max_train_samples < 1:
            p.append(f"--max_train_samples must be >= 1, got {self.max_train_samples}")
        if self.shuffle_buffer_size < 0:
            p.append(f"--shuffle_buffer_size must be >= 0, got {self.shuffle_buffer_size}")
        if self.bucket_step < 8 or self.bucket_step % 8:
            p.append(f"--bucket_step must be a positive multiple of 8, got {self.bucket_step}")
        if self.max_image_pixels < 1:
            p.append(f"--max_image_pixels must be >= 1, got {self.max_image_pixels}")
        if not self.dataset_split:
            p.append("--dataset_split must not be empty")
        if self.seed is not None and not 0 <= self.seed < 2**32:  # numpy's seeds are unsigned 32-bit
            p.append(f"--seed must be in [0, 2^32 - 1], got {self.seed}")
        return p


def has_metadata(folder: str) -> bool:
    """True when ``folder`` (or a split folder in it) holds an imagefolder metadata file."""
    root = Path(folder)
    return any((root / m).is_file() for m in METADATA_FILES) or any(
        (d / m).is_file() for d in root.iterdir() if d.is_dir() for m in METADATA_FILES
    )
