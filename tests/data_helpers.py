"""Small real files for the data tests: images in many modes, each kind of bad file, data set layouts."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def noise_image(w: int = 40, h: int = 32, seed: int = 0, mode: str = "RGB") -> Image.Image:
    a = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return Image.fromarray(a, "RGB").convert(mode)


def encoded(im: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(w: int, h: int) -> bytes:
    """A tiny PNG whose header claims ``w`` x ``h`` grey pixels: a decompression bomb as far as sizes go."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 16))
            + _chunk(b"IEND", b""))


def bad_files() -> dict[str, bytes]:
    """One file per kind of bad image, keyed by the ``BadSample.kind`` it must be reported as."""
    good = encoded(noise_image(32, 32))
    return {
        "zero_byte": b"",
        "not_image": b"this is a caption, not a picture\n",
        "truncated": good[: len(good) // 2],
        "unreadable": good[:60] + b"\0" * 50 + good[110:],  # corrupt compressed data, complete file
        "bomb": png_header_only(30000, 30000),  # 9e8 pixels: over PIL's and our limit, 100 bytes on disk
    }


def write_folder(root: Path, n: int = 6, size: int = 40, extra_lines: tuple[str, ...] = ()) -> Path:
    """``n`` noise PNGs ``img{i}.png`` and ``captions.txt`` naming them (plus ``extra_lines``)."""
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        noise_image(size + 8 * i, size, seed=i).save(root / f"img{i}.png")
        lines.append(f"img{i}.png\tcaption {i}")
    (root / "captions.txt").write_text("\n".join([*lines, *extra_lines]) + "\n", encoding="utf-8")
    return root / "captions.txt"


def write_imagefolder(root: Path, n: int = 6, size: int = 32, metadata: str = "jsonl") -> Path:
    """An imagefolder split (``root/train``) with ``metadata.jsonl`` or ``metadata.csv`` captions."""
    split = root / "train"
    split.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        noise_image(size, size, seed=100 + i).save(split / f"{i}.png")
        rows.append({"file_name": f"{i}.png", "text": f"folder caption {i}"})
    if metadata == "jsonl":
        (split / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    else:
        (split / "metadata.csv").write_text("file_name,text\n" + "".join(f"{r['file_name']},{r['text']}\n"
                                                                        for r in rows), encoding="utf-8")
    return root


HUB_README = """---
configs:
- config_name: default
  data_files:
  - split: train
    path: data/train-*
  - split: test
    path: data/test-*
---
# a test data set in the Hub layout
"""


def write_parquet_repo(root: Path, n_train: int = 8, n_test: int = 2, size: int = 32,
                       captions: list[str] | None = None, images: list[bytes] | None = None) -> Path:
    """A folder laid out like a Hub data set repo: ``README.md`` configs + ``data/{split}-*.parquet``.

    Images are stored as encoded PNG bytes in an ``image`` column, captions in ``text``; ``captions`` and
    ``images`` override the generated ones for the training split.
    """
    import datasets

    (root / "data").mkdir(parents=True, exist_ok=True)
    features = datasets.Features({"image": datasets.Image(), "text": datasets.Value("string")})
    for split, count, offset in (("train", n_train, 0), ("test", n_test, 1000)):
        imgs = [encoded(noise_image(size, size, seed=offset + i)) for i in range(count)]
        caps = [f"{split} caption {i}" for i in range(count)]
        if split == "train":
            imgs, caps = images or imgs, captions or caps
        table = datasets.Dataset.from_dict(
            {"image": [{"bytes": b, "path": f"{split}{i}.png"} for i, b in enumerate(imgs)], "text": caps},
            features=features)
        table.to_parquet(str(root / "data" / f"{split}-00000-of-00001.parquet"))
    (root / "README.md").write_text(HUB_README, encoding="utf-8")
    return root
