"""The exact-resume check shared by the VAE and flow training tests, and a stop signal at a chosen step."""

import os
import signal
from pathlib import Path

import torch
from safetensors.torch import load_file


def assert_resume_is_exact(train, data, tmp_path: Path, flags: list[str], at: int = 3) -> Path:
    """Train straight; move the state saved after step ``at`` into a fresh folder and resume from it there;
    the final weights must be identical bit for bit. Returns the resumed run's folder."""
    train(data, tmp_path / "straight", *flags)
    resumed = tmp_path / "resumed"
    (resumed / "state").mkdir(parents=True)
    (tmp_path / "straight" / "state" / f"checkpoint-{at}").rename(resumed / "state" / f"checkpoint-{at}")
    train(data, resumed, *flags, "--resume_from_checkpoint", "latest")
    a = load_file(tmp_path / "straight" / "checkpoint.safetensors")
    b = load_file(resumed / "checkpoint.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    return resumed


def sigterm_after_step(monkeypatch, step: int) -> None:
    """Make the next in-process run receive SIGTERM right after optimizer step ``step`` (as a preemption)."""
    from fluxflow.training import trainer

    end_step = trainer._end_step

    def signalled(run, logs, **kw):
        end_step(run, logs, **kw)
        if run.progress.global_step == step:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(trainer, "_end_step", signalled)


def sigterm_in(monkeypatch, run_folder: str, step: int) -> None:
    """SIGTERM once, right after optimizer step ``step`` of the run whose output folder is named
    ``run_folder`` (a pipeline stage's ``<i>-<name>``)."""
    from fluxflow.training import trainer

    end_step, sent = trainer._end_step, []

    def signalled(run, logs, **kw):
        end_step(run, logs, **kw)
        if run.out.name == run_folder and run.progress.global_step == step and not sent:
            sent.append(step)
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(trainer, "_end_step", signalled)
