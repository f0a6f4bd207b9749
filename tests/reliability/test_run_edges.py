"""The edges of a run, outside the training steps: start-up, the end (statistics, final save, exports) and
what a resumed run reads back. Each run here is the real command line, in-process."""

from __future__ import annotations

import json
import os
import signal

import pytest
from PIL import Image
from safetensors.torch import load_file

from resume_check import sigterm_after_step

from fluxflow.cli.train import main
from fluxflow.datasets.shapes import write_shapes_dataset
from fluxflow.training import run as run_module
from fluxflow.training.checkpoint import state_folders
from fluxflow.training.metrics import read_metrics


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return write_shapes_dataset(tmp_path_factory.mktemp("data") / "shapes", 8, size=32, seed=0) / "train"


def _argv(data, out, *flags):
    return ["--data_path", str(data), "--img_size", "32", "--model_preset", "tiny", "--batch_size", "2",
            "--workers", "0", "--seed", "3", "--no_samples", "--train_vae", "--output_path", str(out), *flags]


def _same_weights(a, b) -> bool:
    wa, wb = load_file(a / "checkpoint.safetensors"), load_file(b / "checkpoint.safetensors")
    return wa.keys() == wb.keys() and all(wa[k].equal(wb[k]) for k in wa)


def _latent_statistics(out) -> tuple[float, float]:
    config = json.loads((out / "vae" / "config.json").read_text())
    return config["shift_factor"], config["scaling_factor"]


def test_aspect_bucket_runs_finish_and_resume(tmp_path):
    """Batches of different bucket shapes reach the latent statistics at the end: the run exports its VAE."""
    data = tmp_path / "data"
    data.mkdir()
    lines = []
    for i, (w, h) in enumerate([(64, 32), (32, 64), (48, 48), (64, 32), (32, 64), (48, 48)]):
        Image.new("RGB", (w, h), (40 * i, 90, 160)).save(data / f"{i}.png")
        lines.append(f"{i}.png\tpicture {i}")
    (data / "captions.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    flags = ["--captions_file", str(data / "captions.txt"), "--aspect_buckets", "--bucket_step", "8",
             "--max_train_steps", "4"]
    assert main(_argv(data, tmp_path / "out", *flags)) == 0
    assert (tmp_path / "out" / "vae" / "config.json").exists()
    first = _latent_statistics(tmp_path / "out")
    assert main(_argv(data, tmp_path / "out", *flags, "--resume_from_checkpoint", "latest")) == 0
    assert _latent_statistics(tmp_path / "out") == first


def test_resuming_after_the_final_save_exports_the_same_statistics(shapes, tmp_path):
    assert main(_argv(shapes, tmp_path, "--max_train_steps", "2")) == 0
    first, weights = _latent_statistics(tmp_path), load_file(tmp_path / "checkpoint.safetensors")
    assert main(_argv(shapes, tmp_path, "--max_train_steps", "2", "--resume_from_checkpoint", "latest")) == 0
    assert _latent_statistics(tmp_path) == first
    again = load_file(tmp_path / "checkpoint.safetensors")
    assert all(again[k].equal(weights[k]) for k in weights)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_at_start_up_exits_zero_without_a_traceback(shapes, tmp_path, monkeypatch, caplog, sig):
    build = run_module.build_components

    def signalled(cfg):
        os.kill(os.getpid(), sig)  # while the models are being built
        return build(cfg)

    monkeypatch.setattr(run_module, "build_components", signalled)
    assert main(_argv(shapes, tmp_path, "--max_train_steps", "2")) == 0
    assert f"{signal.Signals(sig).name}: stopped before the first step; nothing to save" in caplog.text
    assert not state_folders(tmp_path)


def test_a_signal_during_the_final_save_keeps_it_and_resume_writes_the_exports(shapes, tmp_path, monkeypatch,
                                                                               caplog):
    assert main(_argv(shapes, tmp_path / "straight", "--max_train_steps", "3")) == 0
    save = run_module.Run.checkpoint

    def signalled(self):
        if self.progress.global_step == self.total_steps:
            os.kill(os.getpid(), signal.SIGTERM)  # during the final checkpoint
        save(self)

    monkeypatch.setattr(run_module.Run, "checkpoint", signalled)
    out = tmp_path / "stopped"
    assert main(_argv(shapes, out, "--max_train_steps", "3")) == 0
    assert "SIGTERM: stopped after the final checkpoint of step 3" in caplog.text
    assert state_folders(out)[-1].name == "checkpoint-3" and not (out / "vae").exists()
    monkeypatch.setattr(run_module.Run, "checkpoint", save)
    assert main(_argv(shapes, out, "--max_train_steps", "3", "--resume_from_checkpoint", "latest")) == 0
    assert _same_weights(out, tmp_path / "straight")
    assert _latent_statistics(out) == _latent_statistics(tmp_path / "straight")


