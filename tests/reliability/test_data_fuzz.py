"""Data fuzz: dozens of bad files and caption lines, in a folder and in a parquet data set, among good images.

Every item either loads right (unusual modes come out RGB, ``[3, H, W]``, finite, in [-1, 1], with the
right colours) or is skipped and counted under its kind; a DataLoader with 0 and 2 workers yields exactly
the good samples, and the final tally has one count per bad item. ``--strict_data`` turns them into one
error, and ``fluxflow-train`` trains through them (or, strict, stops with exit code 2).
"""

from __future__ import annotations

import logging
import os
import re
import resource
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
from data_helpers import bad_image_files, encoded, noise_image, odd_images, write_parquet_cells
from PIL import Image

from fluxflow.training.data import DataConfig, DataError, build_dataset, make_dataloader

IMG = 16
GOOD = 8
TOLERANCE = 12 / 127.5  # JPEG and resampling error, in model units
LONG_CAPTION = "a very long caption " * 5000  # 100,000 characters: kept whole, truncated by the tokenizer
SEPARATORS = "a caption\u2028with a line separator\x0ca form feed\x85and a next-line"
UP_FRONT = ("missing", "empty_caption", "zero_byte")


class Fuzz:
    """A data set on disk and what it must give: ``good`` caption -> colour checks, ``bad`` kinds counted."""

    def __init__(self) -> None:
        self.good: dict[str, list] = {}
        self.bad: Counter = Counter()
        self.n_named = 0
        self.first_bad: str | None = None

    def add_good(self, caption: str, checks: list | tuple = ()) -> None:
        assert caption not in self.good, caption
        self.good[caption], self.n_named = list(checks), self.n_named + 1

    def add_bad(self, kind: str, name: str) -> None:
        self.bad[kind] += 1
        self.n_named += 1
        self.first_bad = self.first_bad or name


def write_fuzz_folder(root: Path) -> tuple[Path, Fuzz]:
    """Good noise PNGs, odd but valid images, bad images, bad paths and bad caption lines, one captions file.

    The file is CRLF with a byte-order mark and holds blank, whitespace-only and comment lines (ignored);
    the first bad line is an up-front problem so that strict mode names it first.
    """
    root.mkdir(parents=True)
    fz, lines = Fuzz(), []

    def line(text: str | bytes) -> None:
        lines.append(text.encode() if isinstance(text, str) else text)

    # bad caption lines and bad paths (found up front)
    (root.parent / "outside.png").write_bytes(encoded(noise_image(24, 24, seed=50)))
    bad_lines = [
        ("missing", "does_not_exist.png\tnothing here"),
        ("empty_caption", "img0.png"),  # no TAB at all
        ("missing", "img1.png a caption after a space instead of a TAB"),
        ("empty_caption", "img2.png\t"),
        ("empty_caption", "img3.png\t \t  "),
        ("unreadable", b"img4.png\tcaf\xe9 au lait, in latin-1"),  # one line that is not UTF-8
        ("missing", "x" * 100_000),  # a long caption line without its TAB: a name too long for the OS
        ("missing", "../outside.png\tescapes the folder"),
        ("missing", f"{root.parent / 'outside.png'}\tan absolute path outside the folder"),
        ("missing", "\ta caption without a file name"),
        ("missing", "nul\0byte.png\ta NUL in the name"),
        ("missing", "folder.png\ta directory named like an image"),
        ("missing", "dangling.png\ta symlink to nothing"),
        ("missing", "loop.png\ta symlink to itself"),
    ]
    (root / "folder.png").mkdir()
    (root / "dangling.png").symlink_to(root / "nowhere.png")
    (root / "loop.png").symlink_to(root / "loop.png")
    for kind, text in bad_lines:
        line(text)
        name = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        fz.add_bad(kind, name.split("\t")[0])

    # good samples, with blank, whitespace-only and comment lines between them
    for i in range(GOOD):
        noise_image(24 + 8 * i, 24, seed=i).save(root / f"img{i}.png")
        line(f"img{i}.png\tcaption {i}")
        fz.add_good(f"caption {i}")
        line(["", "   ", "# a comment line", "\t "][i % 4])
    (root / "sub" / "dir").mkdir(parents=True)
    noise_image(24, 24, seed=60).save(root / "sub" / "dir" / "nested.png")
    for name, caption in (("sub/dir/nested.png", "a nested file"), ("img5.png", LONG_CAPTION.strip()),
                          ("img6.png", SEPARATORS), ("img7.png", "a caption\twith\ttabs")):
        line(f"{name}\t{caption}")
        fz.add_good(caption)

    # unusual but valid images: loaded, converted right
    for name, (data, checks) in odd_images().items():
        (root / name).write_bytes(data)
        line(f"{name}\todd {name}")
        fz.add_good(f"odd {name}", checks)

    # bad image files (zero-byte ones are found up front, the rest when decoded)
    for name, (data, kind) in bad_image_files().items():
        (root / name).write_bytes(data)
        line(f"{name}\tbad {name}")
        fz.add_bad(kind, name)
    if os.geteuid() != 0:  # root reads every file whatever its permissions
        (root / "no_permission.png").write_bytes(encoded(noise_image(24, 24)))
        (root / "no_permission.png").chmod(0)
        line("no_permission.png\ta file nobody may read")
        fz.add_bad("unreadable", "no_permission.png")

    captions = root / "captions.txt"
    captions.write_bytes(b"\xef\xbb\xbf" + b"".join(raw + b"\r\n" for raw in lines))
    return captions, fz


