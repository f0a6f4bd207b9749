"""Opening image files safely and converting any PIL mode to the 1, 3 or 4 channels the model trains on.

Every way a file can be bad ends in one exception, ``BadSample``, whose ``kind`` is one of ``BAD_KINDS``,
so the sources can skip and count it (or fail, in strict mode) without knowing PIL's many errors.
Image size is checked from the header before any pixel is decoded: a decompression bomb never gets loaded.
"""

from __future__ import annotations

import io
import os
import warnings

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

# Why a sample was skipped. The first four are found without decoding (missing file, empty caption and
# zero-byte files up front; bombs from the header); the rest when the pixels are decoded.
BAD_KINDS = ("missing", "empty_caption", "zero_byte", "bomb", "not_image", "truncated", "unreadable")

CHANNEL_MODES = {1: "L", 3: "RGB", 4: "RGBA"}
# Transparent pixels are composited on white before alpha is dropped: dropping alpha alone shows whatever
# colour the transparent pixels happen to store (often black), which is not what the image looks like.
BACKGROUND = (255, 255, 255)


class BadSample(Exception):
    """A sample that cannot be used; ``kind`` is one of ``BAD_KINDS``, ``name`` says which file or row."""

    def __init__(self, kind: str, name: str, detail: str = "") -> None:
        assert kind in BAD_KINDS, kind
        self.kind, self.name, self.detail = kind, name, detail
        super().__init__(f"{name}: {kind}" + (f" ({detail})" if detail else ""))


def open_image(source: str | os.PathLike | bytes, name: str, max_pixels: int,
               draft_size: int | None = None) -> Image.Image:
    """Open ``source`` (a path or encoded bytes), check its header size against ``max_pixels``, decode it.

    ``draft_size``: JPEGs are decoded at the smallest 1/2, 1/4 or 1/8 scale whose sides stay >= this
    (much faster for photos far larger than the training size). EXIF orientation is applied.
    Raises ``BadSample`` for every failure; never returns a partial image (truncated files are errors,
    not grey-filled pictures).
    """
    if isinstance(source, (bytes, bytearray)):
        if len(source) == 0:
            raise BadSample("zero_byte", name)
        fp = io.BytesIO(source)
    else:
        try:
            if os.path.getsize(source) == 0:
                raise BadSample("zero_byte", name)
        except FileNotFoundError:
            raise BadSample("missing", name) from None
        except OSError as e:
            raise BadSample("unreadable", name, str(e)) from None
        fp = source
    try:
        with warnings.catch_warnings():
            # PIL warns between 1x and 2x its own limit and raises above 2x; we apply our own limit below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(fp)
            if im.width * im.height > max_pixels:
                raise BadSample("bomb", name,
                                f"{im.width}x{im.height} pixels > max_image_pixels={max_pixels}")
            if draft_size and im.format == "JPEG":
                im.draft(im.mode, (draft_size, draft_size))
            _no_truncated_loads()
            im.load()
        return ImageOps.exif_transpose(im)
    except BadSample:
        raise
    except Image.DecompressionBombError as e:
        raise BadSample("bomb", name, str(e)) from None
    except UnidentifiedImageError:
        raise BadSample("not_image", name) from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        # PIL says "image file is truncated" / "Truncated File Read" when the data ends early; anything
        # else (corrupt compressed data, an I/O error) is "unreadable".
        kind = "truncated" if "truncated" in str(e).lower() or isinstance(e, EOFError) else "unreadable"
        raise BadSample(kind, name, str(e)) from None
    except Exception as e:  # noqa: BLE001 -- any other decoder failure is one bad file, not a crash
        raise BadSample("unreadable", name, f"{type(e).__name__}: {e}") from None


def _no_truncated_loads() -> None:
    # A library elsewhere in the process may have turned this on; a truncated file must not load as grey.
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        ImageFile.LOAD_TRUNCATED_IMAGES = False


def read_size(source: str | os.PathLike | bytes) -> tuple[int, int]:
    """``(width, height)`` from the header only (for buckets); an EXIF quarter turn swaps them."""
    fp = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(fp) as im:
            w, h = im.size
            orientation = im.getexif().get(0x0112, 1)
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def convert_channels(im: Image.Image, channels: int) -> Image.Image:
    """Return ``im`` as an 8-bit image with ``channels`` (1: L, 3: RGB, 4: RGBA), whatever its mode.

    Handled on purpose: palette (with or without transparency), 1-bit, L/LA, RGBA/premultiplied, CMYK,
    YCbCr/LAB/HSV, and 16/32-bit integer or float greyscale (scaled to 8 bits, not clipped as PIL would).
    """
    if channels not in CHANNEL_MODES:
        raise ValueError(f"channels must be one of 1, 3, 4, got {channels}")
    im = _to_8bit(im)
    has_alpha = im.mode in ("RGBA", "LA", "La", "RGBa", "PA") or (
        im.mode in ("P", "L", "RGB") and "transparency" in im.info
    )
    if channels == 4:
        return im.convert("RGBA")
    if has_alpha:
        rgba = im.convert("RGBA")
        flat = Image.new("RGB", rgba.size, BACKGROUND)
        flat.paste(rgba, mask=rgba.getchannel("A"))
        im = flat
    target = CHANNEL_MODES[channels]
    return im if im.mode == target else im.convert(target)


def _to_8bit(im: Image.Image) -> Image.Image:
    """Scale high-bit-depth single-channel modes to ``L`` (PIL's own convert clips them at 255)."""
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        a = np.asarray(im, dtype=np.float64)
        if im.mode == "F":
            top = 1.0 if a.size and np.nanmax(a) <= 1.0 else 255.0
        elif im.mode == "I" and a.size and a.max() <= 255:
            top = 255.0
        else:
            top = 65535.0  # 16-bit data, also when PIL loaded a 16-bit PNG as mode "I"
        a = np.clip(np.nan_to_num(a) / top, 0.0, 1.0) * 255.0
        return Image.fromarray(np.rint(a).astype(np.uint8), "L")
    return im

