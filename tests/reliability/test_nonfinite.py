"""NaN injection: a non-finite loss or gradient skips its step (counted, logged with the step number);
--max_nonfinite_steps in a row stop the run with the last checkpoint kept; non-finite weights are never saved."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file

from fluxflow.cli.train import main
from fluxflow.datasets.shapes import write_shapes_dataset
from fluxflow.training import trainer
from fluxflow.training.checkpoint import state_folders
from fluxflow.training.metrics import read_metrics
from fluxflow.training.vae_objective import VAEObjective


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_shapes_dataset(tmp_path_factory.mktemp("nan") / "shapes", 8, size=32, seed=0) / "train"


def _train(data, out, *flags) -> int:
    return main(["--data_path", str(data), "--output_path", str(out), "--img_size", "32", "--model_preset", "tiny",
                 "--batch_size", "4", "--workers", "0", "--seed", "3", "--no_samples", "--log_interval", "1",
                 "--train_vae", *flags])


def _nan_loss_on(monkeypatch, steps):
    """Make the VAE loss NaN (graph kept, so the gradients are NaN too) on the given optimizer steps."""
    real = VAEObjective.generator_loss

    def poisoned(self, x, recon, mean, logvar, step, disc=None):
        loss, logs = real(self, x, recon, mean, logvar, step, disc)
        if step + 1 in steps:  # ``step`` counts the steps done before this one
            loss = loss * math.nan
            logs["loss/vae"] = loss.detach()
        return loss, logs

    monkeypatch.setattr(VAEObjective, "generator_loss", poisoned)


def test_a_nan_step_is_skipped_counted_and_the_run_goes_on(data, tmp_path, monkeypatch, caplog):
    _nan_loss_on(monkeypatch, {3, 4})
    assert _train(data, tmp_path, "--max_train_steps", "6", "--checkpoint_save_interval", "1") == 0
    rows = {row["step"]: row for row in read_metrics(tmp_path / "logs" / "metrics.jsonl")}
    assert [rows[s]["skipped_steps"] for s in range(1, 7)] == [0, 0, 1, 2, 2, 2]
    assert rows[3]["loss/vae"] is None and rows[5]["loss/vae"] is not None
    # the skipped steps moved neither the weights nor the schedule
    model = {s: load_file(tmp_path / "state" / f"checkpoint-{s}" / "model.safetensors") for s in (2, 3, 4, 5)}
    assert all(torch.equal(model[2][k], model[4][k]) for k in model[2])
    assert not all(torch.equal(model[4][k], model[5][k]) for k in model[4])
    assert rows[2]["lr/vae"] == rows[3]["lr/vae"] == rows[4]["lr/vae"] != rows[5]["lr/vae"]
    assert "step 3 skipped: non-finite grad_norm/vae, loss/vae (1 in a row, 1 in all)" in caplog.text
    assert all(torch.isfinite(t).all() for t in load_file(tmp_path / "checkpoint.safetensors").values())


def test_too_many_in_a_row_stop_the_run_and_keep_the_checkpoint(data, tmp_path, monkeypatch, capsys):
    _nan_loss_on(monkeypatch, set(range(3, 100)))
    assert _train(data, tmp_path, "--max_train_steps", "20", "--checkpoint_save_interval", "1",
                  "--max_nonfinite_steps", "3") == 1
    err = capsys.readouterr().err
    assert "steps 3-5: 3 optimizer steps in a row had a non-finite loss or gradient" in err
    assert "checkpoint-4" in err and "--resume_from_checkpoint latest" in err
    assert [p.name for p in state_folders(tmp_path)][-1] == "checkpoint-4"
    saved = load_file(tmp_path / "checkpoint.safetensors")
    assert all(torch.isfinite(t).all() for t in saved.values())


def test_non_finite_weights_are_never_saved(data, tmp_path, monkeypatch, capsys):
    """A finite gradient can still overflow a weight (a huge LR): the save is refused, the last stays."""
    real, calls = trainer._optimizer_step, []

    def overflowing(optim, logs, skip, **kw):
        stepped = real(optim, logs, skip, **kw)
        calls.append(1)
        if len(calls) == 3:
            next(iter(optim.values())).optimizer.param_groups[0]["params"][0].data.fill_(math.inf)
        return stepped

    monkeypatch.setattr(trainer, "_optimizer_step", overflowing)
    assert _train(data, tmp_path, "--max_train_steps", "6", "--checkpoint_save_interval", "1") == 1
    err = capsys.readouterr().err
    assert "step 3: vae." in err and "holds NaN/Inf values; not saving a checkpoint" in err
    assert [p.name for p in state_folders(tmp_path)] == ["checkpoint-1", "checkpoint-2"]
    assert all(torch.isfinite(t).all() for t in load_file(tmp_path / "checkpoint.safetensors").values())
