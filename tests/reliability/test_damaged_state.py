"""A damaged or refused file in the state folder to resume from is a one-line error (exit 2) naming the file and
the previous complete checkpoint to resume from instead; never a traceback, never pickled code run."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from fluxflow.cli.train import main
from fluxflow.datasets.shapes import write_shapes_dataset
from fluxflow.training.checkpoint import RUN_STATE_FILE


def _train(data, out, *flags) -> int:
    return main(["--data_path", str(data), "--output_path", str(out), "--img_size", "32", "--model_preset", "tiny",
                 "--batch_size", "4", "--workers", "0", "--seed", "3", "--no_samples", "--train_vae", *flags])


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A run of 2 steps with a checkpoint after each, and its data."""
    root = tmp_path_factory.mktemp("damaged")
    data = write_shapes_dataset(root / "shapes", 8, size=32, seed=0) / "train"
    assert _train(data, root / "run", "--max_train_steps", "2", "--checkpoint_save_interval", "1") == 0
    return data, root / "run"


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGE = {  # file in checkpoint-2: what is done to it, and what the message must say about it
    "model.safetensors": (_truncate, "damaged (truncated or corrupt"),
    RUN_STATE_FILE: (_truncate, "damaged (truncated or corrupt"),
    "random_states_0.pkl": (_truncate, "damaged (truncated or corrupt"),  # Accelerate would skip it silently
    "optimizer.bin": (lambda path: torch.save({"state": _Payload(path.parents[3] / "PWNED")}, path),
                      "refused, it holds more than tensors and plain values (it calls posix.system)"),
}


def _resume_error(data, out, capsys) -> str:
    assert _train(data, out, "--max_train_steps", "3", "--resume_from_checkpoint", "latest") == 2
    err = capsys.readouterr().err
    lines = [x[x.index("fluxflow-train:"):] for x in err.splitlines() if "fluxflow-train:" in x]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "weights_only" not in err, "no advice to load the file with code enabled"
    return lines[0]


@pytest.mark.parametrize("name", list(DAMAGE))
def test_a_damaged_file_is_named_with_the_checkpoint_to_resume_from_instead(finished, tmp_path, capsys, name):
    data, run = finished
    out = tmp_path / "run"
    shutil.copytree(run, out)
    damage, said = DAMAGE[name]
    damage(out / "state" / "checkpoint-2" / name)
    line = _resume_error(data, out, capsys)
    assert line.startswith(f"fluxflow-train: error: {out / 'state' / 'checkpoint-2' / name}: {said}"), line
    assert f"resume from the previous complete checkpoint instead: --resume_from_checkpoint " \
           f"{out / 'state' / 'checkpoint-1'}" in line
    assert not (tmp_path / "PWNED").exists(), "the pickled call never ran"
    assert _train(data, out, "--max_train_steps", "3", "--resume_from_checkpoint",
                  str(out / "state" / "checkpoint-1")) == 0, "the checkpoint named resumes"


def test_a_damaged_only_checkpoint_says_there_is_none_earlier(finished, tmp_path, capsys):
    data, run = finished
    out = tmp_path / "run"
    shutil.copytree(run, out)
    shutil.rmtree(out / "state" / "checkpoint-1")
    _truncate(out / "state" / "checkpoint-2" / "model.safetensors")
    line = _resume_error(data, out, capsys)
    assert f"there is no earlier complete checkpoint: delete {out / 'state' / 'checkpoint-2'}" in line
