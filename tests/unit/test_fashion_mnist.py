"""fluxflow.datasets.fashion_mnist on IDX files the tests write (the real set is not needed): the reader, the
captions, the exported folder as the training CLI reads it, and the error when the files are missing."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import yaml
from PIL import Image

from fluxflow.datasets import fashion_mnist as fm


def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    """An IDX file: magic ``0 0 code ndim``, big-endian uint32 sizes, big-endian data."""
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_split(folder, split: str, images: np.ndarray, labels: np.ndarray, compress: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for stem, array in zip(fm.FILES[split], (images, labels)):
        data = idx_bytes(array)
        (folder / (stem + ".gz" if compress else stem)).write_bytes(gzip.compress(data) if compress else data)


def fake_set(n: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), (np.arange(n) % 10).astype(np.uint8)


@pytest.mark.parametrize("compress", [True, False])
def test_read_idx_reads_images_and_labels(tmp_path, compress):
    images, labels = fake_set(5)
    write_split(tmp_path, "train", images, labels, compress)
    suffix = ".gz" if compress else ""
    got = fm.read_idx(tmp_path / f"train-images-idx3-ubyte{suffix}")
    assert got.shape == (5, 28, 28) and got.dtype == np.uint8 and np.array_equal(got, images)
    assert np.array_equal(fm.read_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}"), labels)


def test_read_idx_is_big_endian_for_wide_types(tmp_path):
    values = np.array([[1, -2, 70000], [3, 256, -70000]], dtype=np.int32)
    (tmp_path / "x.idx").write_bytes(idx_bytes(values, code=0x0C))
    got = fm.read_idx(tmp_path / "x.idx")
    assert got.shape == (2, 3) and np.array_equal(got, values)


def test_read_idx_rejects_bad_files(tmp_path):
    (tmp_path / "text").write_bytes(b"file_name\tcaption\n")
    with pytest.raises(ValueError, match="not an IDX file"):
        fm.read_idx(tmp_path / "text")
    short = idx_bytes(np.zeros((3, 4), np.uint8))[:-1]
    (tmp_path / "short").write_bytes(short)
    with pytest.raises(ValueError, match=r"header says \(3, 4\)"):
        fm.read_idx(tmp_path / "short")


def test_load_split_from_a_folder_or_the_environment(tmp_path, monkeypatch):
    images, labels = fake_set(7)
    write_split(tmp_path, "test", images, labels)
    got_images, got_labels = fm.load_split("test", tmp_path)
    assert np.array_equal(got_images, images) and np.array_equal(got_labels, labels)
    monkeypatch.setenv(fm.ENV_VAR, str(tmp_path))
    assert np.array_equal(fm.load_split("test")[1], labels)
    with pytest.raises(ValueError, match="unknown split 'val'"):
        fm.load_split("val", tmp_path)


def test_missing_files_name_the_debian_package_and_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv(fm.ENV_VAR, raising=False)
    with pytest.raises(fm.FashionMNISTMissingError) as err:
        fm.load_split("train", tmp_path / "nowhere")
    message = str(err.value)
    assert "apt-get install dataset-fashion-mnist" in message and fm.ENV_VAR in message
    assert "train-images-idx3-ubyte.gz" in message and str(tmp_path / "nowhere") in message
    assert isinstance(err.value, FileNotFoundError)


def test_images_and_labels_that_disagree_are_refused(tmp_path):
    images, labels = fake_set(4)
    write_split(tmp_path, "train", images, labels[:3])
    with pytest.raises(ValueError, match="do not match"):
        fm.load_split("train", tmp_path)


def test_class_names_and_captions():
    assert fm.CLASS_NAMES == ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                              "Bag", "Ankle boot")
    assert fm.class_prompt(7) == "a photo of a sneaker"
    assert fm.caption(9, 1) == "an ankle boot"
    assert fm.caption(7, 2) == "a picture of a sneaker, product photo"
    for label, name in enumerate(fm.CLASS_NAMES):
        phrasings = {fm.caption(label, k) for k in range(len(fm.TEMPLATES))}
        assert len(phrasings) == len(fm.TEMPLATES) >= 3
        assert all(name.lower() in text for text in phrasings)
    assert fm.caption(3, len(fm.TEMPLATES)) == fm.caption(3, 0)  # the phrasings cycle


def test_pad32_keeps_the_photo_and_adds_a_black_border():
    images = fake_set(3)[0]
    padded = fm.pad32(images)
    assert padded.shape == (3, 32, 32) and padded.dtype == np.uint8
    assert np.array_equal(padded[:, 2:30, 2:30], images)
    border = np.ones((32, 32), bool)
    border[2:30, 2:30] = False
    assert not padded[:, border].any()


def test_exported_folder_is_read_by_the_training_data_loader(tmp_path):
    from fluxflow.training.data import DataConfig, build_dataset

    images, labels = fake_set(12)
    out = fm.export_folder(tmp_path / "train", images, labels)
    lines = (out / "captions.txt").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 12 and lines[0] == "00000.png\ta photo of a t-shirt/top"
    assert [line.split("\t")[1] for line in lines] == [fm.caption(int(y), i) for i, y in enumerate(labels)]
    png = Image.open(out / "00003.png")
    assert png.mode == "L" and png.size == (32, 32)
    assert np.array_equal(np.asarray(png), fm.pad32(images[3:4])[0])
    dataset = build_dataset(DataConfig(data_path=str(out), captions_file=str(out / "captions.txt"), img_size=32,
                                       channels=1))
    assert len(dataset) == 12
    pixels, caption = dataset[3]
    assert tuple(pixels.shape) == (1, 32, 32) and caption == fm.caption(int(labels[3]), 3)
    expected = fm.pad32(images[3:4])[0].astype(np.float32) / 127.5 - 1
    assert np.allclose(pixels[0].numpy(), expected, atol=1e-6)


@pytest.mark.parametrize("stage", [0, 1])
def test_the_benchmark_recipe_stages_are_valid_training_configs(tmp_path, stage):
    """benchmarks/fashion.py turns each stage of benchmarks/fashion.yaml into a single-run config file: the
    training CLI must accept it as it is (a renamed flag would otherwise surface only in the long run)."""
    from benchmark_scripts import load_benchmark

    from fluxflow.training.arguments import load_config

    fashion = load_benchmark("fashion")
    data = fm.export_folder(tmp_path / "train", *fake_set(4))
    config = fashion.stage_config(stage, 7, tmp_path / "stage.yaml")
    flags = ["--config", str(config), "--data_path", str(data), "--captions_file", str(data / "captions.txt"),
             "--output_path", str(tmp_path / "run")]
    if stage == 1:  # the flow stage starts from the VAE stage's weights
        from fluxflow.models import FluxFlowVAE

        FluxFlowVAE(in_channels=1, out_channels=1, block_out_channels=(8, 8, 8), layers_per_block=1,
                    spade_hidden_channels=8).save_pretrained(tmp_path / "vae")
        flags += ["--model_checkpoint", str(tmp_path / "vae")]
    cfg, _ = load_config(flags)
    assert cfg.max_train_steps == 7 and cfg.channels == 1 and cfg.img_size == 32
    assert (cfg.train_vae, cfg.train_diff_full) == ((True, False) if stage == 0 else (False, True))
    # the recipe's stage lengths (when run as a pipeline file) are the benchmark's full-run defaults
    length = yaml.safe_load(fashion.RECIPE.read_text())["stages"][stage]["transition"]["steps"]
    assert length == (fashion.FULL["vae_steps"] if stage == 0 else fashion.FULL["flow_steps"][-1])
