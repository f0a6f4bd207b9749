"""Small real files for the data tests: images in many modes, each kind of bad file, data set layouts."""

from __future__ import annotations

import io
import json
import struct
import zipfile
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


# ------------------------------------------------------------------------------------ fuzz: odd and bad files

RED, BLUE, WHITE, BLACK = (255, 0, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0)


def _split(mode: str, top, bottom, size: tuple[int, int] = (24, 24)) -> Image.Image:
    """``top`` colour above ``bottom`` colour, in ``mode``."""
    im = Image.new(mode, size, top)
    im.paste(Image.new(mode, (size[0], size[1] - size[1] // 2), bottom), (0, size[1] // 2))
    return im


def _frames(fmt: str, **kw) -> bytes:
    """A two-frame animation, red then blue."""
    red, blue = Image.new("RGB", (24, 24), RED), Image.new("RGB", (24, 24), BLUE)
    buf = io.BytesIO()
    red.save(buf, fmt, save_all=True, append_images=[blue], duration=100, **kw)
    return buf.getvalue()


def jpeg_header_only(w: int, h: int) -> bytes:
    """A small JPEG whose frame header (SOF0) claims ``w`` x ``h`` pixels."""
    data = encoded(Image.new("RGB", (16, 16)), "JPEG")
    sof = data.index(b"\xff\xc0")
    return data[:sof + 5] + struct.pack(">HH", h, w) + data[sof + 9:]


def webp_header_only(w: int, h: int) -> bytes:
    """An extended WebP (VP8X) header claiming a ``w`` x ``h`` canvas, and nothing else."""
    canvas = (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\0" * 4 + canvas
    return b"RIFF" + struct.pack("<I", 4 + len(vp8x)) + b"WEBP" + vp8x


def gif_header_only(w: int, h: int) -> bytes:
    """A GIF whose screen and one frame claim ``w`` x ``h`` pixels, with one byte of image data."""
    size = struct.pack("<HH", w, h)
    return b"GIF89a" + size + b"\0\0\0" + b",\0\0\0\0" + size + b"\0\x02\x02D\x01\0;"


def odd_images() -> dict[str, tuple[bytes, list[tuple[tuple[int, int], tuple[int, int, int]]]]]:
    """Valid images in unusual modes and shapes, keyed by file name: ``(bytes, [((y, x), rgb), ...])``.

    The list says which RGB colour the 16x16 centre crop must have at pixel ``(y, x)`` after conversion
    (transparent pixels on white, 16-bit and float scaled, first frame of animations, EXIF turned).
    """
    tall_wide = [((8, 8), RED)]
    top_bottom = lambda top, bottom: [((2, 8), top), ((13, 8), bottom)]  # noqa: E731
    palette = Image.new("P", (24, 24), 0)
    palette.putpalette([*BLACK, *RED] + [0] * 762)
    palette.paste(1, (0, 12, 24, 24))
    grey_t = _split("L", 7, 200)
    floats = np.full((24, 24), 0.5, np.float32)
    floats[23, 23], floats[22, 23], floats[23, 22] = np.nan, np.inf, -np.inf  # far from the pixels checked
    turned = _split("RGB", RED, BLUE, (40, 20))
    exif = turned.getexif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise: red on the right
    png = encoded(noise_image(24, 24, seed=5))
    return {
        "tiny_1x1.png": (encoded(Image.new("RGB", (1, 1), RED)), tall_wide),
        "tiny_1x40.png": (encoded(Image.new("RGB", (1, 40), RED)), tall_wide),
        "tiny_40x1.png": (encoded(Image.new("RGB", (40, 1), RED)), tall_wide),
        "cmyk.jpg": (encoded(Image.new("CMYK", (24, 24), (0, 255, 255, 0)), "JPEG", quality=95), tall_wide),
        "cmyk.tif": (encoded(Image.new("CMYK", (24, 24), (0, 255, 255, 0)), "TIFF"), tall_wide),
        "palette_transparent.png": (encoded(palette, transparency=0), top_bottom(WHITE, RED)),
        "palette_transparent.gif": (encoded(palette, "GIF", transparency=0), top_bottom(WHITE, RED)),
        "la.png": (encoded(_split("LA", (0, 0), (200, 255))), top_bottom(WHITE, (200,) * 3)),
        "grey_trns.png": (encoded(grey_t, transparency=7), top_bottom(WHITE, (200,) * 3)),
        "rgba.png": (encoded(_split("RGBA", (0, 0, 0, 0), (*RED, 255))), top_bottom(WHITE, RED)),
        "rgba.webp": (encoded(_split("RGBA", (0, 0, 0, 0), (*RED, 255)), "WEBP", lossless=True),
                      top_bottom(WHITE, RED)),
        "bilevel.png": (encoded(_split("1", 0, 1)), top_bottom(BLACK, WHITE)),
        "grey16.png": (encoded(Image.fromarray(np.full((24, 24), 32768, np.uint16))), [((8, 8), (128,) * 3)]),
        "grey16.tif": (encoded(Image.fromarray(np.full((24, 24), 65535, np.uint16)), "TIFF"),
                       [((8, 8), WHITE)]),
        "grey32.tif": (encoded(Image.fromarray(np.full((24, 24), 32768, np.int32)), "TIFF"),
                       [((8, 8), (128,) * 3)]),
        "float.tif": (encoded(Image.fromarray(floats), "TIFF"), [((2, 8), (128,) * 3), ((8, 4), (128,) * 3)]),
        "animated.gif": (_frames("GIF", loop=0), tall_wide),
        "animated.webp": (_frames("WEBP", lossless=True), tall_wide),
        "animated.png": (_frames("PNG"), tall_wide),
        "exif_turned.jpg": (encoded(turned, "JPEG", exif=exif.tobytes(), quality=95),
                            [((8, 2), BLUE), ((8, 13), RED)]),
        "no_iend.png": (png[:-12], []),  # the pixels are all there; only the end marker is cut
        "trailing_junk.jpg": (encoded(noise_image(24, 24, seed=6), "JPEG") + b"junk after the end", []),
    }


def bad_image_files() -> dict[str, tuple[bytes, str]]:
    """Many ways an image file can be bad, keyed by file name: ``(bytes, the BadSample kind expected)``."""
    im = noise_image(64, 48, seed=9)
    formats = {"png": (encoded(im), (8, 30, 100, 0.5, -30)),
               "jpg": (encoded(im, "JPEG", quality=90), (2, 20, 100, 0.5, -2)),
               "webp": (encoded(im, "WEBP"), (12, 30, 0.5, -1))}
    out = {}
    for ext, (data, cuts) in formats.items():
        for at in cuts:
            n = int(len(data) * at) if isinstance(at, float) else at
            label = "half" if isinstance(at, float) else f"at{at}" if at > 0 else f"end{-at}"
            out[f"cut_{ext}_{label}.{ext}"] = (data[:n], "truncated")
        out[f"zero.{ext}"] = (b"", "zero_byte")
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("inside.txt", "not an image " * 50)
    png = encoded(noise_image(32, 32))
    out.update({
        "bomb_100k.png": (png_header_only(100_000, 100_000), "bomb"),  # 1e10 pixels, over PIL's 2x limit
        "bomb_10k.png": (png_header_only(10_000, 10_000), "bomb"),  # 1e8: between PIL's warning and error
        "bomb.jpg": (jpeg_header_only(60_000, 60_000), "bomb"),
        "bomb.gif": (gif_header_only(60_000, 60_000), "bomb"),
        "bomb.webp": (webp_header_only(16_383, 16_383), "bomb"),
        "text.png": (b"this is a caption, not a picture\n", "not_image"),
        "page.jpg": (b"<!DOCTYPE html><html><body><h1>404 Not Found</h1></body></html>\n", "not_image"),
        "archive.png": (zipped.getvalue(), "not_image"),
        "script.webp": (b"#!/bin/sh\necho hello\n", "not_image"),
        "corrupt.png": (bad_files()["unreadable"], "unreadable"),
        "bad_crc.png": (png[:29] + bytes([png[29] ^ 0xFF]) + png[30:], "unreadable"),  # IHDR checksum
    })
    return out


def write_parquet_cells(root: Path, cells: list, captions: list) -> Path:
    """A ``write_parquet_repo`` folder whose training split holds ``cells`` and ``captions`` as given.

    A cell is encoded image bytes, None (a row without an image) or ``{"bytes": None, "path": ...}`` (an
    image that was never embedded); captions may be None. Written with pyarrow directly, because
    ``datasets``' own writer would try to embed the files such cells point at.
    """
    import datasets
    import pyarrow.parquet as pq

    write_parquet_repo(root, n_train=1, n_test=1)
    features = datasets.Features({"image": datasets.Image(), "text": datasets.Value("string")})
    rows = [c if c is None or isinstance(c, dict) else {"bytes": c, "path": f"train{i}.png"}
            for i, c in enumerate(cells)]
    table = datasets.Dataset.from_dict({"image": rows, "text": captions}, features=features)
    pq.write_table(table.data.table, str(root / "data" / "train-00000-of-00001.parquet"))
    return root


def safetensors_bytes(metadata: dict | None = None) -> bytes:
    """A valid one-tensor .safetensors file (no fluxflow metadata unless given)."""
    header = {"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}
    if metadata is not None:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + b"\0" * 4