def write_fuzz_parquet(root: Path) -> tuple[Path, Fuzz]:
    """The same image kinds as cells of a Hub-layout parquet data set, plus bad caption and image cells."""
    fz, cells, captions = Fuzz(), [], []

    def row(cell, caption, kind: str | None = None, checks=()) -> None:
        cells.append(cell)
        captions.append(caption)
        if kind:
            fz.add_bad(kind, f"row {len(cells) - 1}")
        else:
            fz.add_good(caption, checks)

    for i in range(GOOD):
        row(encoded(noise_image(24 + 8 * i, 24, seed=i)), f"caption {i}")
    good = encoded(noise_image(24, 24, seed=70))
    for caption in ("", "   \t ", None):
        row(good, caption, "empty_caption")
    row(None, "a row without an image", "missing")
    row({"bytes": None, "path": "never_embedded.png"}, "an image that was not embedded", "missing")
    row(good, LONG_CAPTION.strip())
    row(good, SEPARATORS)
    for name, (data, checks) in odd_images().items():
        row(data, f"odd {name}", checks=checks)
    for name, (data, kind) in bad_image_files().items():
        row(data, f"bad {name}", kind)
    return write_parquet_cells(root, cells, captions), fz


@pytest.fixture(scope="module")
def fuzz_folder(tmp_path_factory):
    return write_fuzz_folder(tmp_path_factory.mktemp("fuzz") / "data")


@pytest.fixture(scope="module")
def fuzz_parquet(tmp_path_factory):
    return write_fuzz_parquet(tmp_path_factory.mktemp("fuzz") / "repo")


def config(source: str, fuzz_folder, fuzz_parquet, **kw) -> tuple[DataConfig, Fuzz]:
    if source == "folder":
        captions, fz = fuzz_folder
        return DataConfig(data_path=str(captions.parent), captions_file=str(captions), img_size=IMG, **kw), fz
    repo, fz = fuzz_parquet
    return DataConfig(dataset_name=str(repo), img_size=IMG, **kw), fz


