"""SIGKILL at any point of a run, then `--resume_from_checkpoint latest`: the final weights equal an uninterrupted
run's bit for bit (data order, noise, optimizers, schedulers, GAN, EMA and the KL warm-up position included).
SIGTERM/SIGINT: the run finishes its step, saves, exits 0 and says how to resume."""

from __future__ import annotations

import random
import signal
import time

import pytest
from runs import FLAGS, STEPS, assert_same_weights, log, run, start, wait_for

from fluxflow.training.checkpoint import state_folders
from fluxflow.training.metrics import read_metrics


def _kill_and_resume(data, out, after_step: int, delay: float, sig=signal.SIGKILL) -> int:
    """Run until the state of ``after_step`` is on disk, wait ``delay`` s more (a random point of a later step
    or its save), send ``sig``; then resume to the end. Returns the killed run's exit code."""
    proc = start(data, out, *FLAGS)
    wait_for(out / "state" / f"checkpoint-{after_step}", proc)
    time.sleep(delay)
    proc.send_signal(sig)
    code = proc.wait(timeout=120)
    assert run(data, out, *FLAGS, "--resume_from_checkpoint", "latest") == 0, log(out)
    return code


@pytest.mark.parametrize("after_step,delay", [(1, 0.0), (4, 0.05)])
def test_sigkill_then_resume_equals_the_straight_run(straight, tmp_path, after_step, delay):
    data, reference = straight
    code = _kill_and_resume(data, tmp_path / "run", after_step, delay)
    assert code == -signal.SIGKILL
    assert_same_weights(reference, tmp_path / "run")
    steps = [row["step"] for row in read_metrics(tmp_path / "run" / "logs" / "metrics.jsonl")]
    assert steps == list(range(1, STEPS + 1)), "each step logged once, also those run again after the kill"


@pytest.mark.slow
def test_sigkill_at_random_points(straight, tmp_path):
    """Six random kill points (a step and a delay into the steps after it)."""
    data, reference = straight
    rng = random.Random(0)
    for i in range(6):
        out = tmp_path / f"run{i}"
        _kill_and_resume(data, out, rng.randint(1, STEPS - 2), rng.uniform(0.0, 0.5))
        assert_same_weights(reference, out)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stop_signal_saves_exits_zero_and_resumes_exactly(straight, tmp_path, sig):
    data, reference = straight
    out = tmp_path / "run"
    proc = start(data, out, *FLAGS)
    wait_for(out / "state" / "checkpoint-2", proc)
    proc.send_signal(sig)
    assert proc.wait(timeout=120) == 0, log(out)
    text = log(out)
    stopped_at = state_folders(out)[-1].name.split("-")[1]
    assert f"{signal.Signals(sig).name}: stopped after step {stopped_at} with a checkpoint" in text
    assert "--resume_from_checkpoint latest" in text
    assert 2 <= int(stopped_at) < STEPS and not (out / "pipeline").exists()  # no end-of-run export
    assert run(data, out, *FLAGS, "--resume_from_checkpoint", "latest") == 0, log(out)
    assert_same_weights(reference, out)
