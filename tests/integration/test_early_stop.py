"""``--early_stop_metric``: a run ends (checkpoint, exports, ``logs/run_end.json``) when a training loss or a
validation metric has stopped improving, at the same step when resumed."""

import json

import pytest
from resume_check import assert_resume_is_exact

from fluxflow.cli.train import main
from fluxflow.datasets.shapes import write_shapes_dataset
from fluxflow.training.metrics import read_metrics

NEVER_ENOUGH = ["--early_stop_threshold", "100", "--early_stop_patience", "2"]  # no change counts: ends at 3


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return write_shapes_dataset(tmp_path_factory.mktemp("data") / "shapes", 16, size=32, seed=0) / "train"


def _train(data, out, *flags):
    argv = ["--data_path", str(data), "--img_size", "32", "--model_preset", "tiny", "--batch_size", "4",
            "--workers", "0", "--seed", "3", "--output_path", str(out), "--log_interval", "1", "--train_vae",
            "--max_train_steps", "10", "--no_samples", *flags]
    assert main(argv) == 0


def _end(out):
    return json.loads((out / "logs" / "run_end.json").read_text())


def test_a_training_loss_that_stops_improving_ends_the_run(shapes, tmp_path):
    _train(shapes, tmp_path, "--early_stop_metric", "loss/vae", *NEVER_ENOUGH, "--checkpoint_save_interval", "5")
    end = _end(tmp_path)
    assert end["step"] == 3 and "loss/vae did not improve by more than 100 for 2 evaluations" in end["reason"]
    assert [r["step"] for r in read_metrics(tmp_path / "logs" / "metrics.jsonl")] == [1, 2, 3]
    assert (tmp_path / "state" / "checkpoint-3").is_dir() and (tmp_path / "vae" / "config.json").is_file()


def test_a_run_without_early_stop_records_its_planned_end(shapes, tmp_path):
    _train(shapes, tmp_path, "--max_train_steps", "2")
    assert _end(tmp_path) == {"step": 2, "reason": "trained the planned 2 optimizer steps"}


def test_a_validation_metric_ends_the_run_once(shapes, tmp_path):
    _train(shapes, tmp_path, "--validation_split", "0.25", "--validation_interval", "1", "--early_stop_metric",
           "val/vae/psnr", "--early_stop_mode", "max", *NEVER_ENOUGH)
    assert _end(tmp_path)["step"] == 3
    rows = read_metrics(tmp_path / "logs" / "metrics.jsonl")
    assert [r["step"] for r in rows if "val/seconds" in r] == [1, 2, 3]  # the last one not repeated at the end


def test_early_stop_is_exact_across_resume(shapes, tmp_path):
    flags = ["--early_stop_metric", "loss/vae", *NEVER_ENOUGH, "--checkpoint_save_interval", "2"]
    resumed = assert_resume_is_exact(_train, shapes, tmp_path, flags, at=2)
    assert _end(resumed) == _end(tmp_path / "straight")


def test_an_unknown_metric_is_named(shapes, tmp_path, capsys):
    argv = ["--data_path", str(shapes), "--img_size", "32", "--model_preset", "tiny", "--batch_size", "4",
            "--workers", "0", "--output_path", str(tmp_path), "--log_interval", "1", "--train_vae",
            "--max_train_steps", "3", "--no_samples", "--early_stop_metric", "loss/flow"]
    assert main(argv) == 2
    assert "--early_stop_metric loss/flow: this run logs no such value; it logs loss/kl" in capsys.readouterr().err
