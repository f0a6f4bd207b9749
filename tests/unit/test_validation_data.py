"""Where validation samples come from: the ``--validation_split`` held out of training (by seed), or a
``--validation_data_path`` / ``--validation_dataset_name`` source read like training data."""

from __future__ import annotations

import pytest
import torch
from data_helpers import write_folder, write_imagefolder, write_parquet_repo

from fluxflow.training.arguments import parse_config
from fluxflow.training.data import DataError, build_dataset
from fluxflow.training.data.build import split_indices
from fluxflow.training.errors import ConfigError


def _config(*flags):
    cfg, _ = parse_config(["--train_vae", "--img_size", "32", "--seed", "5", *flags])
    cfg.validate()
    return cfg


def _captions(dataset):
    return [dataset[i][1] for i in range(len(dataset))]


def test_split_indices_are_disjoint_covering_and_chosen_by_seed():
    train, held = split_indices(20, 0.1, seed=1)
    assert len(held) == 2 and sorted(train + held) == list(range(20))
    assert split_indices(20, 0.1, seed=1) == (train, held)
    assert {tuple(split_indices(20, 0.1, seed=s)[1]) for s in range(5)} != {tuple(held)}
    assert len(split_indices(3, 0.01, seed=0)[1]) == 1  # at least one held out
    with pytest.raises(DataError, match="--validation_split 0.9 of 2 samples leaves none"):
        split_indices(2, 0.9, seed=0)


def test_validation_split_holds_samples_out_of_training(tmp_path):
    captions = write_folder(tmp_path / "data", n=10, size=32)
    cfg = _config("--data_path", str(tmp_path / "data"), "--captions_file", str(captions),
                  "--validation_split", "0.3", "--random_flip")
    train = build_dataset(cfg)
    held = build_dataset(cfg.validation_data_config(), part="validation")
    assert len(train) == 7 and len(held) == 3
    assert set(_captions(train)) | set(_captions(held)) == {f"caption {i}" for i in range(10)}
    assert not set(_captions(train)) & set(_captions(held))
    again = build_dataset(cfg.validation_data_config(), part="validation")
    assert _captions(again) == _captions(held)
    # the held-out images are prepared without random flips: the same tensor in every epoch
    held.set_epoch(1)
    first = held[0][0]
    held.set_epoch(2)
    assert torch.equal(first, held[0][0])


def test_validation_split_of_a_datasets_source(tmp_path):
    repo = write_parquet_repo(tmp_path / "repo", n_train=10)
    cfg = _config("--dataset_name", str(repo), "--validation_split", "0.2")
    train, held = build_dataset(cfg), build_dataset(cfg.validation_data_config(), part="validation")
    assert len(train) == 8 and len(held) == 2
    assert not set(_captions(train)) & set(_captions(held))


def test_validation_data_path_reads_a_folder_like_training_data(tmp_path):
    captions = write_folder(tmp_path / "data", n=4, size=32)
    write_folder(tmp_path / "val", n=3, size=32)  # its own captions.txt: --captions_file's name inside it
    cfg = _config("--data_path", str(tmp_path / "data"), "--captions_file", str(captions),
                  "--validation_data_path", str(tmp_path / "val"), "--max_validation_samples", "2")
    held = build_dataset(cfg.validation_data_config())
    assert len(held) == 2 and len(build_dataset(cfg)) == 4
    imagefolder = write_imagefolder(tmp_path / "iv", n=3) / "train"
    cfg = _config("--data_path", str(tmp_path / "data"), "--captions_file", str(captions),
                  "--validation_data_path", str(imagefolder))
    assert sorted(_captions(build_dataset(cfg.validation_data_config()))) == [f"folder caption {i}" for i in
                                                                               range(3)]


def test_validation_dataset_name_reads_its_split(tmp_path):
    repo = write_parquet_repo(tmp_path / "repo", n_train=6, n_test=2)
    cfg = _config("--dataset_name", str(repo), "--validation_dataset_name", str(repo),
                  "--validation_dataset_split", "test")
    assert sorted(_captions(build_dataset(cfg.validation_data_config()))) == ["test caption 0", "test caption 1"]


def test_bad_validation_source_is_named_before_anything_is_built(tmp_path):
    captions = write_folder(tmp_path / "data", n=4, size=32)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"validation data \(--validation_data_path\): .*metadata"):
        _config("--data_path", str(tmp_path / "data"), "--captions_file", str(captions),
                "--validation_data_path", str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match="--validation_split needs a map-style data set"):
        _config("--dataset_name", "user/set", "--streaming", "--max_train_steps", "2", "--validation_split", "0.1")
