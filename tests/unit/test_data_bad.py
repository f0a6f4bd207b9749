"""Bad data: every kind is skipped and counted by default (also across workers) and is an error with --strict_data."""

from __future__ import annotations

import logging
import pickle

import pytest
import torch
from data_helpers import bad_files, encoded, noise_image, write_folder, write_imagefolder, write_parquet_repo

from fluxflow.training.data import (
    BAD_KINDS,
    DataConfig,
    DataError,
    SkipLog,
    build_dataset,
    make_dataloader,
)
from fluxflow.training.data.images import BadSample

GOOD = 6


def folder_with_every_bad_kind(root):
    """6 good images, then one line per bad kind: 4 bad files, a missing file, an empty caption."""
    extra = []
    for kind, data in bad_files().items():
        (root / f"{kind}.png").write_bytes(data)
        extra.append(f"{kind}.png\ta {kind} file")
    extra += ["missing.png\tnot on disk", "img0.png\t   "]
    return write_folder(root, n=GOOD, size=24, extra_lines=tuple(extra))


def drain(ds):
    return [ds[i] for i in range(len(ds))]


def test_every_kind_is_skipped_and_counted(tmp_path, caplog):
    captions = folder_with_every_bad_kind(tmp_path)
    with caplog.at_level(logging.WARNING, logger="fluxflow.data"):
        ds = build_dataset(DataConfig(data_path=str(tmp_path), captions_file=str(captions), img_size=16))
        # missing, zero-byte and empty caption are found up front, without decoding
        assert ds.skips.counts() == {"missing": 1, "empty_caption": 1, "zero_byte": 1}
        assert len(ds) == GOOD + 4
        samples = drain(ds)
    assert all(x.shape == (3, 16, 16) for x, _ in samples)  # bad records answered by a good neighbour
    assert not any(c.startswith("a ") and "file" in c for _, c in samples)
    assert ds.skips.counts() == {k: 1 for k in BAD_KINDS}
    drain(ds)  # a second epoch does not count the same files again
    assert ds.skips.total() == len(BAD_KINDS)
    summary = ds.skips.summary()
    assert summary.startswith("skipped 7 of 13 samples named: 1 missing, 1 empty_caption, 1 zero_byte, 1 bomb, "
                              "1 not_image, 1 truncated, 1 unreadable; ")
    for listed in ("missing: missing.png (line 12)", "empty_caption: img0.png (line 13)",
                   "zero_byte: zero_byte.png (line 7)", "truncated: truncated.png (line 9)"):
        assert listed in summary
    warned = [r.getMessage() for r in caplog.records if "skipping bad sample" in r.getMessage()]
    assert len(warned) == 7 and not any("quietly" in w for w in warned)  # one of each kind: all named


def test_strict_mode_fails_up_front_listing_the_problems(tmp_path):
    captions = folder_with_every_bad_kind(tmp_path)
    with pytest.raises(DataError) as err:
        build_dataset(DataConfig(data_path=str(tmp_path), captions_file=str(captions), img_size=16,
                                 strict_data=True))
    text = str(err.value)
    # one pass: the cheap checks and the decode of every other image, in one error
    assert text.startswith("--strict_data: 7 of 13 samples are bad (1 missing, 1 empty_caption, 1 zero_byte, "
                           "1 bomb, 1 not_image, 1 truncated, 1 unreadable):\n")
    assert "missing.png (line 12): missing" in text and "zero_byte.png (line 7): zero_byte" in text
    assert sorted(p.kind for p in err.value.problems) == sorted(BAD_KINDS)


