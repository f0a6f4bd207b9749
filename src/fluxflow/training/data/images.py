"""Opening image files safely and converting any PIL mode to the 1, 3 or 4 channels the model trains on.

Every way a file can be bad ends in one exception, ``BadSample``, whose ``kind`` is one of ``BAD_KINDS``,
so the sources can skip and count it (or fail, in strict mode) without knowing PIL's many errors.
Image size is checked from the header before any pixel is decoded: a decompression bomb never gets loaded.
"""

from __future__ import annotations

import io
import os
import re
import struct
import threading
import warnings
from collections.abc import Callable
from typing import TypeVar

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
    else:
        try:
            if os.path.getsize(source) == 0:
                raise BadSample("zero_byte", name)
        except FileNotFoundError:
            raise BadSample("missing", name) from None
        except OSError as e:
            raise BadSample("unreadable", name, str(e)) from None
    try:
        return past_pil_limit(lambda fp: _decode(fp, name, max_pixels, draft_size), source, max_pixels)
    except BadSample:
        raise
    except Image.DecompressionBombError as e:  # over 2x PIL's own limit: its message, in our terms
        said = re.search(r"\((\d+) pixels\)", str(e))
        raise BadSample("bomb", name, f"{said[1]} pixels > max_image_pixels={max_pixels}" if said
                        else str(e)) from None
    except Exception as e:  # noqa: BLE001 -- any decoder failure is one bad file, not a crash
        size = webp_canvas(source)  # a WebP some PIL versions refuse to open before telling its size
        if size and size[0] * size[1] > max_pixels:
            raise BadSample("bomb", name, f"{size[0]}x{size[1]} pixels > max_image_pixels={max_pixels}") from None
        known = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError)
        detail = "" if isinstance(e, UnidentifiedImageError) else (
            str(e) if isinstance(e, known) else f"{type(e).__name__}: {e}")
        raise BadSample(_failure_kind(source, e), name, detail) from None


def webp_canvas(source: str | os.PathLike | bytes) -> tuple[int, int] | None:
    """``(width, height)`` from a WebP file's first chunk header (VP8X canvas, lossy VP8 or lossless VP8L), or
    ``None`` when ``source`` is no WebP. Pillow 12 cannot open a WebP whose decoder it cannot create (a huge
    canvas), so it never says the size; this reads it from 30 bytes, decoding nothing."""
    try:
        if isinstance(source, (bytes, bytearray)):
            head = bytes(source[:30])
        else:
            with open(source, "rb") as f:
                head = f.read(30)
    except OSError:
        return None
    if len(head) < 30 or head[:4] != b"RIFF" or head[8:12] != b"WEBP":
        return None
    chunk = head[12:16]
    if chunk == b"VP8X":
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    if chunk == b"VP8 " and head[23:26] == b"\x9d\x01\x2a":
        return int.from_bytes(head[26:28], "little") & 0x3FFF, int.from_bytes(head[28:30], "little") & 0x3FFF
    if chunk == b"VP8L" and head[20] == 0x2F:
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


def _decode(fp, name: str, max_pixels: int, draft_size: int | None) -> Image.Image:
    """``open_image``'s decode: the header's size checked against ``max_pixels`` before any pixel is read."""
    with warnings.catch_warnings():
        # PIL warns between 1x and 2x its own limit and raises above 2x; we apply our own limit below.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        # Closed on the way out, errors included: multi-frame formats (GIF, APNG, WebP, TIFF) keep their
        # file open after load(); what we return is exif_transpose's copy.
        with Image.open(fp) as im:
            if im.width * im.height > max_pixels:
                raise BadSample("bomb", name, f"{im.width}x{im.height} pixels > max_image_pixels={max_pixels}")
            if draft_size and im.format == "JPEG":
                im.draft(im.mode, (draft_size, draft_size))
            _no_truncated_loads()
            im.load()
            return ImageOps.exif_transpose(im)


_T = TypeVar("_T")
_PIL_LIMIT = threading.Lock()  # held while PIL's global limit is raised for one read


def past_pil_limit(read: Callable[[object], _T], source: str | os.PathLike | bytes, max_pixels: int) -> _T:
    """``read(fp)`` on ``source``; an image PIL refuses as a bomb (over twice ``Image.MAX_IMAGE_PIXELS``, PIL's
    own check, whatever ours says) is read again with PIL's limit raised to ``max_pixels``, when that is more.

    So a raised ``--max_image_pixels`` really admits larger images; our header check still guards bombs.
    PIL's limit is a process-wide global: it is raised for that one read only, under a lock (concurrent
    reads cannot leave it raised), and put back right after.
    """
    def fp():
        return io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source

    try:
        return read(fp())
    except Image.DecompressionBombError as e:
        refused = e
    with _PIL_LIMIT:
        limit = Image.MAX_IMAGE_PIXELS
        if limit is not None and max_pixels <= 2 * limit:  # nothing PIL refuses is within max_pixels
            raise refused
        Image.MAX_IMAGE_PIXELS = max_pixels
        try:
            return read(fp())
        finally:
            Image.MAX_IMAGE_PIXELS = limit


def check_image(source: str | os.PathLike | bytes, name: str, max_pixels: int, channels: int,
                draft_size: int | None = None) -> None:
    """Read ``source`` the way training does (``open_image``, then ``convert_channels``); raise ``BadSample``.

    For checks up front (``--strict_data``, ``--test_image_address``): the decode is complete, so truncated
    and corrupt files are caught, and a mode that fails to convert is ``unreadable`` rather than a crash.
    """
    if channels not in CHANNEL_MODES:
        raise ValueError(f"channels must be one of 1, 3, 4, got {channels}")
    im = open_image(source, name, max_pixels, draft_size)
    try:
        convert_channels(im, channels)
    except Exception as e:  # noqa: BLE001 -- one bad file, not a crash
        raise BadSample("unreadable", name, f"{type(e).__name__}: {e}") from None
    finally:
        im.close()


