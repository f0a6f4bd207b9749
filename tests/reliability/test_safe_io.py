"""Safe files: atomic writes, checkpoints that cannot run code, no token in any output, disk trouble caught."""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path
from types import SimpleNamespace

import accelerate.utils.other as accelerate_io
import pytest
import torch
from safetensors import SafetensorError, safe_open

import fluxflow.pipelines.single_file as single_file
from fluxflow.atomic import MARK, atomic_path, recover_folder, replace_folder, temp_name, write_text_atomically
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
    assert (folder / "a").read_text() == "v1" and not (tmp_path / temp_name("pipeline")).exists()
    os.replace(folder, tmp_path / temp_name("pipeline", "old"))  # killed after the first of the two renames
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
    assert "could not save the checkpoint of step 3" in err and "no space left on device" in err
    assert "checkpoint-2 is kept" in err and state_folders(out)[-1].name == "checkpoint-2"
    with safe_open(str(out / "checkpoint.safetensors"), "pt") as f:
        assert '"global_step": 2' in f.metadata()["fluxflow_extra"]
    assert not list(out.glob(".*.tmp"))


class _FullDisk:
    """A disk that fills up at step 3's save: ``save`` writes half a file and raises ``error`` as the library
    does (no errno); from then on ``shutil.disk_usage`` reports almost nothing free."""

    def __init__(self, monkeypatch, error):
        self.error, self.full = error, False
        real = checkpoint.shutil.disk_usage
        monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda path: SimpleNamespace(
            total=2**40, used=2**40, free=4096) if self.full else real(path))

    def save(self, real, at_step_3):
        def save(obj, path, *args, **kwargs):
            if not at_step_3(str(path), kwargs.get("metadata") or {}):
                return real(obj, path, *args, **kwargs)
            Path(path).write_bytes(b"\0" * 1000)
            self.full = True
            raise self.error
        return save


_STATE_3 = temp_name("checkpoint-3")
FULL_DISK = {  # what the library raises, the function it raises from, and how to tell step 3's save
    "weights, safetensors": (SafetensorError("Error while serializing: iostream error"), single_file, "save_file",
                             lambda path, meta: '"global_step": 3' in meta.get("fluxflow_extra", "")),
    "state, safetensors": (SafetensorError("Error while serializing: iostream error"), accelerate_io,
                           "safe_save_file", lambda path, meta: _STATE_3 in path),
    "state, torch.save": (RuntimeError("basic_ios::clear: iostream error"), torch, "save",
                          lambda path, meta: _STATE_3 in path and path.endswith(RUN_STATE_FILE)),
}


@pytest.mark.parametrize("case", list(FULL_DISK))
def test_a_full_disk_hidden_by_the_library_is_named_and_keeps_the_previous_checkpoint(data, tmp_path, monkeypatch,
                                                                                      capsys, case):
    error, module, name, at_step_3 = FULL_DISK[case]
    disk = _FullDisk(monkeypatch, error)
    monkeypatch.setattr(module, name, disk.save(getattr(module, name), at_step_3))
    out = tmp_path / "run"
    assert _train(data, out, "--max_train_steps", "5", "--checkpoint_save_interval", "1") == 1
    err = capsys.readouterr().err
    line = [x[x.index("fluxflow-train:"):] for x in err.splitlines() if "fluxflow-train:" in x]
    assert len(line) == 1 and "Traceback" not in err, err
    assert "could not save the checkpoint of step 3" in line[0] and "no space left on device" in line[0]
    folder = out if case.startswith("weights") else out / "state"
    assert f"the disk holding {folder} is full" in line[0] and "checkpoint-2 is kept" in line[0]
    assert state_folders(out)[-1].name == "checkpoint-2"
    assert not [p for p in out.rglob("*") if MARK in p.name], "the partial save was removed"


def test_a_write_error_with_space_left_is_not_called_a_full_disk(data, tmp_path, monkeypatch, capsys):
    real = accelerate_io.safe_save_file

    def fails(obj, path, *args, **kwargs):
        if _STATE_3 in str(path):
            raise SafetensorError("Error while serializing: iostream error")
        return real(obj, path, *args, **kwargs)

    monkeypatch.setattr(accelerate_io, "safe_save_file", fails)
    out = tmp_path / "run"
    assert _train(data, out, "--max_train_steps", "4", "--checkpoint_save_interval", "1") == 1
    err = capsys.readouterr().err
    assert "SafetensorError: Error while serializing: iostream error" in err and "no space left" not in err
    assert state_folders(out)[-1].name == "checkpoint-2" and not (out / "state" / _STATE_3).exists()


