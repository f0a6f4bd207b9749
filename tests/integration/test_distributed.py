"""Two real gloo DDP processes on the CPU (torchrun + ACCELERATE_USE_CPU=1): sync, LR curve, resume."""

import os
import socket
import subprocess
import sys

import pytest

from fluxflow.data.shapes import write_shapes_dataset
from fluxflow.training.metrics import read_metrics


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return write_shapes_dataset(tmp_path_factory.mktemp("data") / "shapes", 16, size=32, seed=0) / "train"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(processes: int, data, out, *flags) -> str:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
                "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), "-m", "fluxflow.cli.train"]
    argv = ["--data_path", str(data), "--img_size", "32", "--model_preset", "tiny", "--workers", "0", "--seed", "1",
            "--no_samples", "--log_interval", "1", "--output_path", str(out), *flags]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(launcher + argv, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stderr


GAN = ["--train_vae", "--gan_training", "--max_train_steps", "4"]


def test_two_processes_stay_in_sync_with_the_one_process_lr_curve(shapes, tmp_path):
    log = _run(2, shapes, tmp_path / "two", *GAN, "--batch_size", "2")
    assert "parameters identical on all 2 processes" in log
    _run(1, shapes, tmp_path / "one", *GAN, "--batch_size", "4")
    two = read_metrics(tmp_path / "two" / "logs" / "metrics.jsonl")
    one = read_metrics(tmp_path / "one" / "logs" / "metrics.jsonl")
    assert [r["step"] for r in two] == [1, 2, 3, 4]
    for key in ("lr/vae", "lr/discriminator"):
        assert [r[key] for r in two] == [r[key] for r in one]


def test_state_saved_by_two_processes_resumes_on_one(shapes, tmp_path):
    _run(2, shapes, tmp_path / "two", *GAN, "--batch_size", "2", "--checkpoint_save_interval", "2")
    state = tmp_path / "two" / "state" / "checkpoint-2"
    _run(1, shapes, tmp_path / "one", *GAN, "--batch_size", "4", "--resume_from_checkpoint", str(state))
    assert [r["step"] for r in read_metrics(tmp_path / "one" / "logs" / "metrics.jsonl")] == [3, 4]


def test_each_process_reads_its_own_samples(shapes, tmp_path):
    """One epoch of the data path under two processes: no sample twice, none missing."""
    import json
    from pathlib import Path

    probe = Path(__file__).parent / "shard_probe.py"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
                "127.0.0.1", "--master_port", str(_free_port()), str(probe), str(shapes), str(tmp_path)]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(launcher, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    ranks = [{tuple(s) for s in rank} for rank in seen]
    assert len(seen[0]) == len(seen[1]) == 8 and len(ranks[0]) == len(ranks[1]) == 8
    assert not ranks[0] & ranks[1] and len(ranks[0] | ranks[1]) == 16


def test_state_saved_by_one_process_resumes_on_two(shapes, tmp_path):
    _run(1, shapes, tmp_path / "one", *GAN, "--batch_size", "4", "--checkpoint_save_interval", "2")
    state = tmp_path / "one" / "state" / "checkpoint-2"
    log = _run(2, shapes, tmp_path / "two", *GAN, "--batch_size", "2", "--resume_from_checkpoint", str(state))
    assert "parameters identical on all 2 processes" in log
    assert [r["step"] for r in read_metrics(tmp_path / "two" / "logs" / "metrics.jsonl")] == [3, 4]
