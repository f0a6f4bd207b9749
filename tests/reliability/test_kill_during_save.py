"""A kill in the middle of writing a checkpoint leaves the previous one as the latest, loadable and complete;
the resumed run still ends bit-identical to an uninterrupted one, and the next start removes the temporary files
the kill left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from runs import FLAGS, assert_same_weights, command, log, run, shapes, weights
from safetensors import safe_open

from fluxflow.atomic import MARK, temp_name
from fluxflow.training.checkpoint import state_folders

DRIVER = Path(__file__).with_name("dying_train.py")


def _dying_run(where: str, step: int, data, out, flags=FLAGS) -> int:
    argv = command(data, out, *flags)[3:]  # the flags after `python -m fluxflow.cli.train`
    if where == "sample":
        argv.remove("--no_samples")
    with open(out.with_suffix(".log"), "ab") as log_file:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
        return subprocess.run([sys.executable, str(DRIVER), where, str(step), *argv], stdout=log_file,
                              stderr=subprocess.STDOUT, env=env, timeout=300).returncode


@pytest.mark.parametrize("where", ["state", "weights"])
def test_kill_during_save_keeps_the_previous_checkpoint(straight, tmp_path, where):
    data, reference = straight
    out = tmp_path / "run"
    assert _dying_run(where, 3, data, out) == -signal.SIGKILL, log(out)
    latest = state_folders(out)[-1]
    if where == "state":  # the half-written folder is there, under its temporary name, and ignored
        assert latest.name == "checkpoint-2" and (out / "state" / temp_name("checkpoint-3")).is_dir()
    else:  # the state of step 3 was never begun; the weights file is still step 2's, whole
        assert latest.name == "checkpoint-2"
        assert len(list(out.glob(f".checkpoint.safetensors.{MARK}-*.tmp"))) == 1, "the half-written temporary file"
        with safe_open(str(out / "checkpoint.safetensors"), "pt") as f:
            assert '"global_step": 2' in f.metadata()["fluxflow_extra"]
        assert weights(out)  # every tensor reads back
    assert run(data, out, *FLAGS, "--resume_from_checkpoint", "latest") == 0, log(out)
    assert "resumed from" in log(out) and "checkpoint-2 at step 2" in log(out)
    assert_same_weights(reference, out)
    assert not list(out.glob(f"**/.*.{MARK}*")), "the next start removed the leftovers"


def test_a_temporary_sample_left_by_a_kill_is_removed_at_the_next_start(tmp_path):
    data, out = shapes(tmp_path / "shapes"), tmp_path / "run"
    flags = ["--train_vae", "--max_train_steps", "1"]
    assert _dying_run("sample", 0, data, out, flags) == -signal.SIGKILL, log(out)
    left = list((out / "samples").glob(f".vae_epoch_0000-*.webp.{MARK}-*.tmp"))
    assert len(left) == 1 and left[0].stat().st_size > 0, "the half-written sample"
    (out / "samples" / "notes.tmp").write_text("the user's")
    argv = [a for a in command(data, out, *flags, "--resume_from_checkpoint", "latest") if a != "--no_samples"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    assert subprocess.run(argv, env=env, capture_output=True, timeout=300).returncode == 0
    assert not left[0].exists() and (out / "samples" / "notes.tmp").read_text() == "the user's"
    assert (out / "samples" / left[0].name.split(f".{MARK}-")[0][1:]).exists(), "written whole by the new run"