def test_a_full_disk_while_exporting_a_model_folder_keeps_the_previous_one(tmp_path, monkeypatch):
    class Model:  # save_pretrained as diffusers does it: the folder, then safetensors' file
        def __init__(self, fails):
            self.fails = fails

        def save_pretrained(self, folder):
            Path(folder).mkdir()
            (Path(folder) / "config.json").write_text("new" if not self.fails else "")
            if self.fails:
                (Path(folder) / "diffusion_pytorch_model.safetensors").write_bytes(b"half")
                monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda path: SimpleNamespace(free=0))
                raise SafetensorError("Error while serializing: iostream error")

    checkpoint.save_model_folder(Model(fails=False), tmp_path / "vae")
    with pytest.raises(checkpoint.CheckpointError) as err:
        checkpoint.save_model_folder(Model(fails=True), tmp_path / "vae")
    assert f"could not save the exported model as {tmp_path / 'vae'}: no space left on device" in str(err.value)
    assert (tmp_path / "vae" / "config.json").read_text() == "new" and os.listdir(tmp_path) == ["vae"]


# ------------------------------------------------------------------ leftovers of kills
def _killed_file_write(path: Path) -> Path:
    """The temporary file a kill leaves when it strikes while ``path`` is being written."""
    tmp = atomic_path(path).__enter__()  # never exited, as under SIGKILL
    tmp.write_bytes(b"half")
    return tmp


def test_remove_leftovers_removes_every_temporary_of_fluxflow_and_nothing_else(tmp_path):
    out = tmp_path / "run"
    subs = ["", "state", "samples", "logs", "logs/graphs", "vae", "pipeline"]
    left = [_killed_file_write(out / sub / "file.bin") for sub in subs]
    left.append(out / "state" / temp_name("checkpoint-3"))  # a state folder half written
    left.append(out / temp_name("pipeline"))  # an exported pipeline half written
    for folder in left[-2:]:
        folder.mkdir(parents=True)
        (folder / "model.safetensors").write_bytes(b"half")
    (out / temp_name("vae", "old")).mkdir()  # killed after both renames, before the old copy went
    left.append(out / temp_name("vae", "old"))
    (out / "vae" / "config.json").write_text("new")
    (out / "state" / "checkpoint-2").mkdir()
    (out / "state" / "checkpoint-2" / RUN_STATE_FILE).write_text("complete")
    (out / temp_name("samples", "old")).mkdir()  # killed between the two renames: put back, not deleted
    (out / temp_name("samples", "old") / "a.webp").write_text("kept")
    (out / "samples").rename(out / "samples.moved")  # (the folder it replaced is gone)
    user = [out / "notes.tmp", out / ".notes.tmp", out / f"notes.{MARK}.tmp", out / f".{MARK}.tmp",
            out / ".vae.tmp", out / ".pipeline.old", out / f".x.{MARK}-Zz.tmp", out / "state" / "mine.old"]
    for path in user:
        path.write_text("the user's")

    removed = checkpoint.remove_leftovers(out)

    assert sorted(removed) == sorted(p for p in left if "samples" not in str(p))
    assert not [p for p in left if p.exists() and "samples" not in str(p)]
    assert all(p.read_text() == "the user's" for p in user)
    assert (out / "samples" / "a.webp").read_text() == "kept" and not (out / temp_name("samples", "old")).exists()
    assert (out / "vae" / "config.json").read_text() == "new"
    assert (out / "state" / "checkpoint-2" / RUN_STATE_FILE).read_text() == "complete"


# ------------------------------------------------------------------ permissions
@pytest.fixture(params=[0o022, 0o002])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_written_files_get_the_modes_open_and_mkdir_give(tmp_path, umask):
    file = write_text_atomically(tmp_path / "a.json", "{}")

    def write(tmp):
        tmp.mkdir()
        (tmp / "sub").mkdir()
        (tmp / "sub" / "w.bin").write_bytes(b"w")
        os.chmod(tmp / "sub" / "w.bin", 0o600)  # as a library writing through its own temporary file leaves it

    folder = replace_folder(tmp_path / "pipeline", write)
    weights = single_file.save_single_file(tmp_path / "c.safetensors", {"disc": _tiny_discriminator()})
    assert [_mode(p) for p in (file, folder / "sub" / "w.bin", weights)] == [0o666 & ~umask] * 3
    assert [_mode(p) for p in (folder, folder / "sub")] == [0o777 & ~umask] * 2


def test_every_file_of_a_run_gets_the_umasks_modes(data, tmp_path, umask):
    out = tmp_path / "run"
    assert _train(data, out, "--max_train_steps", "2", "--checkpoint_save_interval", "1") == 0
    wrong = [(str(p.relative_to(out)), oct(_mode(p))) for p in out.rglob("*")
             if _mode(p) != (0o777 if p.is_dir() else 0o666) & ~umask]
    assert not wrong


def _tiny_discriminator():
    from fluxflow.models import PatchDiscriminator

    return PatchDiscriminator.from_preset("tiny")


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