def test_strict_mode_reports_cheap_and_decode_problems_in_one_pass(tmp_path):
    """Missing files and empty captions do not hide the corrupt and truncated images behind them."""
    images = bad_files()
    (tmp_path / "corrupt.png").write_bytes(images["unreadable"])
    (tmp_path / "cut.png").write_bytes(images["truncated"])
    captions = write_folder(tmp_path, n=GOOD, size=24, extra_lines=(
        "gone1.png\tnot on disk", "img1.png\t", "corrupt.png\tcorrupt pixels", "gone2.png\tnot on disk either",
        "cut.png\tcut short"))
    with pytest.raises(DataError) as err:
        build_dataset(DataConfig(data_path=str(tmp_path), captions_file=str(captions), img_size=16,
                                 strict_data=True))
    text = str(err.value)
    assert text.startswith("--strict_data: 5 of 11 samples are bad "
                           "(2 missing, 1 empty_caption, 1 truncated, 1 unreadable):\n")
    for name in ("gone1.png (line 7): missing", "img1.png (line 8): empty_caption",
                 "corrupt.png (line 9): unreadable", "gone2.png (line 10): missing", "cut.png (line 11): truncated"):
        assert f"  - {name}" in text
    assert len(err.value.problems) == 5 and "more" not in text


def test_strict_error_lists_ten_and_logs_them_all(tmp_path, caplog):
    captions = write_folder(tmp_path, n=2, size=24, extra_lines=tuple(f"gone{i}.png\tx" for i in range(12)))
    with caplog.at_level(logging.ERROR, logger="fluxflow.data"), pytest.raises(DataError) as err:
        build_dataset(DataConfig(data_path=str(tmp_path), captions_file=str(captions), img_size=16,
                                 strict_data=True))
    text = str(err.value)
    assert text.startswith("--strict_data: 12 of 14 samples are bad (12 missing):\n")
    assert text.count("\n  - ") == 10 and text.endswith("... and 2 more (all of them are in the log)")
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert all(f"gone{i}.png (line {i + 3}): missing" in logged for i in range(12))


@pytest.mark.parametrize("kind", ["not_image", "truncated", "unreadable", "bomb"])
def test_strict_mode_decodes_every_image_up_front(tmp_path, kind):
    captions = write_folder(tmp_path, n=3, size=24, extra_lines=("bad.png\tbad",))
    (tmp_path / "bad.png").write_bytes(bad_files()[kind])
    cfg = {"data_path": str(tmp_path), "captions_file": str(captions), "img_size": 16}
    assert len(build_dataset(DataConfig(**cfg))) == 4  # lenient: found only when read
    with pytest.raises(DataError, match=rf"1 of 4 samples are bad \(1 {kind}\):\n  - bad.png \(line 4\): {kind}"):
        build_dataset(DataConfig(**cfg, strict_data=True))


def test_strict_mode_passes_clean_data(tmp_path):
    captions = write_folder(tmp_path, n=3, size=24)
    ds = build_dataset(DataConfig(data_path=str(tmp_path), captions_file=str(captions), img_size=16,
                                  strict_data=True))
    assert len(drain(ds)) == 3 and ds.skips.total() == 0


def test_all_images_unreadable_is_an_error_not_a_hang(tmp_path):
    for i in range(3):
        (tmp_path / f"{i}.png").write_bytes(b"junk")
    (tmp_path / "c.txt").write_text("".join(f"{i}.png\tx\n" for i in range(3)))
    ds = build_dataset(DataConfig(data_path=str(tmp_path), captions_file=str(tmp_path / "c.txt"), img_size=16))
    with pytest.raises(DataError, match="no readable sample.*skipped 3 of 3 samples named: 3 not_image"):
        ds[0]


def test_counts_are_shared_across_dataloader_workers(tmp_path):
    captions = folder_with_every_bad_kind(tmp_path)
    ds = build_dataset(DataConfig(data_path=str(tmp_path), captions_file=str(captions), img_size=16))
    loader = make_dataloader(ds, batch_size=5, workers=2, shuffle=False,
                             collate_fn=lambda s: torch.stack([x for x, _ in s]))
    batches = list(loader)
    assert [b.shape[0] for b in batches] == [5, 5]  # substitution keeps batches full
    assert ds.skips.counts() == {k: 1 for k in BAD_KINDS}  # skips seen in the workers, read in the parent


