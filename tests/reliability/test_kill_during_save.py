"""A kill in the middle of writing a checkpoint leaves the previous one as the latest, loadable and complete;
the resumed run still ends bit-identical to an uninterrupted one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from runs import FLAGS, assert_same_weights, command, log, run, weights
from safetensors import safe_open

from fluxflow.training.checkpoint import state_folders

DRIVER = Path(__file__).with_name("dying_train.py")


def _dying_run(where: str, step: int, data, out) -> int:
    argv = command(data, out, *FLAGS)[3:]  # the flags after `python -m fluxflow.cli.train`
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
        assert latest.name == "checkpoint-2" and (out / "state" / ".checkpoint-3.tmp").is_dir()
    else:  # the state of step 3 was never begun; the weights file is still step 2's, whole
        assert latest.name == "checkpoint-2"
        with safe_open(str(out / "checkpoint.safetensors"), "pt") as f:
            assert '"global_step": 2' in f.metadata()["fluxflow_extra"]
        assert weights(out)  # every tensor reads back
    assert run(data, out, *FLAGS, "--resume_from_checkpoint", "latest") == 0, log(out)
    assert "resumed from" in log(out) and "checkpoint-2 at step 2" in log(out)
    assert_same_weights(reference, out)
    assert not list((out / "state").glob(".*.tmp")), "the next save of that step cleaned its leftover"
