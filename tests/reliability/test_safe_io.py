"""Safe files: atomic writes, checkpoints that cannot run code, no token in any output, disk trouble caught."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors import safe_open

import fluxflow.pipelines.single_file as single_file
from fluxflow.atomic import atomic_path, recover_folder, replace_folder
from fluxflow.cli.train import main
from fluxflow.datasets.shapes import write_shapes_dataset
from fluxflow.training import checkpoint
from fluxflow.training.checkpoint import RUN_STATE_FILE, state_folders

SRC = Path(__file__).parents[2] / "src" / "fluxflow"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_shapes_dataset(tmp_path_factory.mktemp("safe") / "shapes", 8, size=32, seed=0) / "train"


def _train(data, out, *flags) -> int:
    return main(["--data_path", str(data), "--output_path", str(out), "--img_size", "32", "--model_preset", "tiny",
                 "--batch_size", "4", "--workers", "0", "--seed", "3", "--no_samples", "--train_vae", *flags])


# ------------------------------------------------------------------ atomic writes
def test_a_failed_file_write_leaves_the_old_file(tmp_path):
    target = tmp_path / "f.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_a_failed_folder_write_leaves_the_old_folder_and_a_kill_between_renames_is_repaired(tmp_path):
    folder = tmp_path / "pipeline"
    replace_folder(folder, lambda tmp: (tmp.mkdir(), (tmp / "a").write_text("v1")))

    def dies(tmp):
        tmp.mkdir()
        (tmp / "a").write_text("v2 half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError):
        replace_folder(folder, dies)
    assert (folder / "a").read_text() == "v1" and not (tmp_path / ".pipeline.tmp").exists()
    os.replace(folder, tmp_path / ".pipeline.old")  # killed after the first of the two renames
    recover_folder(folder)
    assert (folder / "a").read_text() == "v1"


# ------------------------------------------------------------------ loading never runs code
class _Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_a_state_file_with_code_in_it_is_refused_and_not_run(data, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _train(data, tmp_path / "run", "--max_train_steps", "2", "--checkpoint_save_interval", "1") == 0
    torch.save({"progress": _Payload()}, tmp_path / "run" / "state" / "checkpoint-2" / RUN_STATE_FILE)
    assert _train(data, tmp_path / "run", "--max_train_steps", "3", "--resume_from_checkpoint", "latest") == 2
    assert "refused, it holds more than tensors and plain values" in capsys.readouterr().err
    assert not (tmp_path / "PWNED").exists()


def test_every_torch_load_in_the_package_is_weights_only():
    calls = [(p, line) for p in SRC.rglob("*.py") for line in p.read_text().splitlines() if "torch.load(" in line]
    assert calls and all("weights_only=True" in line for _, line in calls), calls


# ------------------------------------------------------------------ secrets
def test_a_hub_token_appears_in_no_output(data, tmp_path, monkeypatch, caplog, capsys):
    token = "hf_" + "Zq3" * 12
    monkeypatch.setenv("HF_TOKEN", token)
    out = tmp_path / "run"
    assert _train(data, out, "--max_train_steps", "1", "--sample_captions", f"pasted {token}") == 0
    assert '"pasted ***"' in (out / "logs" / "train_config.json").read_text()
    written = [p.read_bytes() for p in out.rglob("*") if p.is_file()]
    assert not [b for b in written if token.encode() in b]
    assert token not in caplog.text and token not in capsys.readouterr().err


def test_the_public_config_masks_tokens_and_url_passwords():
    from fluxflow.training.config import TrainConfig

    cfg = TrainConfig(data_path="https://me:s3cret@host/data", sample_captions=["hf_" + "a" * 30])
    public = cfg.public_dict()
    assert public["data_path"] == "https://***@host/data" and public["sample_captions"] == ["***"]


# ------------------------------------------------------------------ disk trouble
def test_too_little_free_space_is_an_error_before_training(data, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda path: SimpleNamespace(free=2**20))
    assert _train(data, tmp_path / "run", "--max_train_steps", "1") == 2
    err = capsys.readouterr().err
    assert re.search(r"--output_path .*: 1 MiB free, but two checkpoints of this run need about \d+ MiB", err)
    assert not (tmp_path / "run" / "state").exists()


def test_disk_full_at_a_save_keeps_the_previous_checkpoint(data, tmp_path, monkeypatch, capsys):
    real = single_file.save_file

    def fills_the_disk(tensors, path, metadata=None):
        if '"global_step": 3' in (metadata or {}).get("fluxflow_extra", ""):
            Path(path).write_bytes(b"\0" * 100)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(tensors, path, metadata=metadata)

    monkeypatch.setattr(single_file, "save_file", fills_the_disk)
    out = tmp_path / "run"
    assert _train(data, out, "--max_train_steps", "5", "--checkpoint_save_interval", "1") == 1
    err = capsys.readouterr().err
    assert "could not save the checkpoint of step 3" in err and "the disk is full" in err
    assert "checkpoint-2 is kept" in err and state_folders(out)[-1].name == "checkpoint-2"
    with safe_open(str(out / "checkpoint.safetensors"), "pt") as f:
        assert '"global_step": 2' in f.metadata()["fluxflow_extra"]
    assert not list(out.glob(".*.tmp"))


# ------------------------------------------------------------------ an earlier run is never overwritten
def test_a_new_run_does_not_overwrite_an_earlier_runs_checkpoints(data, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(data, out, "--max_train_steps", "1") == 0
    assert _train(data, out, "--max_train_steps", "1") == 2
    assert "holds the checkpoints of an earlier run (up to checkpoint-1)" in capsys.readouterr().err
    assert _train(data, out, "--max_train_steps", "1", "--model_checkpoint", str(out / "checkpoint.safetensors"),
                  "--preserve_lr") == 0
    assert len(list(out.glob("state.before-*/checkpoint-1"))) == 1 and state_folders(out)[-1].name == "checkpoint-1"
    assert len(list(out.glob("state.before-*/metrics.jsonl"))) == 1, "the earlier run's metrics are kept too"


def test_model_weights_load_only_from_safetensors(tmp_path):
    """A folder whose weights exist only as a pickled .bin is refused, not unpickled."""
    from fluxflow.models import FluxFlowVAE

    vae = FluxFlowVAE.from_preset("tiny")
    vae.save_pretrained(tmp_path / "vae", safe_serialization=False)
    assert (tmp_path / "vae" / "diffusion_pytorch_model.bin").exists()
    with pytest.raises(OSError, match="safetensors"):
        FluxFlowVAE.from_pretrained(tmp_path / "vae")