# How ``image_file_problem`` words each kind; the kinds whose detail it adds.
_PROBLEMS = {"missing": "is not a file", "zero_byte": "is an empty file", "bomb": "is too large",
             "not_image": "is not an image", "truncated": "is a truncated image",
             "unreadable": "is an unreadable image"}
_DETAILED = ("bomb", "unreadable")


def image_file_problem(path: str | os.PathLike, max_pixels: int, channels: int) -> str | None:
    """One line saying what is wrong with the image file ``path`` (e.g. ``"'x.png' is a truncated image"``),
    or None when training can read it: for checking an image flag before any model is built.

    The whole file is decoded (``check_image``), so the kinds are those a training data set would report.
    """
    name = os.fspath(path)
    try:
        if not os.path.isfile(name):  # missing, a dangling link, a folder or a special file
            raise BadSample("missing", name)
        check_image(name, name, max_pixels, channels)
    except BadSample as bad:
        detail = f" ({bad.detail})" if bad.detail and bad.kind in _DETAILED else ""
        return f"{name!r} {_PROBLEMS[bad.kind]}{detail}"
    return None


_CHECK_BYTES = 64 << 20  # at most this much of a file that failed is read again to tell why


def _failure_kind(source: str | os.PathLike | bytes, error: Exception) -> str:
    """``truncated``, ``unreadable`` or ``not_image`` for a file PIL failed on.

    PIL reports a file that ends early in several ways depending on where it ends ("cannot identify" when
    the header is cut, "could not create decoder object" for WebP, "truncated" elsewhere), so the file's
    own structure decides first. A file that starts like an image but cannot be identified (a corrupt
    header) is ``unreadable``, like corrupt pixel data or an I/O error; only other files are ``not_image``.
    """
    data, whole, said = source, True, str(error)
    if not isinstance(source, (bytes, bytearray)):
        said = said.replace(os.fspath(source), "")  # PIL's words count, not a file name saying "truncated"
        try:
            with open(source, "rb") as f:
                data = f.read(_CHECK_BYTES)
                whole = not f.read(1)  # a huge non-image (a video named .jpg) is not read to its end
        except OSError:
            data = b""
    if (whole and ends_early(bytes(data))) or isinstance(error, EOFError) or "truncated" in said.lower():
        return "truncated"
    if isinstance(error, UnidentifiedImageError) and image_format(data) is None:
        return "not_image"
    return "unreadable"


def image_format(data: bytes) -> str | None:
    """``"png"``, ``"jpeg"``, ``"webp"``, ``"gif"``, ``"bmp"`` or ``"tiff"`` from the first bytes, or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8"):  # start of image; the next marker may be cut off
        return "jpeg"
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "webp"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if data.startswith(b"BM") and len(data) >= 14 and data[6:10] == b"\0\0\0\0":  # reserved, always 0
        return "bmp"
    if data.startswith((b"II*\0", b"MM\0*")):
        return "tiff"
    return None


def ends_early(data: bytes) -> bool:
    """True when ``data`` starts like a PNG, JPEG, WebP, GIF or BMP file but stops before its end marker
    (PNG ``IEND``, JPEG ``EOI``, GIF trailer) or the length its header declares (WebP, BMP)."""
    kind = image_format(data)
    if kind == "png":
        pos = 8
        while pos + 12 <= len(data):
            length, chunk = struct.unpack(">I4s", data[pos:pos + 8])
            pos += 12 + length
            if chunk == b"IEND":
                return pos > len(data)
        return True
    if kind == "jpeg":
        return not data.rstrip(b"\0").endswith(b"\xff\xd9")
    if kind == "gif":
        return not data.rstrip(b"\0").endswith(b";")
    if kind == "webp":  # RIFF size: the bytes after the first 8
        return len(data) < 8 + int.from_bytes(data[4:8], "little")
    if kind == "bmp":  # file size
        return len(data) < int.from_bytes(data[2:6], "little")
    return False


def _no_truncated_loads() -> None:
    # A library elsewhere in the process may have turned this on; a truncated file must not load as grey.
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        ImageFile.LOAD_TRUNCATED_IMAGES = False


def read_size(source: str | os.PathLike | bytes, max_pixels: int | None = None) -> tuple[int, int]:
    """``(width, height)`` from the header only (for buckets); an EXIF quarter turn swaps them.

    ``max_pixels`` above PIL's own limit lets larger images be measured too (as ``open_image`` reads them).
    """
    def size(fp) -> tuple[int, int]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(fp) as im:
                w, h = im.size
                orientation = im.getexif().get(0x0112, 1)
        return (h, w) if orientation in (5, 6, 7, 8) else (w, h)

    return past_pil_limit(size, source, max_pixels or 0)


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
        if im.mode == "F":  # [0, 1] or [0, 255] data; NaN and infinite pixels must not decide which
            finite = a[np.isfinite(a)]
            top = 1.0 if finite.size and finite.max() <= 1.0 else 255.0
        elif im.mode == "I" and a.size and a.max() <= 255:
            top = 255.0
        else:
            top = 65535.0  # 16-bit data, also when PIL loaded a 16-bit PNG as mode "I"
        a = np.clip(np.nan_to_num(a) / top, 0.0, 1.0) * 255.0
        return Image.fromarray(np.rint(a).astype(np.uint8), "L")
    return im

