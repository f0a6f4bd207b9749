"""Training runs as real subprocesses (`python -m fluxflow.cli.train`) that tests kill or signal mid-run."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from fluxflow.datasets.shapes import write_shapes_dataset

# every mode at once: VAE + GAN + SPADE + flow + EMA, with the KL warm-up still running
ALL_MODES = ["--train_vae", "--gan_training", "--train_spade", "--train_diff_full", "--use_ema",
             "--kl_warmup_steps", "4"]
# the run the kill tests interrupt: 8 steps (two epochs of 16 images), a checkpoint after every step
STEPS = 8
FLAGS = [*ALL_MODES, "--max_train_steps", str(STEPS), "--checkpoint_save_interval", "1"]


def shapes(folder: Path, n: int = 16) -> Path:
    return write_shapes_dataset(folder, n, size=32, seed=0) / "train"


def command(data: Path, out: Path, *flags: str) -> list[str]:
    return [sys.executable, "-m", "fluxflow.cli.train", "--data_path", str(data), "--output_path", str(out),
            "--img_size", "32", "--model_preset", "tiny", "--batch_size", "4", "--workers", "0", "--seed", "3",
            "--no_samples", "--log_interval", "1", *flags]


def start(data: Path, out: Path, *flags: str) -> subprocess.Popen:
    """Start a run; its output goes to ``out.log`` (read it with :func:`log`)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    log_file = open(out.with_suffix(".log"), "ab")
    return subprocess.Popen(command(data, out, *flags), stdout=log_file, stderr=subprocess.STDOUT, env=env)


def run(data: Path, out: Path, *flags: str, timeout: float = 300) -> int:
    proc = start(data, out, *flags)
    return proc.wait(timeout=timeout)


def log(out: Path) -> str:
    return out.with_suffix(".log").read_text(encoding="utf-8", errors="replace")


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Poll until ``path`` exists; fail if the run ends or the time runs out first."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"the run ended (code {proc.returncode}) before {path} appeared"
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout} s"
        time.sleep(0.005)


def weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(out / "checkpoint.safetensors")


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    different = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"