def test_parquet_source_bad_bytes_and_empty_captions(tmp_path):
    images = [encoded(noise_image(24, 24, seed=i)) for i in range(4)] + [bad_files()["truncated"], b""]
    repo = write_parquet_repo(tmp_path / "repo", n_train=6, n_test=1, images=images,
                              captions=["a", "b", "", "d", "e", "f"])
    ds = build_dataset(DataConfig(dataset_name=str(repo), img_size=16))
    assert len(ds) == 5 and ds.skips.counts() == {"empty_caption": 1}
    assert sorted({c for _, c in drain(ds)}) == ["a", "b", "d"]
    assert ds.skips.counts() == {"empty_caption": 1, "zero_byte": 1, "truncated": 1}
    with pytest.raises(DataError) as err:  # the empty caption found up front, the bad bytes by decoding
        build_dataset(DataConfig(dataset_name=str(repo), img_size=16, strict_data=True))
    assert str(err.value) == (
        "--strict_data: 3 of 6 samples are bad (1 empty_caption, 1 zero_byte, 1 truncated):\n"
        "  - row 2: empty_caption\n"
        "  - row 4 (train4.png): truncated (image file is truncated)\n"
        "  - row 5 (train5.png): zero_byte")


def test_streaming_skips_and_counts_or_raises_in_strict_mode(tmp_path):
    images = [encoded(noise_image(24, 24, seed=i)) for i in range(3)] + [bad_files()["not_image"]]
    repo = write_parquet_repo(tmp_path / "repo", n_train=4, n_test=1, images=images, captions=["a", "b", "c", "d"])
    cfg = {"dataset_name": str(repo), "img_size": 16, "streaming": True, "shuffle_buffer_size": 0}
    ds = build_dataset(DataConfig(**cfg))
    assert [c for _, c in ds] == ["a", "b", "c"] and ds.skips.counts() == {"not_image": 1}
    in_workers = build_dataset(DataConfig(**cfg))
    loader = make_dataloader(in_workers, batch_size=2, workers=2, collate_fn=lambda s: [c for _, c in s])
    assert sorted(c for batch in loader for c in batch) == ["a", "b", "c"]
    assert in_workers.skips.counts() == {"not_image": 1}  # counted in a worker's own row
    with pytest.raises(DataError, match="--strict_data: train3.png: not_image"):
        list(build_dataset(DataConfig(**cfg, strict_data=True)))


def test_bomb_limit_flag(tmp_path):
    captions = write_folder(tmp_path, n=3, size=24)  # 24x24, 32x24, 40x24 pixels
    ds = build_dataset(DataConfig(data_path=str(tmp_path), captions_file=str(captions), img_size=16,
                                  max_image_pixels=800))
    drain(ds)
    assert ds.skips.counts() == {"bomb": 1}


def test_skiplog_survives_pickling_outside_a_worker_start():
    log = SkipLog(n_items=4)
    log.record(BadSample("truncated", "a.png"), index=2)
    copy = pickle.loads(pickle.dumps(log))  # e.g. deepcopy or datasets fingerprinting: a detached copy
    assert copy.counts() == {"truncated": 1} and copy.is_marked(2)
    assert copy.first_names() == {"truncated": ["a.png"]}
    assert not copy.record(BadSample("truncated", "a.png"), index=2)  # still counted once per index


# ------------------------------------------------------------------------------------- the final tally

def folder_with_missing_and_cut(root, missing=7, cut=2):
    """6 good images, ``missing`` lines naming no file, ``cut`` truncated images: 6 + missing + cut named."""
    for i in range(cut):
        (root / f"cut{i}.png").write_bytes(bad_files()["truncated"])
    extra = [f"gone{i}.png\tnot on disk" for i in range(missing)] + [f"cut{i}.png\tcut" for i in range(cut)]
    return write_folder(root, n=GOOD, size=24, extra_lines=tuple(extra))


def imagefolder_with_bad_rows(root):
    """An imagefolder of 6 rows: 2 truncated images and 1 empty caption (left out up front)."""
    write_imagefolder(root, n=6)
    for i in (1, 2):
        (root / "train" / f"{i}.png").write_bytes(bad_files()["truncated"])
    meta = root / "train" / "metadata.jsonl"
    meta.write_text(meta.read_text().replace('"folder caption 3"', '"  "'))
    return {"data_path": str(root)}


