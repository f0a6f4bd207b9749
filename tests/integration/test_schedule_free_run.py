"""An optimizer by import path in a real run: schedule-free AdamW (its own schedule; averaged weights in
checkpoints, samples and exports) and Prodigy train, checkpoint and resume exactly."""

import json

import pytest
from resume_check import assert_resume_is_exact

from fluxflow.cli.train import main
from fluxflow.datasets.shapes import write_shapes_dataset

pytest.importorskip("schedulefree", reason="schedule-free is in the optional extra fluxflow[optimizers]")
pytest.importorskip("prodigyopt", reason="Prodigy is in the optional extra fluxflow[optimizers]")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return write_shapes_dataset(tmp_path_factory.mktemp("data") / "shapes", 16, size=32, seed=0) / "train"


@pytest.fixture(scope="module")
def optim_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("optim") / "optim.json"
    path.write_text(json.dumps({"optimizers": {
        "vae": {"type": "schedulefree.AdamWScheduleFree", "lr": 1e-3, "warmup_steps": 2},
        "discriminator": {"type": "prodigyopt.Prodigy"}}}), encoding="utf-8")
    return path


def _train(data, out, *flags):
    argv = ["--data_path", str(data), "--img_size", "32", "--model_preset", "tiny", "--batch_size", "4",
            "--workers", "0", "--seed", "3", "--output_path", str(out), "--log_interval", "1", "--no_samples",
            "--train_vae", "--gan_training", *flags]
    assert main(argv) == 0


def test_schedule_free_and_prodigy_resume_exactly(shapes, optim_file, tmp_path):
    flags = ["--optim_sched_config", str(optim_file), "--max_train_steps", "4", "--checkpoint_save_interval", "2"]
    resumed = assert_resume_is_exact(_train, shapes, tmp_path, flags, at=2)
    lrs = json.loads((resumed / "logs" / "train_config.json").read_text())["optimizer_scheduler_config"]
    assert lrs["optimizers"]["vae"]["type"] == "schedulefree.AdamWScheduleFree"
