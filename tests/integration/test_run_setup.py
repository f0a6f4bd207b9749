"""What a run says and does before and after its steps: help, launch checks, LR starts, exported sizes."""

import json
import logging

import pytest
from data_helpers import bad_files

from fluxflow import FluxFlowPipeline
from fluxflow.cli.train import main
from fluxflow.datasets.shapes import write_shapes_dataset
from fluxflow.training.arguments import parse_config
from fluxflow.training.metrics import read_metrics


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return write_shapes_dataset(tmp_path_factory.mktemp("data") / "shapes", 8, size=32, seed=0) / "train"


def _argv(data, out, *flags):
    return ["--data_path", str(data), "--img_size", "32", "--model_preset", "tiny", "--batch_size", "2",
            "--workers", "0", "--seed", "3", "--no_samples", "--output_path", str(out), *flags]


def test_help_shows_every_default(capsys):
    with pytest.raises(SystemExit) as exit:
        parse_config(["--help"])
    assert exit.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--kl_beta KL_BETA Final KL divergence weight (default: 0.0001)" in text
    assert "--checkpoint_save_interval CHECKPOINT_SAVE_INTERVAL Save a checkpoint every N optimizer steps " \
           "(default: 50)" in text
    assert "--training_steps TRAINING_STEPS, --gradient_accumulation_steps TRAINING_STEPS" in text


def test_gradient_accumulation_steps_is_training_steps(tmp_path):
    assert parse_config(["--gradient_accumulation_steps", "4"])[0].training_steps == 4
    path = tmp_path / "run.yaml"
    path.write_text("training:\n  gradient_accumulation_steps: 3\n", encoding="utf-8")
    assert parse_config(["--config", str(path)])[0].training_steps == 3


def test_a_corrupt_test_image_is_refused_up_front(shapes, tmp_path, capsys):
    bad = tmp_path / "test.png"
    bad.write_bytes(bad_files()["truncated"])
    assert main(_argv(shapes, tmp_path / "out", "--train_vae", "--test_image_address", str(bad))) == 2
    err = capsys.readouterr().err
    assert f"--test_image_address {str(bad)!r} is a truncated image" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_a_launcher_world_size_accelerate_does_not_see_is_refused(shapes, tmp_path, monkeypatch, capsys):
    """torchrun on a CPU without ACCELERATE_USE_CPU=1: each process would train alone into one folder."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(_argv(shapes, tmp_path, "--train_vae", "--max_train_steps", "1")) == 2
    err = capsys.readouterr().err
    assert "WORLD_SIZE=2" in err and "ACCELERATE_USE_CPU=1" in err
    assert not (tmp_path / "checkpoint.safetensors").exists()


@pytest.fixture
def fresh_accelerate_state():
    """Accelerate keeps one process-wide state; a run with another mixed precision needs it new (and leaves it
    new for the next test)."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def test_fp16_on_a_cpu_says_the_run_is_fp32(shapes, tmp_path, caplog, fresh_accelerate_state):
    with caplog.at_level(logging.WARNING, logger="fluxflow.train"):
        assert main(_argv(shapes, tmp_path, "--train_vae", "--max_train_steps", "1", "--use_fp16")) == 0
    assert "has no effect on a CPU" in caplog.text and "this run is fp32" in caplog.text


def test_preserve_lr_without_a_saved_file_says_so(shapes, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="fluxflow.train"):
        assert main(_argv(shapes, tmp_path, "--train_vae", "--max_train_steps", "1", "--preserve_lr")) == 0
    assert f"--preserve_lr: no {tmp_path / 'lr_sav.json'} to start from" in caplog.text


def test_scale_lr_scales_each_sub_component_by_its_own_lr(shapes, tmp_path, caplog):
    """A configured vae_encoder starts at its own LR x the effective batch (2), not at the VAE's; an entry for
    a component the run does not train is named in the log."""
    config = tmp_path / "optim.yaml"
    config.write_text("optimizers:\n  vae: {lr: 1.0e-4}\n  vae_encoder: {lr: 1.0e-3}\n  discriminator: {lr: 1.0e-4}\n"
                      "schedulers:\n  vae: {type: ConstantLR}\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="fluxflow.train"):
        assert main(_argv(shapes, tmp_path / "out", "--train_vae", "--max_train_steps", "1", "--scale_lr",
                          "--log_interval", "1", "--optim_sched_config", str(config))) == 0
    lrs = json.loads((tmp_path / "out" / "lr_sav.json").read_text())
    assert lrs["vae_encoder"] == pytest.approx(2e-3) and lrs["vae"] == pytest.approx(2e-4)
    assert "discriminator gets no optimizer (configured but not among the trained components)" in caplog.text


def test_plateau_scheduler_steps_on_its_monitor(shapes, tmp_path):
    """``monitor`` names the value ReduceLROnPlateau watches: a logged loss, or one the run does not log."""
    config = tmp_path / "optim.yaml"
    config.write_text("schedulers:\n  vae: {type: ReduceLROnPlateau, patience: 0, factor: 0.5, threshold: 10, "
                      "monitor: loss/reconstruction}\n", encoding="utf-8")
    assert main(_argv(shapes, tmp_path / "a", "--train_vae", "--max_train_steps", "3", "--log_interval", "1",
                      "--optim_sched_config", str(config))) == 0
    lrs = [row["lr/vae"] for row in read_metrics(tmp_path / "a" / "logs" / "metrics.jsonl")]
    assert lrs == pytest.approx([5e-5, 2.5e-5, 1.25e-5])  # threshold 10 (rel): never an improvement
    config.write_text("schedulers:\n  vae: {type: ReduceLROnPlateau, monitor: loss/nothing}\n", encoding="utf-8")
    assert main(_argv(shapes, tmp_path / "b", "--train_vae", "--max_train_steps", "1",
                      "--optim_sched_config", str(config))) == 2


def test_exported_pipeline_defaults_to_the_training_size(shapes, tmp_path):
    """The tiny preset's flow processor defaults to 64 px; trained at 32 px, the pipeline samples 32 px."""
    assert main(_argv(shapes, tmp_path, "--train_vae", "--train_diff_full", "--max_train_steps", "1")) == 0
    pipe = FluxFlowPipeline.from_pretrained(tmp_path / "pipeline")
    assert pipe.default_sample_size == 32
    image = pipe("a red circle", num_inference_steps=1, output_type="np").images[0]
    assert image.shape[:2] == (32, 32)