def test_metrics_after_a_stop_and_resume_equal_an_uninterrupted_run(shapes, tmp_path, monkeypatch):
    """The stop writes no extra row, and the resumed run averages the same steps (the window is saved)."""
    flags = ["--max_train_steps", "6", "--log_interval", "4", "--checkpoint_save_interval", "1"]
    assert main(_argv(shapes, tmp_path / "straight", *flags)) == 0
    sigterm_after_step(monkeypatch, 2)
    out = tmp_path / "stopped"
    assert main(_argv(shapes, out, *flags)) == 0
    assert state_folders(out)[-1].name == "checkpoint-3"  # the step in progress when it came
    monkeypatch.undo()
    assert main(_argv(shapes, out, *flags, "--resume_from_checkpoint", "latest")) == 0
    straight, resumed = (read_metrics(p / "logs" / "metrics.jsonl") for p in (tmp_path / "straight", out))
    assert [r["step"] for r in resumed] == [r["step"] for r in straight] == [4, 6]
    for a, b in zip(straight, resumed):
        assert {k: v for k, v in a.items() if k.startswith(("loss/", "lr/"))} == \
               {k: v for k, v in b.items() if k.startswith(("loss/", "lr/"))}


def test_preserve_lr_in_a_finished_runs_folder_sets_all_its_results_aside(shapes, tmp_path, caplog):
    """Without --model_checkpoint the new run starts from new weights: the finished run's checkpoint, exports,
    learning rates and logs move aside whole, none of them overwritten."""
    assert main(_argv(shapes, tmp_path, "--max_train_steps", "2")) == 0
    kept = {name: (tmp_path / name).read_bytes()
            for name in ("checkpoint.safetensors", "lr_sav.json", "vae/config.json", "logs/train_config.json")}
    assert main(_argv(shapes, tmp_path, "--max_train_steps", "1", "--preserve_lr", "--seed", "4")) == 0
    assert "--preserve_lr without --model_checkpoint" in caplog.text
    (aside,) = tmp_path.glob("state.before-*")
    assert {name: (aside / name).read_bytes() for name in kept} == kept
    assert (aside / "checkpoint-2").is_dir() and (aside / "metrics.jsonl").exists()
    assert (tmp_path / "checkpoint.safetensors").read_bytes() != kept["checkpoint.safetensors"]


def test_the_log_reads_one_line_per_event(shapes, tmp_path):
    """A real process's output: log lines never glued onto the progress bar, one line per checkpoint (not
    Accelerate's line per file), no `datasets` bar for a local folder, the offline tokenizer notice once."""
    from runs import log, run

    out = tmp_path / "run"
    assert run(shapes, out, "--train_vae", "--max_train_steps", "3", "--checkpoint_save_interval", "1") == 0
    text = log(out)
    segments = [part for line in text.split("\n") for part in line.split("\r")]
    logged = [part for part in segments if " fluxflow.train: " in part]
    assert logged and all(part[:2].isdigit() and part[2] == ":" for part in logged), logged  # each at a line start
    assert sum("checkpoint saved" in part for part in logged) == 3
    for noise in ("Model weights saved in", "Optimizer state saved in", "Random states saved in",
                  "Saving current state", "Generating train split", "Downloading data", "Resolving data files"):
        assert noise not in text, noise
    notices = [part for part in logged if "not reachable" in part]
    assert len(notices) == 1 and " INFO " in notices[0]


def test_a_second_ctrl_c_stops_at_once_with_one_line(shapes, tmp_path, monkeypatch, capsys):
    build = run_module.build_components

    def interrupted(cfg):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)  # the second: at once
        return build(cfg)

    monkeypatch.setattr(run_module, "build_components", interrupted)
    assert main(_argv(shapes, tmp_path, "--max_train_steps", "2")) == 130
    err = capsys.readouterr().err
    assert "fluxflow-train: interrupted" in err and "Traceback" not in err