def test_the_fuzz_sets_are_big_enough(fuzz_folder, fuzz_parquet):
    assert sum(fuzz_folder[1].bad.values()) >= 30 and len(fuzz_folder[1].bad) >= 5
    assert sum(fuzz_parquet[1].bad.values()) >= 30 and len(fuzz_parquet[1].bad) >= 5


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("source", ["folder", "parquet"])
def test_loader_yields_exactly_the_good_samples_and_counts_every_bad_one(source, workers, fuzz_folder,
                                                                         fuzz_parquet):
    cfg, fz = config(source, fuzz_folder, fuzz_parquet)
    ds = build_dataset(cfg)
    assert ds.records.n_named == fz.n_named
    loader = make_dataloader(ds, batch_size=7, workers=workers, seed=1, collate_fn=list)
    samples = [s for batch in loader for s in batch]

    assert len(samples) == len(ds)  # a bad record is answered by a good neighbour: batches stay full
    assert {c for _, c in samples} == set(fz.good)  # every good sample, nothing else
    for x, caption in samples:
        assert x.shape == (3, IMG, IMG) and x.dtype == torch.float32, caption[:40]
        assert torch.isfinite(x).all() and x.min() >= -1 and x.max() <= 1, caption[:40]
        for (y, xx), rgb in fz.good[caption]:
            want = torch.tensor(rgb, dtype=torch.float32) / 127.5 - 1
            assert torch.allclose(x[:, y, xx], want, atol=TOLERANCE), (caption, (y, xx), x[:, y, xx], rgb)
    assert ds.skips.counts() == dict(fz.bad)
    total = sum(fz.bad.values())
    summary = ds.skips.summary()  # out of every sample named, bad ones included, not len(ds)
    assert summary.startswith(f"skipped {total} of {fz.n_named} samples named: ")
    for kind, n in fz.bad.items():  # each kind named, the files that only decoding finds included
        names = ds.skips.first_names()[kind]
        assert len(names) == min(n, 3) and f"; {kind}: {names[0]}" in summary
        assert (f" and {n - 3} more" in summary) == (n > 3)
    if source == "folder":  # captions are read whole: tabs, U+2028 and the 100k characters included
        assert {LONG_CAPTION.strip(), SEPARATORS, "a caption\twith\ttabs"} <= {c for _, c in samples}


@pytest.mark.parametrize("source", ["folder", "parquet"])
def test_bombs_are_skipped_from_the_header_without_decoding(source, fuzz_folder, fuzz_parquet):
    cfg, _ = config(source, fuzz_folder, fuzz_parquet)
    ds = build_dataset(cfg)
    bombs = [i for i in range(len(ds)) if "bad bomb" in str(ds.records.raw(i)[1])]
    assert len(bombs) == 5
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    start = time.perf_counter()
    for i in bombs:
        _, caption = ds[i]  # answered by a neighbour
        assert not caption.startswith("bad bomb")
    assert time.perf_counter() - start < 2.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 100 * 1024  # 1e10 pixels would be 10 GB
    assert ds.skips.counts()["bomb"] == 5
    assert Image.MAX_IMAGE_PIXELS == DataConfig().max_image_pixels  # PIL's global limit is left alone


@pytest.mark.parametrize("source", ["folder", "parquet"])
def test_strict_mode_reports_every_bad_item_in_one_pass(source, fuzz_folder, fuzz_parquet):
    """The up-front problems and every image that fails to decode, counted per kind, in one error."""
    cfg, fz = config(source, fuzz_folder, fuzz_parquet, strict_data=True)
    with pytest.raises(DataError) as err:
        build_dataset(cfg)
    found = re.match(r"--strict_data: (\d+) of (\d+) samples are bad \((.*)\):\n", str(err.value))
    assert found and found.group(1) == str(sum(fz.bad.values())) and found.group(2) == str(fz.n_named)
    counts = {k: int(n) for n, k in (part.split(" ") for part in found.group(3).split(", "))}
    assert counts == dict(fz.bad) and Counter(p.kind for p in err.value.problems) == fz.bad


def test_strict_mode_lists_the_up_front_problems_first(fuzz_folder):
    cfg, fz = config("folder", fuzz_folder, None, strict_data=True)
    with pytest.raises(DataError) as err:
        build_dataset(cfg)
    text = str(err.value)
    found = re.match(r"--strict_data: (\d+) of (\d+) samples are bad \(.*\):\n  - (.*)\n", text)
    assert found and found.group(2) == str(fz.n_named) and found.group(1) == str(sum(fz.bad.values()))
    up_front = sum(n for k, n in fz.bad.items() if k in UP_FRONT) + 1  # + the line that is not UTF-8
    first = err.value.problems[:up_front]  # found without decoding, so listed before the decoded ones
    assert all(p.kind in UP_FRONT or p.detail.startswith("not UTF-8") for p in first)
    assert found.group(3) == f"{fz.first_bad} (line 1): missing (not found under {cfg.data_path})"
    assert "  - img4.png (line 6): unreadable (not UTF-8 (invalid continuation byte at byte 12))\n" in text
    assert len(text) < 5000  # the 100,000-character line is shortened in messages


