"""Decoding and transforms: every image mode to 1/3/4 channels, each bad-file kind, resize/crop/flip."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from data_helpers import bad_files, encoded, noise_image, write_folder
from PIL import Image

from fluxflow.training.data import (
    BadSample,
    DataConfig,
    ImageTransform,
    build_dataset,
    check_image,
    convert_channels,
    image_file_problem,
    open_image,
)
from fluxflow.training.data.images import read_size
from fluxflow.training.data.transforms import crop_box, to_tensor


def pixel(im: Image.Image, xy=(0, 0)):
    return im.getpixel(xy)


# ------------------------------------------------------------------------------------------------ channels

def test_rgb_to_grey_uses_luma_weights():
    im = Image.new("RGB", (2, 2), (255, 0, 0))
    assert convert_channels(im, 1).mode == "L"
    assert pixel(convert_channels(im, 1)) == 76  # ITU-R 601: 0.299 * 255


def test_grey_to_rgb_and_rgba():
    im = Image.new("L", (2, 2), 77)
    assert pixel(convert_channels(im, 3)) == (77, 77, 77)
    assert pixel(convert_channels(im, 4)) == (77, 77, 77, 255)


def test_rgba_is_composited_on_white_not_stripped():
    im = Image.new("RGBA", (2, 1), (0, 0, 0, 0))  # transparent black: stripping alpha would give black
    im.putpixel((1, 0), (255, 0, 0, 128))
    rgb = convert_channels(im, 3)
    assert pixel(rgb, (0, 0)) == (255, 255, 255)
    r, g, b = pixel(rgb, (1, 0))
    assert r == 255 and abs(g - 127) <= 1 and abs(b - 127) <= 1
    assert pixel(convert_channels(im, 1), (0, 0)) == 255
    assert pixel(convert_channels(im, 4), (1, 0)) == (255, 0, 0, 128)  # alpha kept with 4 channels


def test_palette_with_transparency():
    im = Image.new("P", (2, 1), 0)
    im.putpalette([0, 0, 0, 0, 200, 0] + [0] * 762)
    im.putpixel((1, 0), 1)
    im.info["transparency"] = 0
    rgb = convert_channels(im, 3)
    assert pixel(rgb, (0, 0)) == (255, 255, 255)  # the transparent index
    assert pixel(rgb, (1, 0)) == (0, 200, 0)
    assert pixel(convert_channels(im, 4), (0, 0))[3] == 0


def test_cmyk_jpeg_decodes_to_rgb(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(path, quality=95)  # pure red in CMYK
    im = open_image(path, "cmyk.jpg", 10**6)
    assert im.mode == "CMYK"
    r, g, b = pixel(convert_channels(im, 3), (8, 8))
    assert r > 240 and g < 15 and b < 15


def test_16_bit_grey_is_scaled_not_clipped(tmp_path):
    a = np.array([[0, 16384, 32768, 65535]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(a).save(path)
    im = open_image(path, "deep.png", 10**6)
    assert im.mode in ("I;16", "I")
    values = np.asarray(convert_channels(im, 1)).ravel().tolist()
    assert values == [0, 64, 128, 255]  # PIL's own convert("L") clips: [0, 255, 255, 255]
    assert np.asarray(convert_channels(im, 3))[0, 1].tolist() == [64, 64, 64]


def test_bilevel_and_la_modes():
    one = Image.new("1", (2, 1), 0)
    one.putpixel((1, 0), 1)
    assert [pixel(convert_channels(one, 3), (x, 0)) for x in (0, 1)] == [(0, 0, 0), (255, 255, 255)]
    la = Image.new("LA", (1, 1), (0, 0))
    assert pixel(convert_channels(la, 3)) == (255, 255, 255)


def test_exif_orientation_is_applied(tmp_path):
    im = noise_image(20, 10)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    path = tmp_path / "rotated.jpg"
    im.save(path, exif=exif.tobytes())
    assert open_image(path, "rotated.jpg", 10**6).size == (10, 20)


def test_unknown_channel_count_is_rejected():
    with pytest.raises(ValueError, match="1, 3, 4"):
        convert_channels(Image.new("RGB", (1, 1)), 2)


# ------------------------------------------------------------------------------------------------ bad files

@pytest.mark.parametrize("kind", ["zero_byte", "not_image", "truncated", "unreadable", "bomb"])
def test_each_bad_file_kind_is_reported(tmp_path, kind):
    data = bad_files()[kind]
    path = tmp_path / f"{kind}.png"
    path.write_bytes(data)
    for source in (path, data):  # from disk and from a datasets bytes cell
        with pytest.raises(BadSample) as err:
            open_image(source, f"{kind}.png", 89_478_485)
        assert err.value.kind == kind and err.value.name == f"{kind}.png"


def test_bomb_limit_is_checked_from_the_header_before_decoding(tmp_path):
    path = tmp_path / "big.png"
    noise_image(300, 200).save(path)
    with pytest.raises(BadSample, match=r"300x200 pixels > max_image_pixels=50000") as err:
        open_image(path, "big.png", 50_000)
    assert err.value.kind == "bomb"
    assert open_image(path, "big.png", 60_000).size == (300, 200)


def test_raised_max_image_pixels_admits_images_past_pils_own_limit(tmp_path, monkeypatch):
    """PIL refuses anything over twice its own limit whatever our flag says; a raised --max_image_pixels must
    still admit it (PIL's limit lowered to 1000 here: it refuses this 2,500-pixel image on its own)."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    data = encoded(noise_image(50, 50))
    (tmp_path / "big.png").write_bytes(data)
    for source in (data, tmp_path / "big.png"):
        assert open_image(source, "big.png", max_pixels=5000).size == (50, 50)
        check_image(source, "big.png", 5000, channels=3)
        assert read_size(source, 5000) == (50, 50)
        with pytest.raises(BadSample, match="2500 pixels > max_image_pixels=1000") as err:
            open_image(source, "big.png", max_pixels=1000)
        assert err.value.kind == "bomb"
        with pytest.raises(BadSample, match=r"50x50 pixels > max_image_pixels=2400"):  # ours, past PIL's
            open_image(source, "big.png", max_pixels=2400)
    assert Image.MAX_IMAGE_PIXELS == 1000  # PIL's limit is back


def test_pils_limit_is_restored_after_concurrent_reads(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    big, small = encoded(noise_image(50, 50)), encoded(noise_image(20, 20))
    with ThreadPoolExecutor(8) as pool:
        sizes = list(pool.map(lambda d: open_image(d, "x.png", 5000).size, [big, small] * 32))
    assert sizes == [(50, 50), (20, 20)] * 32
    assert Image.MAX_IMAGE_PIXELS == 1000


def test_a_raised_max_image_pixels_reaches_the_data_set(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    captions = write_folder(tmp_path, n=2, size=50)  # 50x50 and 58x50
    ds = build_dataset(DataConfig(data_path=str(tmp_path), captions_file=str(captions), img_size=16,
                                  max_image_pixels=5000, aspect_buckets=True, bucket_step=8))
    assert [ds.buckets[b] for b in ds.bucket_of] == [(16, 16), (16, 16)]
    assert len([ds[i] for i in range(2)]) == 2 and ds.skips.total() == 0


def test_missing_file(tmp_path):
    with pytest.raises(BadSample) as err:
        open_image(tmp_path / "nope.png", "nope.png", 10**6)
    assert err.value.kind == "missing"


@pytest.mark.parametrize("kind, problem", [
    ("good", None),
    ("missing", "is not a file"),
    ("folder", "is not a file"),
    ("zero_byte", "is an empty file"),
    ("not_image", "is not an image"),
    ("truncated", "is a truncated image"),
    ("unreadable", "is an unreadable image (broken data stream when reading image file)"),
    ("bomb", "is too large (900000000 pixels > max_image_pixels=89478485)"),  # refused by PIL itself
    ("large", "is too large (40x32 pixels > max_image_pixels=1000)"),
])
def test_image_file_problem_names_the_file_and_the_kind(tmp_path, kind, problem):
    """One line for a flag's message (``--test_image_address``), decoding the file as training would."""
    path = tmp_path / f"{kind}.png"
    if kind in ("good", "large"):
        noise_image(40, 32).save(path)
    elif kind == "folder":
        path.mkdir()
    elif kind != "missing":
        path.write_bytes(bad_files()[kind])
    limit = 1000 if kind == "large" else 89_478_485
    assert image_file_problem(path, limit, 3) == (None if problem is None else f"{str(path)!r} {problem}")
    assert image_file_problem(str(path), limit, 1) == image_file_problem(path, limit, 4)


def test_image_file_problem_finds_a_cut_that_the_header_hides(tmp_path):
    """The last bytes of a JPEG missing: it opens, its header is fine, only a full decode finds it."""
    path = tmp_path / "photo.jpg"
    path.write_bytes(encoded(noise_image(64, 48), "JPEG")[:-200])
    with Image.open(path) as im:
        assert im.size == (64, 48)
    assert image_file_problem(path, 10**6, 3) == f"{str(path)!r} is a truncated image"


def test_jpeg_draft_decodes_smaller_but_not_below_target():
    data = encoded(noise_image(800, 600), "JPEG")
    im = open_image(data, "photo.jpg", 10**7, draft_size=128)
    assert min(im.size) >= 128 and im.size[0] <= 400  # 1/4 scale: 200 x 150


# ------------------------------------------------------------------------------------------------ transforms

def test_to_tensor_range_and_layout():
    im = Image.fromarray(np.array([[[0, 255, 128]]], dtype=np.uint8))
    t = to_tensor(im)
    assert t.shape == (3, 1, 1) and t.dtype == torch.float32
    assert t.flatten().tolist() == pytest.approx([-1.0, 1.0, 128 / 127.5 - 1], abs=1e-6)


def test_center_crop_keeps_the_middle_of_a_wide_image():
    # left third red, middle third green, right third blue: a centre crop of the short side is all green
    a = np.zeros((30, 90, 3), dtype=np.uint8)
    a[:, :30, 0], a[:, 30:60, 1], a[:, 60:, 2] = 255, 255, 255
    t = ImageTransform(16, 3)(Image.fromarray(a))
    assert t.shape == (3, 16, 16)
    assert t[1, :, 2:-2].min() > 0.9 and t[0, :, 2:-2].max() < -0.9 and t[2, :, 2:-2].max() < -0.9


def test_crop_box_math():
    assert crop_box((90, 30), (16, 16)) == (30.0, 0.0, 60.0, 30.0)
    rng = np.random.default_rng(0)
    boxes = {crop_box((90, 30), (16, 16), rng)[0] for _ in range(20)}
    assert len(boxes) > 10 and all(0 <= x <= 60 for x in boxes)


def test_random_crop_and_flip_follow_the_generator():
    im = noise_image(64, 32)
    tf = ImageTransform(16, 3, random_crop=True, random_flip=True)
    a = tf(im, np.random.default_rng([0, 0, 5]))
    b = tf(im, np.random.default_rng([0, 0, 5]))
    assert torch.equal(a, b)
    outs = {tf(im, np.random.default_rng([0, e, 5])).sum().item() for e in range(8)}
    assert len(outs) > 4  # different epochs: different crops/flips


def test_flip_mirrors_the_image():
    a = np.zeros((8, 8, 3), dtype=np.uint8)
    a[:, :4] = 255
    tf = ImageTransform(8, 3, random_flip=True)
    flipped = [t for t in (tf(Image.fromarray(a), np.random.default_rng(s)) for s in range(10)) if t[0, 0, 0] < 0]
    assert flipped and flipped[0][0, 0, -1] > 0.9


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_transform_output_shape_per_channel_count(channels):
    t = ImageTransform(24, channels)(noise_image(50, 30, mode="RGBA"))
    assert t.shape == (channels, 24, 24) and -1.0 <= t.min() and t.max() <= 1.0


def test_bucket_size_gives_non_square_output():
    t = ImageTransform(32, 3)(noise_image(80, 40), size=(48, 24))
    assert t.shape == (3, 24, 48)


def test_unknown_interpolation():
    with pytest.raises(ValueError, match="lanczos, bicubic, bilinear"):
        ImageTransform(32, interpolation="nearest")


def test_webp_canvas_reads_the_size_from_the_header_of_every_webp_kind():
    """The bomb check's fallback for WebPs that Pillow 12 will not open: size from 30 header bytes."""
    import io

    from PIL import Image

    from data_helpers import webp_header_only
    from fluxflow.training.data.images import webp_canvas

    assert webp_canvas(webp_header_only(16_383, 9_000)) == (16_383, 9_000)  # extended (VP8X)
    for options in ({}, {"lossless": True}):  # lossy VP8, lossless VP8L
        data = io.BytesIO()
        Image.new("RGB", (37, 21), (10, 200, 30)).save(data, "WEBP", **options)
        assert webp_canvas(data.getvalue()) == (37, 21)
    png = io.BytesIO()
    Image.new("RGB", (5, 5)).save(png, "PNG")
    assert webp_canvas(png.getvalue()) is None
