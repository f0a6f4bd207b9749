"""Validation inside a real run: rows at each ``--validation_interval`` and at the end, no effect on training,
exact across resume."""

import pytest
import torch
from resume_check import assert_resume_is_exact
from safetensors.torch import load_file

from fluxflow.cli.train import main
from fluxflow.datasets.shapes import write_shapes_dataset
from fluxflow.training.metrics import read_metrics

JOINT = ["--train_vae", "--train_diff_full", "--validation_split", "0.25", "--validation_interval", "2",
         "--validation_judge_prompts", "2", "--sample_steps", "2", "--no_samples"]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return write_shapes_dataset(tmp_path_factory.mktemp("data") / "shapes", 16, size=32, seed=0) / "train"


def _train(data, out, *flags):
    argv = ["--data_path", str(data), "--img_size", "32", "--model_preset", "tiny", "--batch_size", "4",
            "--workers", "0", "--seed", "3", "--output_path", str(out), "--log_interval", "1", *flags]
    assert main(argv) == 0


def _validation_rows(out):
    return [r for r in read_metrics(out / "logs" / "metrics.jsonl") if "val/seconds" in r]


def test_validation_rows_at_each_interval_and_at_the_end(shapes, tmp_path):
    _train(shapes, tmp_path, *JOINT, "--max_train_steps", "5", "--checkpoint_save_interval", "5")
    rows = _validation_rows(tmp_path)
    assert [r["step"] for r in rows] == [2, 4, 5]
    keys = set(rows[-1])
    assert {"val/vae/psnr", "val/vae/ssim", "val/vae/ms_ssim", "val/vae/psnr_nc", "val/vae/kl", "val/flow/loss",
            "val/flow/loss_sigma_0.00-0.25", "val/judge/accuracy", "val/judge_recon/accuracy"} <= keys
    assert len([k for k in keys if k.startswith("val/vae/kl/ch")]) == 4  # the tiny preset's latent channels
    assert all(0 <= r["val/vae/ssim"] <= 1 and r["val/flow/loss"] > 0 for r in rows)
    # training rows are unchanged: every step still has its own line with the training losses
    assert [r["step"] for r in read_metrics(tmp_path / "logs" / "metrics.jsonl") if "loss/vae" in r] == [1, 2, 3, 4, 5]


def test_validation_does_not_change_what_is_trained(shapes, tmp_path):
    base = ["--train_vae", "--train_diff_full", "--validation_split", "0.25", "--no_samples", "--sample_steps", "2",
            "--max_train_steps", "4", "--checkpoint_save_interval", "4"]
    _train(shapes, tmp_path / "with", *base, "--validation_interval", "1", "--validation_judge_prompts", "2")
    _train(shapes, tmp_path / "without", *base)  # default interval: the checkpoint's, so only at the end
    a = load_file(tmp_path / "with" / "checkpoint.safetensors")
    b = load_file(tmp_path / "without" / "checkpoint.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r["step"] for r in _validation_rows(tmp_path / "with")] == [1, 2, 3, 4]
    assert [r["step"] for r in _validation_rows(tmp_path / "without")] == [4]


def test_validation_is_exact_across_resume(shapes, tmp_path):
    flags = [*JOINT, "--max_train_steps", "4", "--checkpoint_save_interval", "2"]
    resumed = assert_resume_is_exact(_train, shapes, tmp_path, flags, at=2)
    straight = {r["step"]: r for r in _validation_rows(tmp_path / "straight")}
    again = {r["step"]: r for r in _validation_rows(resumed)}
    assert sorted(again) == [4]
    assert {k: v for k, v in again[4].items() if k != "val/seconds"} == \
        {k: v for k, v in straight[4].items() if k != "val/seconds"}