def parquet_with_bad_rows(root, streaming=False):
    """6 parquet rows: 2 truncated images and 1 empty caption."""
    good = [encoded(noise_image(24, 24, seed=i)) for i in range(4)]
    repo = write_parquet_repo(root / "repo", n_train=6, n_test=1, captions=["a", "b", "", "d", "e", "f"],
                              images=good[:3] + [bad_files()["truncated"]] * 2 + good[3:])
    return {"dataset_name": str(repo), "streaming": streaming, "shuffle_buffer_size": 0}


def captions_file_with_bad_lines(root):
    return {"data_path": str(root), "captions_file": str(folder_with_missing_and_cut(root))}


@pytest.mark.parametrize("make, want", [
    (captions_file_with_bad_lines, "skipped 9 of 15 samples named: 7 missing, 2 truncated; "),
    (imagefolder_with_bad_rows, "skipped 3 of 6 samples named: 1 empty_caption, 2 truncated; "),
    (parquet_with_bad_rows, "skipped 3 of 6 samples named: 1 empty_caption, 2 truncated; "),
])
def test_tally_is_out_of_every_sample_named_not_the_usable_ones(tmp_path, make, want):
    """The trainer's last line: "skipped 3 of 6 samples named", not "of 5" (the data set's length once the
    up-front problems are left out), and the same from ``summary()`` alone, without being told a total."""
    ds = build_dataset(DataConfig(**make(tmp_path), img_size=16))
    drain(ds)
    assert len(ds) < ds.skips.n_named  # the denominator the old tally used was the smaller one
    assert ds.skips.summary().startswith(want)


def test_streamed_tally_has_no_total(tmp_path):
    ds = build_dataset(DataConfig(**parquet_with_bad_rows(tmp_path, streaming=True), img_size=16))
    assert [c for _, c in ds] == ["a", "b", "f"]
    assert ds.skips.n_named is None
    assert ds.skips.summary().startswith("skipped 3 samples: 1 empty_caption, 2 truncated; ")


def test_tally_total_survives_workers_and_pickling(tmp_path):
    captions = folder_with_missing_and_cut(tmp_path)
    ds = build_dataset(DataConfig(data_path=str(tmp_path), captions_file=str(captions), img_size=16))
    list(make_dataloader(ds, batch_size=4, workers=2, collate_fn=list))
    assert ds.skips.summary().startswith("skipped 9 of 15 samples named: 7 missing, 2 truncated; ")
    assert pickle.loads(pickle.dumps(ds.skips)).summary() == ds.skips.summary()


def test_files_that_fail_to_decode_are_named_after_many_up_front_problems(tmp_path, caplog):
    """7 missing files (found up front) do not use up the warnings: the first 3 truncated files are named
    as they are met, and in the tally, with how many more there are."""
    captions = folder_with_missing_and_cut(tmp_path, missing=7, cut=5)
    with caplog.at_level(logging.WARNING, logger="fluxflow.data"):
        ds = build_dataset(DataConfig(data_path=str(tmp_path), captions_file=str(captions), img_size=16))
        drain(ds)
    warned = [r.getMessage() for r in caplog.records if "skipping bad sample" in r.getMessage()]
    named = [w.removeprefix("skipping bad sample ").split(" (")[0] for w in warned]
    assert named == [f"gone{i}.png" for i in range(3)] + [f"cut{i}.png" for i in range(3)]
    assert "further missing skips are counted quietly" in warned[2]
    assert "further truncated skips are counted quietly" in warned[5]
    assert ds.skips.summary() == (
        "skipped 12 of 18 samples named: 7 missing, 5 truncated; "
        "missing: gone0.png (line 7), gone1.png (line 8), gone2.png (line 9) and 4 more; "
        "truncated: cut0.png (line 14), cut1.png (line 15), cut2.png (line 16) and 2 more")


def test_files_that_fail_to_decode_in_workers_are_named(tmp_path):
    captions = folder_with_missing_and_cut(tmp_path, missing=7, cut=5)
    ds = build_dataset(DataConfig(data_path=str(tmp_path), captions_file=str(captions), img_size=16))
    list(make_dataloader(ds, batch_size=4, workers=2, shuffle=False, collate_fn=list))
    names = ds.skips.first_names()
    assert len(names["truncated"]) == 3 and all(n.startswith("cut") for n in names["truncated"])
    assert ds.skips.summary().endswith(" and 2 more")
