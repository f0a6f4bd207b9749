"""Two real gloo DDP processes on the CPU (torchrun + ACCELERATE_USE_CPU=1): sync, LR curve, resume."""

import os
import socket
import subprocess
import sys

import pytest

from fluxflow.datasets.shapes import write_shapes_dataset
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


def _probe(processes: int, data, out, batch: int, *extra: str) -> list[list[list[str]]]:
    """Each process's batches (their captions) in one epoch of the data path (shard_probe.py)."""
    import json
    from pathlib import Path

    probe = Path(__file__).parent / "shard_probe.py"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_addr",
                "127.0.0.1", "--master_port", str(_free_port()), str(probe), str(data), str(out), str(batch), *extra]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(launcher, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(processes)]


def test_two_processes_read_distinct_samples_and_each_step_the_same_ones_as_one_process(shapes, tmp_path):
    """One epoch: no sample twice, none missing; and optimizer step k on 2 processes x batch 2 covers the same 4
    images as step k on 1 process x batch 4 (the same data order whatever the process count)."""
    (tmp_path / "two").mkdir(), (tmp_path / "one").mkdir()
    rank0, rank1 = _probe(2, shapes, tmp_path / "two", 2)
    (one,) = _probe(1, shapes, tmp_path / "one", 4)
    seen = [c for rank in (rank0, rank1) for b in rank for c in b]
    assert len(seen) == len(set(seen)) == 16
    assert [sorted(a + b) for a, b in zip(rank0, rank1)] == [sorted(b) for b in one]


def test_a_stream_is_split_by_node_without_loss(shapes, tmp_path):
    """A stream is split by node (by files); Accelerate must not cut each shard again (it would drop half)."""
    rank0, rank1 = _probe(2, shapes, tmp_path, 2, "stream")
    seen = [c for rank in (rank0, rank1) for b in rank for c in b]
    assert len(seen) == len(set(seen)) == 16


def test_state_saved_by_one_process_resumes_on_two(shapes, tmp_path):
    _run(1, shapes, tmp_path / "one", *GAN, "--batch_size", "4", "--checkpoint_save_interval", "2")
    state = tmp_path / "one" / "state" / "checkpoint-2"
    log = _run(2, shapes, tmp_path / "two", *GAN, "--batch_size", "2", "--resume_from_checkpoint", str(state))
    assert "parameters identical on all 2 processes" in log
    assert [r["step"] for r in read_metrics(tmp_path / "two" / "logs" / "metrics.jsonl")] == [3, 4]


def test_a_stream_trains_on_two_processes(shapes, tmp_path):
    """16 streamed images, 2 processes x batch 2: an epoch of a process's 8-image shard is 4 steps; the stream
    then starts again (epoch 1) on both processes together."""
    log = _run(2, shapes, tmp_path / "two", "--train_vae", "--dataset_name", "imagefolder", "--streaming",
               "--max_train_steps", "6", "--batch_size", "2", "--shuffle_buffer_size", "4")
    assert "parameters identical on all 2 processes" in log
    rows = read_metrics(tmp_path / "two" / "logs" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6] and [r["epoch"] for r in rows] == [0, 0, 0, 0, 1, 1]


def test_two_processes_build_the_latent_cache_together_and_train_on_it(shapes, tmp_path):
    """Each process encodes its share into its own shards; both then read the whole cache."""
    _run(1, shapes, tmp_path / "vae", "--train_vae", "--max_train_steps", "1", "--batch_size", "4")
    log = _run(2, shapes, tmp_path / "flow", "--train_diff_full", "--model_checkpoint",
               str(tmp_path / "vae" / "checkpoint.safetensors"), "--cache_latents", "--cache_dir",
               str(tmp_path / "cache"), "--max_train_steps", "3", "--batch_size", "2", "--random_flip")
    assert "parameters identical on all 2 processes" in log and "latent cache: built" in log
    (cache,) = (tmp_path / "cache").iterdir()
    assert {p.name.split("-")[1] for p in cache.glob("shard-*.safetensors")} == {"00000", "00001"}
    assert '"samples": 16' in (cache / "manifest.json").read_text()


def test_a_pipeline_file_runs_its_stages_on_two_processes(shapes, tmp_path):
    """Stages under a launcher like single runs: stage 2 starts on both processes from stage 1's weights (the
    Accelerate state of stage 1 is forgotten between them, the process group kept)."""
    import yaml

    pipeline = {"batch_size": 2, "stages": [
        {"name": "vae", "train_vae": True, "transition": {"steps": 2}},
        {"name": "flow", "train_diff_full": True, "gradient_accumulation_steps": 2, "transition": {"steps": 2}}]}
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(pipeline), encoding="utf-8")
    log = _run(2, shapes, tmp_path / "run", "--config", str(path))
    assert log.count("parameters identical on all 2 processes") == 2
    for stage in ("1-vae", "2-flow"):
        rows = read_metrics(tmp_path / "run" / "stages" / stage / "logs" / "metrics.jsonl")
        assert [r["step"] for r in rows] == [1, 2], stage
    assert (tmp_path / "run" / "pipeline" / "model_index.json").is_file()
