"""Fashion-MNIST (Zalando, 70,000 real 28x28 grey product photos in 10 classes, MIT licence), read from its IDX
files with numpy (no torchvision) and written as a captioned image folder that ``fluxflow-train`` reads.

The files come from Debian's ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``); point
``$FLUXFLOW_FASHION_MNIST`` or the ``folder`` arguments at another folder holding the same four files.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
ENV_VAR = "FLUXFLOW_FASHION_MNIST"
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
               "Ankle boot")  # the official names, in label order
# caption phrasings; sample i uses TEMPLATES[i % len(TEMPLATES)], class prompts the first one
TEMPLATES = ("a photo of {a} {name}", "{a} {name}", "a picture of {a} {name}, product photo",
             "a black and white photo of {a} {name}", "{name}, product photo on a black background")
PAD = 2  # 28 -> 32 px: two pixels of the black background on every side, the photo's own pixels untouched
# IDX element types (the third byte of the magic number) -> big-endian numpy types
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class FashionMNISTMissingError(FileNotFoundError):
    """The Fashion-MNIST files are not where they were looked for."""


def data_dir(folder: str | os.PathLike | None = None) -> Path:
    """The folder to read: ``folder``, else ``$FLUXFLOW_FASHION_MNIST``, else Debian's."""
    return Path(folder or os.environ.get(ENV_VAR) or DEFAULT_DIR)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """An IDX file (gzip-compressed or not) as a numpy array: magic ``0 0 type ndim``, big-endian uint32 sizes."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in _IDX_TYPES:
        raise ValueError(f"{path} is not an IDX file (magic {raw[:4].hex() or 'missing'})")
    ndim, dtype = raw[3], np.dtype(_IDX_TYPES[raw[2]])
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4)) if ndim else ()
    start = 4 + 4 * ndim
    if len(raw) - start != int(np.prod(shape)) * dtype.itemsize:
        raise ValueError(f"{path}: header says {shape} of {dtype}, but {len(raw) - start} data bytes follow")
    return np.frombuffer(raw, dtype, offset=start).reshape(shape).astype(dtype.newbyteorder("="))


def _find(folder: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    raise FashionMNISTMissingError(
        f"Fashion-MNIST file {stem}.gz not found in {folder}: install it with "
        f"`sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or set ${ENV_VAR} to a folder holding "
        f"{', '.join(s + '.gz' for pair in FILES.values() for s in pair)}")


def load_split(split: str = "train", folder: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 [N, 28, 28], labels uint8 [N])`` of ``split`` ("train": 60,000, "test": 10,000)."""
    if split not in FILES:
        raise ValueError(f"unknown split {split!r}; allowed: {', '.join(FILES)}")
    where = data_dir(folder)
    images, labels = (read_idx(_find(where, stem)) for stem in FILES[split])
    if images.ndim != 3 or labels.shape != images.shape[:1]:
        raise ValueError(f"{where}: {split} images {images.shape} and labels {labels.shape} do not match")
    return images, labels


def caption(label: int, phrasing: int = 0) -> str:
    """A caption of class ``label``: "a photo of a sneaker", "an ankle boot", ... (``phrasing`` picks one)."""
    name = CLASS_NAMES[label].lower()
    return TEMPLATES[phrasing % len(TEMPLATES)].format(a="an" if name[0] in "aeiou" else "a", name=name)


def class_prompt(label: int) -> str:
    """The prompt that asks for class ``label`` when judging generated images (the first phrasing)."""
    return caption(label, 0)


def pad32(images: np.ndarray) -> np.ndarray:
    """``[N, 28, 28]`` -> ``[N, 32, 32]`` by ``PAD`` pixels of the black (0) background: exact pixels, no
    resampling, and a side that the VAE's 4x and the flow's patches divide."""
    return np.pad(images, ((0, 0), (PAD, PAD), (PAD, PAD)))


def export_folder(out: str | os.PathLike, images: np.ndarray, labels: np.ndarray) -> Path:
    """Write ``images`` (grey, padded to 32 px) as ``out/<i>.png`` with ``captions.txt``
    (``file_name<TAB>caption``) and ``metadata.jsonl`` (also the label); returns ``out``. Train with
    ``--data_path out --captions_file out/captions.txt``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    width = max(5, len(str(len(images) - 1)))
    with open(out / "captions.txt", "w", encoding="utf-8") as caps, \
            open(out / "metadata.jsonl", "w", encoding="utf-8") as meta:
        for i, (image, label) in enumerate(zip(pad32(images), labels)):
            name, text = f"{i:0{width}d}.png", caption(int(label), i)
            Image.fromarray(image, "L").save(out / name, compress_level=1)
            caps.write(f"{name}\t{text}\n")
            meta.write(json.dumps({"file_name": name, "text": text, "label": int(label)}) + "\n")
    return out