def test_strict_mode_decodes_every_image_and_names_each_bad_one(tmp_path, fuzz_folder):
    """Only the problems found by decoding: each bad image file is listed with its kind."""
    captions, _ = fuzz_folder
    root = captions.parent
    files = {n: k for n, (_, k) in bad_image_files().items() if k not in UP_FRONT}
    text = "".join(f"img{i}.png\tcaption {i}\n" for i in range(3)) + "".join(f"{n}\tbad {n}\n" for n in files)
    (tmp_path / "c.txt").write_text(text)
    with pytest.raises(DataError) as err:
        build_dataset(DataConfig(data_path=str(root), captions_file=str(tmp_path / "c.txt"), img_size=IMG,
                                 strict_data=True))
    message = str(err.value)
    assert message.startswith(f"--strict_data: {len(files)} of {len(files) + 3} samples are bad (")
    listed = re.findall(r"  - (\S+) \(line \d+\): (\w+)", message)
    assert len(listed) == 10 and all(files[name] == kind for name, kind in listed)
    assert f"... and {len(files) - 10} more" in message


# ---------------------------------------------------------------------------------------- end to end

def shapes_with_every_bad_kind(root: Path) -> tuple[Path, str]:
    """8 good 32-px shapes and one bad file or line of each kind; returns the captions file and first bad."""
    from fluxflow.datasets.shapes import write_shapes_dataset

    data = write_shapes_dataset(root, 8, size=32, seed=0) / "train"
    bad = bad_image_files()
    picks = ["cut_png_half.png", "cut_jpg_at20.jpg", "cut_webp_end1.webp", "zero.png", "bomb_100k.png",
             "text.png", "archive.png", "corrupt.png"]
    for name in picks:
        (data / name).write_bytes(bad[name][0])
    (data / "folder.png").mkdir()
    (data / "dangling.png").symlink_to(data / "nowhere.png")
    lines = [b"does_not_exist.png\ton no disk", b"00000.png", b"00001.png\t  ", b"00002.png\tcaf\xe9",
             b"../outside.png\tescapes", b"folder.png\ta directory", b"dangling.png\ta dangling link",
             b"y" * 100_000]
    lines += [f"{name}\tbad {name}".encode() for name in picks]
    good = (data / "captions.txt").read_bytes()
    (data / "fuzz.txt").write_bytes(good.replace(b"\n", b"\r\n") + b"\r\n".join(lines) + b"\r\n")
    return data / "fuzz.txt", "does_not_exist.png"


def test_train_cli_trains_through_every_bad_kind_and_strict_mode_stops(tmp_path, caplog, capsys):
    from fluxflow.cli.train import main

    captions, first_bad = shapes_with_every_bad_kind(tmp_path / "shapes")
    argv = ["--data_path", str(captions.parent), "--captions_file", str(captions), "--train_vae",
            "--model_preset", "tiny", "--img_size", "32", "--batch_size", "2", "--workers", "0",
            "--max_train_steps", "2", "--no_samples", "--seed", "0"]
    with caplog.at_level(logging.WARNING):
        assert main([*argv, "--output_path", str(tmp_path / "out")]) == 0
    summaries = [r.getMessage() for r in caplog.records
                 if r.levelno == logging.WARNING and r.getMessage().startswith("data: skipped")]
    assert summaries and summaries[0].startswith(
        "data: skipped 9 of 24 samples named: 5 missing, 2 empty_caption, 1 zero_byte, 1 unreadable; ")
    assert f"; missing: {first_bad} (line 9), " in summaries[0]
    # the trainer's final tally: out of the 24 lines named, not the 15 usable ones (trainer: skips.summary())
    assert len(summaries) == 2 and " of 24 samples named: " in summaries[-1]
    assert (tmp_path / "out" / "checkpoint.safetensors").exists()

    assert main([*argv, "--output_path", str(tmp_path / "strict"), "--strict_data"]) == 2
    err = capsys.readouterr().err
    # the 9 bad lines found up front and the 7 files that only decoding finds, in one run
    assert ("fluxflow-train: error: --strict_data: 16 of 24 samples are bad (5 missing, 2 empty_caption, "
            "1 zero_byte, 1 bomb, 2 not_image, 3 truncated, 2 unreadable)") in err
    assert f"  - {first_bad} (line 9): missing" in err
