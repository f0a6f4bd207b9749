"""--disc_start: the GAN rests for the first optimizer steps (diffusers' train_autoencoderkl.py), a tiny real run."""

import pytest
import torch
from accelerate.utils import set_seed
from safetensors.torch import load_file

from fluxflow.cli.train import main
from fluxflow.datasets.shapes import write_shapes_dataset
from fluxflow.training.components import build_components
from fluxflow.training.config import TrainConfig
from fluxflow.training.metrics import read_metrics
from fluxflow.training.vae_objective import VAEObjective

SEED = 3
COMMON = ["--img_size", "32", "--model_preset", "tiny", "--batch_size", "4", "--workers", "0", "--seed", str(SEED),
          "--no_samples", "--log_interval", "1", "--checkpoint_save_interval", "1"]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return write_shapes_dataset(tmp_path_factory.mktemp("data") / "shapes", 16, size=32, seed=0) / "train"


def _train(data, out, *flags):
    assert main(["--data_path", str(data), "--output_path", str(out), *COMMON, *flags]) == 0
    return read_metrics(out / "logs" / "metrics.jsonl")


def _initial_discriminator(data) -> dict[str, torch.Tensor]:
    """The discriminator a run of seed SEED starts from: the run's own builder after the run's seeding."""
    cfg = TrainConfig(train_vae=True, gan_training=True, model_preset="tiny", img_size=32, seed=SEED,
                      data_path=str(data))
    set_seed(SEED)
    return build_components(cfg).discriminator.state_dict()


def _discriminator_at(out, step: int, keys: set[str]) -> dict[str, torch.Tensor]:
    """The discriminator's weights in ``state/checkpoint-<step>`` (the model file holding its keys)."""
    for path in sorted((out / "state" / f"checkpoint-{step}").glob("model*.safetensors")):
        weights = load_file(path)
        if set(weights) == keys:
            return weights
    raise AssertionError(f"no discriminator weights in {out / 'state' / f'checkpoint-{step}'}")


def _same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_discriminator_rests_until_disc_start(shapes, tmp_path):
    """With --disc_start 3 optimizer steps 1-3 leave the discriminator (weights and spectral-norm buffers)
    exactly at its initial values, with no adversarial loss; step 4 on trains it."""
    rows = _train(shapes, tmp_path, "--train_vae", "--gan_training", "--disc_start", "3", "--max_train_steps", "5")
    initial = _initial_discriminator(shapes)
    at = {step: _discriminator_at(tmp_path, step, set(initial)) for step in range(1, 6)}
    assert all(_same(at[step], initial) for step in (1, 2, 3))
    assert not _same(at[4], at[3]) and not _same(at[5], at[4])
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]
    for row in rows[:3]:
        assert row["loss/discriminator"] == 0 and row["loss/generator_adv"] == 0 and "d/real_logit" not in row
        assert row["loss/vae"] == pytest.approx(row["loss/reconstruction"] + row["kl_weight"] * row["loss/kl"],
                                                rel=1e-5)
    for row in rows[3:]:
        assert row["loss/discriminator"] > 0 and row["loss/generator_adv"] != 0 and "d/real_logit" in row
    assert rows[1]["kl_weight"] > 0  # the KL warm-up counts optimizer steps from the start, as before


def test_default_disc_start_trains_the_gan_from_the_first_step(shapes, tmp_path):
    rows = _train(shapes, tmp_path, "--train_vae", "--gan_training", "--max_train_steps", "2")
    initial = _initial_discriminator(shapes)
    assert not _same(_discriminator_at(tmp_path, 1, set(initial)), initial)
    assert all(r["loss/discriminator"] > 0 and r["loss/generator_adv"] != 0 for r in rows)


def test_gan_training_alone_refuses_disc_start():
    """Without --train_vae the adversarial terms are all that trains: resting them would train nothing."""
    problems = TrainConfig(gan_training=True, disc_start=5)._mode_problems()
    assert any(p.startswith("--disc_start 5 with --gan_training alone") for p in problems)
    assert VAEObjective(TrainConfig(gan_training=True, train_vae=True, disc_start=5)).resting(4) == {"discriminator"}
    assert VAEObjective(TrainConfig(gan_training=True, train_vae=True, disc_start=5)).resting(5) == frozenset()
    assert VAEObjective(TrainConfig(train_vae=True, disc_start=5)).resting(0) == frozenset()  # no GAN: no-op
