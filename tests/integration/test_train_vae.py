"""fluxflow-train stage 1 end to end with tiny models on generated 32-px shapes."""

import json

import pytest
import torch
from safetensors import safe_open
from resume_check import assert_resume_is_exact
from safetensors.torch import load_file

from fluxflow.cli.train import main
from fluxflow.datasets.shapes import write_shapes_dataset
from fluxflow.training.metrics import read_metrics
from fluxflow.training.samples import VAE_SUFFIXES, image_hash


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return write_shapes_dataset(tmp_path_factory.mktemp("data") / "shapes", 16, size=32, seed=0) / "train"


def _train(data, out, *flags):
    argv = ["--data_path", str(data), "--img_size", "32", "--model_preset", "tiny", "--batch_size", "4",
            "--workers", "0", "--seed", "3", "--output_path", str(out), *flags]
    assert main(argv) == 0


def _components(path):
    with safe_open(str(path), "pt") as f:
        return json.loads(f.metadata()["fluxflow_components"])


MODES = {
    "vae": ["--train_vae", "--plot_graphs"],
    "vae_gan_spade": ["--train_vae", "--gan_training", "--train_spade"],
    "gan_only": ["--gan_training"],
    "spade_only": ["--train_spade"],
}


@pytest.mark.parametrize("mode", list(MODES))
def test_each_vae_mode_trains_checkpoints_and_samples(shapes, tmp_path, mode):
    _train(shapes, tmp_path, *MODES[mode], "--max_train_steps", "3", "--checkpoint_save_interval", "2",
           "--log_interval", "1")
    expected = {"vae", "discriminator"} if "--gan_training" in MODES[mode] else {"vae"}
    assert set(_components(tmp_path / "checkpoint.safetensors")) == expected
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == ["checkpoint-2", "checkpoint-3"]
    names = {p.name for p in (tmp_path / "samples").iterdir()}
    hashes = [image_hash(f"train:{i}") for i in range(2)]
    grids = {name for name in names if "_grid_" in name}
    assert grids == {f"vae_grid_{step:04d}.webp" for step in (0, 2, 3)}  # one grid per sample point
    assert names - grids == {f"vae_epoch_{step:04d}-{h}{s}.webp" for step in (0, 2, 3) for h in hashes
                             for s in VAE_SUFFIXES}
    rows = read_metrics(tmp_path / "logs" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3] and all("lr/vae" in r for r in rows)
    assert ("loss/discriminator" in rows[0]) == ("--gan_training" in MODES[mode])
    assert (tmp_path / "vae" / "config.json").exists()
    graphs = tmp_path / "logs" / "graphs"
    assert (graphs / "losses.png").exists() == ("--plot_graphs" in MODES[mode])


def test_spade_only_changes_only_spade_layers(shapes, tmp_path):
    _train(shapes, tmp_path / "a", "--train_spade", "--max_train_steps", "2", "--no_samples")
    _train(shapes, tmp_path / "b", "--train_vae", "--max_train_steps", "1", "--no_samples", "--lr", "1e-12")
    trained = load_file(tmp_path / "a" / "checkpoint.safetensors")
    initial = load_file(tmp_path / "b" / "checkpoint.safetensors")  # same seed: the same initial weights
    changed = {k for k in trained if not torch.allclose(trained[k], initial[k], atol=1e-8)}
    assert changed and all(".norm1." in k or ".norm_out." in k for k in changed)


def test_reconstruction_loss_goes_down(shapes, tmp_path):
    """Logged every 4 steps = one epoch of the 16 images, so each value averages the same set. How fast the tiny
    VAE leaves the grey-image plateau (about 1.19) depends on the noise seed: 48 steps give 5-35% here."""
    _train(shapes, tmp_path, "--train_vae", "--max_train_steps", "48", "--lr", "3e-3", "--log_interval", "4",
           "--no_samples", "--checkpoint_save_interval", "100")
    losses = [r["loss/reconstruction"] for r in read_metrics(tmp_path / "logs" / "metrics.jsonl")]
    assert len(losses) == 12 and losses[-1] < 0.95 * losses[0] and losses[-1] == min(losses)


@pytest.mark.parametrize("accumulation", ["1", "2"])
def test_resume_gives_identical_weights(shapes, tmp_path, accumulation):
    """6 steps straight vs the state after step 3 + --resume_from_checkpoint latest + 3 steps (data order,
    noise, optimizer, scheduler and discriminator state included)."""
    flags = ["--train_vae", "--gan_training", "--train_spade", "--max_train_steps", "6",
             "--checkpoint_save_interval", "3", "--no_samples", "--training_steps", accumulation, "--random_flip",
             "--log_interval", "1"]
    resumed = assert_resume_is_exact(_train, shapes, tmp_path, flags)
    steps = [r["step"] for r in read_metrics(resumed / "logs" / "metrics.jsonl")]
    assert steps == [4, 5, 6]


def test_model_checkpoint_initialises_the_weights(shapes, tmp_path):
    _train(shapes, tmp_path / "first", "--train_vae", "--max_train_steps", "2", "--no_samples")
    _train(shapes, tmp_path / "second", "--train_vae", "--max_train_steps", "1", "--no_samples", "--lr", "1e-12",
           "--model_checkpoint", str(tmp_path / "first" / "checkpoint.safetensors"))
    first = load_file(tmp_path / "first" / "checkpoint.safetensors")
    second = load_file(tmp_path / "second" / "checkpoint.safetensors")
    for key in first:
        torch.testing.assert_close(first[key], second[key], rtol=0, atol=1e-6)


def test_scale_lr_multiplies_the_whole_schedule_by_the_effective_batch(shapes, tmp_path):
    flags = ["--train_vae", "--max_train_steps", "2", "--no_samples", "--log_interval", "1", "--lr", "1e-4",
             "--training_steps", "2"]
    _train(shapes, tmp_path / "plain", *flags)
    _train(shapes, tmp_path / "scaled", *flags, "--scale_lr")
    plain = [r["lr/vae"] for r in read_metrics(tmp_path / "plain" / "logs" / "metrics.jsonl")]
    scaled = [r["lr/vae"] for r in read_metrics(tmp_path / "scaled" / "logs" / "metrics.jsonl")]
    assert len(plain) == 2 and scaled == pytest.approx([8 * lr for lr in plain], rel=1e-9)  # 4 x 1 x 2


def test_gradient_checkpointing_trains_vae_and_gan_as_without_it(shapes, tmp_path):
    """Stage 1 with the memory-saving flag: the frozen discriminator call in the generator loss used to die at
    the first backward (CheckpointError). The losses and weights match the run without the flag."""
    flags = ["--train_vae", "--gan_training", "--max_train_steps", "2", "--no_samples", "--log_interval", "1"]
    _train(shapes, tmp_path / "plain", *flags)
    _train(shapes, tmp_path / "checkpointed", *flags, "--gradient_checkpointing")
    plain = read_metrics(tmp_path / "plain" / "logs" / "metrics.jsonl")
    checkpointed = read_metrics(tmp_path / "checkpointed" / "logs" / "metrics.jsonl")
    for key in ("loss/vae", "loss/generator_adv", "loss/discriminator"):
        assert [r[key] for r in checkpointed] == pytest.approx([r[key] for r in plain], rel=1e-5, abs=1e-7)
    a = load_file(tmp_path / "plain" / "checkpoint.safetensors")
    b = load_file(tmp_path / "checkpointed" / "checkpoint.safetensors")
    assert set(a) == set(b)
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-6)
