"""Each source behind ``build_dataset``: captions file, imagefolder (jsonl/csv), Hub-layout parquet, streaming."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from data_helpers import noise_image, write_folder, write_imagefolder, write_parquet_repo

from fluxflow.training.data import (
    DataConfig,
    DataError,
    ImageCaptionDataset,
    StreamingImageCaptionDataset,
    build_dataset,
    read_captions_file,
)
from fluxflow.training.errors import ConfigError


def items(ds, n=None):
    if isinstance(ds, torch.utils.data.IterableDataset):
        out = list(ds)
    else:
        out = [ds[i] for i in range(len(ds))]
    return out[:n] if n else out


# --------------------------------------------------------------------------------------- captions file

def test_captions_file_format(tmp_path):
    f = tmp_path / "c.txt"
    f.write_bytes("\ufeff# a comment\r\n\r\na.png\tred\tand blue\r\n  \nsub/b.png\t  spaced  \nc.png\n".encode())
    lines = read_captions_file(f)
    assert [(cl.line, cl.file_name, cl.caption) for cl in lines] == [
        (3, "a.png", "red\tand blue"),  # split at the first tab only: the caption keeps its own tabs
        (5, "sub/b.png", "spaced"),
        (6, "c.png", ""),
    ]


def test_captions_file_without_any_tab_is_a_format_error(tmp_path):
    f = tmp_path / "c.csv"
    f.write_text("a.png,a caption\nb.png,another\n")
    with pytest.raises(ConfigError, match=r"no line has a TAB.*file_name<TAB>caption"):
        read_captions_file(f)


def test_captions_file_not_utf8(tmp_path):
    f = tmp_path / "c.txt"
    f.write_bytes(b"a.png\tcaf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        read_captions_file(f)


@pytest.mark.parametrize("encoding, said", [
    ("utf-16", "UTF-16 (little-endian, with a byte-order mark)"),  # what Windows Notepad writes as "Unicode"
    ("utf-16-le", "UTF-16 (little-endian, without a byte-order mark)"),
    ("utf-16-be", "UTF-16 (big-endian, without a byte-order mark)"),
    ("utf-32", "UTF-32 (little-endian, with a byte-order mark)"),
])
def test_captions_file_in_utf16_is_one_clear_error_up_front(tmp_path, encoding, said):
    """Not "none of 2 images exists" (its NUL bytes decode as UTF-8) nor one bad sample per line: one error
    naming the file, its encoding and how to convert it, from validate() before any model is built."""
    write_folder(tmp_path, n=2, size=24)
    f = tmp_path / "c.txt"
    f.write_text("img0.png\tcaption 0\nimg1.png\tcaption 1\n", encoding=encoding)
    cfg = DataConfig(data_path=str(tmp_path), captions_file=str(f), img_size=16)
    want = (f"--captions_file '{f}' is not UTF-8: it is {said}; convert it, e.g. "
            f"iconv -f {said.split()[0]} -t UTF-8 '{f}' > captions-utf8.txt")
    with pytest.raises(ConfigError) as err:
        cfg.validate()
    assert err.value.problems == [want]
    with pytest.raises(ConfigError) as err:
        build_dataset(cfg)
    assert str(err.value) == want


def test_a_nul_byte_in_one_utf8_line_is_not_taken_for_utf16(tmp_path):
    f = tmp_path / "c.txt"
    f.write_bytes(b"nul\0byte.png\ta NUL in the name\r\nimg0.png\tcaption 0\r\n")
    DataConfig(data_path=str(tmp_path), captions_file=str(f)).validate()
    assert [cl.file_name for cl in read_captions_file(f)] == ["nul\0byte.png", "img0.png"]


def test_seed_help_says_what_happens_without_a_seed():
    """The trainer draws a random seed when none is given; the help must not promise 0."""
    help_text = {f.name: f.metadata["help"] for f in dataclasses.fields(DataConfig)}["seed"]
    assert "None: 0" not in help_text
    assert "random seed is drawn, logged and saved in logs/train_config.json" in help_text


def test_folder_source_yields_tensors_and_captions(tmp_path):
    captions = write_folder(tmp_path / "imgs", n=4, extra_lines=("img1.png\tsecond\tcaption of img1",))
    ds = build_dataset(DataConfig(data_path=str(tmp_path / "imgs"), captions_file=str(captions), img_size=16))
    assert isinstance(ds, ImageCaptionDataset) and len(ds) == 5
    got = items(ds)
    assert [c for _, c in got] == ["caption 0", "caption 1", "caption 2", "caption 3", "second\tcaption of img1"]
    assert all(x.shape == (3, 16, 16) and x.dtype == torch.float32 for x, _ in got)
    assert torch.equal(got[1][0], got[4][0])  # same file, same centre crop
    assert ds.skips.total() == 0


def test_captions_file_naming_no_existing_image_fails_up_front(tmp_path):
    (tmp_path / "imgs").mkdir()
    f = tmp_path / "c.txt"
    f.write_text("x.png\ta\ny.png\tb\n")
    with pytest.raises(DataError, match=r"names 2 images but none exists under --data_path .*'x.png', line 1"):
        build_dataset(DataConfig(data_path=str(tmp_path / "imgs"), captions_file=str(f), img_size=16))


def test_max_train_samples_is_a_seeded_subset(tmp_path):
    captions = write_folder(tmp_path, n=8)
    cfg = {"data_path": str(tmp_path), "captions_file": str(captions), "img_size": 8, "max_train_samples": 3}
    a = [c for _, c in items(build_dataset(DataConfig(**cfg, seed=1)))]
    b = [c for _, c in items(build_dataset(DataConfig(**cfg, seed=1)))]
    others = {tuple(c for _, c in items(build_dataset(DataConfig(**cfg, seed=s)))) for s in range(2, 8)}
    assert len(a) == 3 and a == b and len(others | {tuple(a)}) > 1


# ----------------------------------------------------------------------------------------- imagefolder

@pytest.mark.parametrize("metadata", ["jsonl", "csv"])
def test_local_imagefolder_via_data_path(tmp_path, metadata):
    write_imagefolder(tmp_path, n=4, metadata=metadata)
    ds = build_dataset(DataConfig(data_path=str(tmp_path), img_size=16, channels=1))
    assert len(ds) == 4
    x, caption = ds[2]
    assert x.shape == (1, 16, 16) and caption == "folder caption 2"


def test_local_imagefolder_via_dataset_name(tmp_path):
    write_imagefolder(tmp_path, n=3)
    by_dir = build_dataset(DataConfig(dataset_name=str(tmp_path), img_size=16))
    by_builder = build_dataset(DataConfig(dataset_name="imagefolder", data_path=str(tmp_path), img_size=16))
    assert [c for _, c in items(by_dir)] == [c for _, c in items(by_builder)] == [f"folder caption {i}" for i in range(3)]


# ------------------------------------------------------------------------------------ Hub-layout parquet

def test_local_hub_layout_parquet_repo(tmp_path):
    repo = write_parquet_repo(tmp_path / "repo", n_train=5, n_test=2)
    train = build_dataset(DataConfig(dataset_name=str(repo), img_size=16))
    test = build_dataset(DataConfig(dataset_name=str(repo), dataset_split="test", img_size=16, channels=4))
    assert len(train) == 5 and len(test) == 2
    assert [c for _, c in items(test)] == ["test caption 0", "test caption 1"]
    assert test[0][0].shape == (4, 16, 16) and test[0][0][3].min() == 1.0  # opaque alpha added


def test_parquet_pixels_match_the_folder_path(tmp_path):
    """The same PNG through both sources gives the same tensor (one decode and transform path)."""
    from data_helpers import encoded

    im = noise_image(48, 40, seed=7)
    repo = write_parquet_repo(tmp_path / "repo", n_train=1, n_test=1, images=[encoded(im)], captions=["x"])
    im.save(tmp_path / "a.png")
    (tmp_path / "c.txt").write_text("a.png\tx\n")
    a = build_dataset(DataConfig(dataset_name=str(repo), img_size=24))[0][0]
    b = build_dataset(DataConfig(data_path=str(tmp_path), captions_file=str(tmp_path / "c.txt"), img_size=24))[0][0]
    assert torch.equal(a, b)


def test_unknown_split_and_columns_are_named(tmp_path):
    repo = write_parquet_repo(tmp_path / "repo", n_train=2, n_test=1)
    with pytest.raises(DataError, match="--dataset_split 'validation'"):
        build_dataset(DataConfig(dataset_name=str(repo), dataset_split="validation", img_size=16))
    with pytest.raises(DataError, match=r"--caption_column 'prompt' is not a column .*columns: image, text"):
        build_dataset(DataConfig(dataset_name=str(repo), caption_column="prompt", img_size=16))
    with pytest.raises(DataError, match="--image_column 'img'"):
        build_dataset(DataConfig(dataset_name=str(repo), image_column="img", img_size=16))


def test_missing_local_dataset_is_named(tmp_path):
    with pytest.raises(DataError, match=r"--dataset_name .*nothing-here.* could not be loaded"):
        build_dataset(DataConfig(dataset_name=str(tmp_path / "nothing-here"), img_size=16))


# -------------------------------------------------------------------------------------------- streaming

@pytest.fixture
def no_shutdown_sleep(monkeypatch):
    """datasets 5.2 sleeps 5 s after every pass over a shuffled parquet stream (an Arrow thread workaround)."""
    import datasets

    monkeypatch.setattr(datasets.config, "SLEEP_TIME_ON_THREADS_SHUTDOWN", 0)


def test_streaming_reads_the_same_samples_as_map_style(tmp_path):
    repo = write_parquet_repo(tmp_path / "repo", n_train=6, n_test=1)
    stream = build_dataset(DataConfig(dataset_name=str(repo), img_size=16, streaming=True, shuffle_buffer_size=0))
    assert isinstance(stream, StreamingImageCaptionDataset)
    mapped = build_dataset(DataConfig(dataset_name=str(repo), img_size=16))
    s, m = items(stream), items(mapped)
    assert [c for _, c in s] == [c for _, c in m]
    assert all(torch.equal(a, b) for (a, _), (b, _) in zip(s, m))


def test_streaming_shuffle_take_and_process_shards(tmp_path, no_shutdown_sleep):
    repo = write_parquet_repo(tmp_path / "repo", n_train=8, n_test=1)
    cfg = {"dataset_name": str(repo), "img_size": 8, "streaming": True}
    shuffled = [c for _, c in items(build_dataset(DataConfig(**cfg, shuffle_buffer_size=8, seed=3)))]
    assert sorted(shuffled) == sorted(f"train caption {i}" for i in range(8)) and shuffled != sorted(shuffled)
    assert len(items(build_dataset(DataConfig(**cfg, max_train_samples=3)))) == 3
    shards = [{c for _, c in items(build_dataset(DataConfig(**cfg, shuffle_buffer_size=0), process_index=r,
                                                   num_processes=2))} for r in (0, 1)]
    assert shards[0].isdisjoint(shards[1]) and len(shards[0] | shards[1]) == 8  # each process: its own half


def test_streaming_set_epoch_reshuffles(tmp_path, no_shutdown_sleep):
    repo = write_parquet_repo(tmp_path / "repo", n_train=8, n_test=1)
    ds = build_dataset(DataConfig(dataset_name=str(repo), img_size=8, streaming=True, shuffle_buffer_size=8))
    first = [c for _, c in items(ds)]
    ds.set_epoch(1)
    assert [c for _, c in items(ds)] != first
    ds.set_epoch(0)
    assert [c for _, c in items(ds)] == first


# ---------------------------------------------------------------------------------------- config checks

@pytest.mark.parametrize("kwargs, message", [
    ({}, "no training data"),
    ({"data_path": "{d}", "captions_file": "{d}/c.txt", "dataset_name": "x/y"}, "either --dataset_name or --captions_file"),
    ({"captions_file": "{d}/c.txt"}, "--captions_file needs --data_path"),
    ({"data_path": "{d}/nope", "captions_file": "{d}/c.txt"}, "--data_path '.*nope' is not a folder"),
    ({"data_path": "{d}", "captions_file": "{d}/nope.txt"}, "--captions_file '.*nope.txt' is not a file"),
    ({"data_path": "{d}"}, "has no metadata.jsonl / metadata.csv / metadata.parquet: give --captions_file"),
    ({"data_path": "{d}", "captions_file": "{d}/c.txt", "streaming": True}, "--streaming needs --dataset_name"),
    ({"dataset_name": "imagefolder"}, "--dataset_name imagefolder needs --data_path"),
    ({"dataset_name": "x/y", "data_path": "{d}"}, "--data_path is only used with --dataset_name set to a folder"),
    ({"dataset_name": "x/y", "channels": 2}, "--channels must be one of 1, 3, 4, got 2"),
    ({"dataset_name": "x/y", "resize_interpolation": "nearest"}, "--resize_interpolation must be one of lanczos"),
    ({"dataset_name": "x/y", "img_size": 4}, "--img_size must be an integer >= 8"),
    ({"dataset_name": "x/y", "max_train_samples": 0}, "--max_train_samples must be >= 1"),
    ({"dataset_name": "x/y", "streaming": True, "aspect_buckets": True}, "--aspect_buckets needs a map-style"),
])
def test_config_errors_name_the_flag(tmp_path, kwargs, message):
    (tmp_path / "c.txt").write_text("a.png\tx\n")
    cfg = DataConfig(**{k: v.format(d=tmp_path) if isinstance(v, str) else v for k, v in kwargs.items()})
    with pytest.raises(ConfigError, match=message):
        cfg.validate()


def test_config_reports_every_problem_at_once():
    with pytest.raises(ConfigError) as err:
        DataConfig(dataset_name="x/y", channels=5, img_size=2, bucket_step=12).validate()
    assert len(err.value.problems) == 3

