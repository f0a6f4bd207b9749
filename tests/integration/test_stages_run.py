"""A pipeline file run end to end: stages one after another in one folder, each from the previous one's weights,
and the kill/resume matrix (in stage 1, at the boundary, in stage 2) against an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch
import yaml
from resume_check import sigterm_in
from safetensors.torch import load_file

from fluxflow.cli.train import main
from fluxflow.datasets.shapes import write_shapes_dataset
from fluxflow.training.metrics import read_metrics

PIPELINE = {
    "img_size": 32, "model_preset": "tiny", "batch_size": 4, "workers": 0, "seed": 3, "log_interval": 1,
    "no_samples": True,
    "stages": [
        {"name": "vae", "train_vae": True, "checkpoint_save_interval": 2, "transition": {"steps": 4}},
        {"name": "flow", "train_diff_full": True, "checkpoint_save_interval": 2, "use_ema": True,
         "ema_decay": 0.5, "transition": {"steps": 4}},
    ],
}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return write_shapes_dataset(tmp_path_factory.mktemp("data") / "shapes", 16, size=32, seed=0) / "train"


@pytest.fixture(scope="module")
def pipeline_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("pipeline") / "pipeline.yaml"
    path.write_text(yaml.safe_dump(PIPELINE), encoding="utf-8")
    return path


def _run(file, data, out, *flags) -> int:
    return main(["--config", str(file), "--data_path", str(data), "--output_path", str(out), *flags])


@pytest.fixture(scope="module")
def straight(shapes, pipeline_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight") / "run"
    assert _run(pipeline_file, shapes, out) == 0
    return out


def _weights(path):
    return load_file(path)


def _assert_same(a, b):
    a, b = _weights(a), _weights(b)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def sigterm_between_stages(monkeypatch) -> None:
    """SIGTERM once stage 1 is finished and published, before stage 2 starts."""
    from fluxflow.training import staged

    publish, sent = staged._publish, []

    def signalled(root, stage):
        publish(root, stage)
        if stage.index == 1 and not sent:
            sent.append(stage)
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(staged, "_publish", signalled)


@pytest.mark.parametrize("stage, step", [("1-vae", 2), ("1-vae", 4), ("between", None), ("2-flow", 2)],
                         ids=["in-stage-1", "after-stage-1s-last-step", "between-stages", "in-stage-2"])
def test_a_stop_anywhere_resumes_to_the_same_weights(shapes, pipeline_file, straight, tmp_path, monkeypatch,
                                                     stage, step):
    out = tmp_path / "run"
    if stage == "between":
        sigterm_between_stages(monkeypatch)
    else:
        sigterm_in(monkeypatch, stage, step)
    assert _run(pipeline_file, shapes, out) == 0
    stages = out / "stages"
    if stage == "1-vae":  # a stopped stage is not finished: the next one does not start
        assert not (stages / "1-vae" / "logs" / "run_end.json").exists()
        assert not (stages / "2-flow").exists()
    if stage != "2-flow":
        assert not (stages / "2-flow" / "state").exists()
    assert not (out / "pipeline").exists()
    assert _run(pipeline_file, shapes, out, "--resume_from_checkpoint", "latest") == 0
    _assert_same(out / "checkpoint.safetensors", straight / "checkpoint.safetensors")
    for folder in ("1-vae", "2-flow"):  # each stage trained once: one metrics line per step
        rows = read_metrics(stages / folder / "logs" / "metrics.jsonl")
        assert [r["step"] for r in rows] == [1, 2, 3, 4], folder


def test_a_finished_pipeline_is_not_run_again_by_mistake(straight, shapes, pipeline_file, capsys):
    assert _run(pipeline_file, shapes, straight) == 2
    assert "holds an earlier pipeline run (stages 1-vae, 2-flow); continue it with --resume_from_checkpoint" \
        in capsys.readouterr().err
    trained = {f: (straight / "stages" / f / "logs" / "metrics.jsonl").read_text() for f in ("1-vae", "2-flow")}
    states = sorted(p.name for f in trained for p in (straight / "stages" / f / "state").iterdir())
    assert _run(pipeline_file, shapes, straight, "--resume_from_checkpoint", "latest") == 0  # all done: nothing
    for f, metrics in trained.items():  # no stage trained again: no new metrics lines, no new states
        assert (straight / "stages" / f / "logs" / "metrics.jsonl").read_text() == metrics
    assert sorted(p.name for f in trained for p in (straight / "stages" / f / "state").iterdir()) == states


def test_the_earlier_releases_pipeline_defects_do_not_occur(shapes, tmp_path, monkeypatch):
    """Its pipeline mode left the models unprepared by Accelerate, crashed on a step without a scheduler,
    ignored a step's batch_size and workers, and never used cfg_dropout_prob (unknown freeze names: their
    error is tested in tests/unit/test_stages.py)."""
    from accelerate import Accelerator

    prepared = []
    prepare = Accelerator.prepare

    def spy(self, *objects, **kw):
        prepared.extend(type(o).__name__ for o in objects)
        return prepare(self, *objects, **kw)

    monkeypatch.setattr(Accelerator, "prepare", spy)
    pipeline = {"img_size": 32, "model_preset": "tiny", "seed": 3, "log_interval": 1, "no_samples": True,
                "stages": [  # no optimizers: or schedulers: anywhere
                    {"name": "vae", "train_vae": True, "batch_size": 4, "workers": 0, "transition": {"epochs": 1}},
                    {"name": "flow", "train_diff_full": True, "batch_size": 8, "workers": 1,
                     "cfg_dropout_prob": 1.0, "transition": {"epochs": 1}}]}
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(pipeline), encoding="utf-8")
    assert _run(path, shapes, tmp_path / "run") == 0
    stages = tmp_path / "run" / "stages"
    assert "VAEForward" in prepared and "FluxFlowTransformer" in prepared  # each stage's trained models
    steps = {f: json.loads((stages / f / "logs" / "run_end.json").read_text())["step"] for f in ("1-vae", "2-flow")}
    assert steps == {"1-vae": 4, "2-flow": 2}  # 16 images: batches of 4, then of 8
    config = json.loads((stages / "2-flow" / "logs" / "train_config.json").read_text())
    assert (config["batch_size"], config["workers"], config["cfg_dropout_prob"]) == (8, 1, 1.0)
    rows = read_metrics(stages / "2-flow" / "logs" / "metrics.jsonl")
    assert [r["flow/caption_dropout"] for r in rows] == [1.0, 1.0]  # every caption dropped, as configured


def test_the_report_of_a_pipeline_run_is_a_page_per_stage(straight, capsys):
    from fluxflow.cli.report import main as report

    assert report([str(straight)]) == 0
    assert capsys.readouterr().out.count("wrote ") == 2
    for folder in ("1-vae", "2-flow"):
        page = (straight / "stages" / folder / "report.html").read_text(encoding="utf-8")
        assert "loss/vae" in page if folder == "1-vae" else "loss/flow" in page


def test_a_stage_continuing_the_flow_processor_continues_its_ema(straight, shapes):
    """A stage (or run) from weights whose checkpoint holds an EMA starts its own average there, not at the
    raw weights."""
    from accelerate import Accelerator

    from fluxflow.training.components import build_components
    from fluxflow.training.config import TrainConfig

    checkpoint = straight / "stages" / "2-flow" / "checkpoint.safetensors"
    cfg = TrainConfig(data_path=str(shapes), img_size=32, model_preset="tiny", train_diff_full=True, use_ema=True,
                      model_checkpoint=str(checkpoint))
    models = build_components(cfg)
    models.prepare(Accelerator(cpu=True), use_ema=True)
    saved = _weights(checkpoint)
    names = [name for name, _ in models.unwrapped("transformer").named_parameters()]
    shadow = dict(zip(names, models.ema.shadow_params))
    assert all(torch.equal(shadow[n], saved[f"transformer_ema.{n}"]) for n in names)
    assert any(not torch.equal(shadow[n], saved[f"transformer.{n}"]) for n in names)  # ema_decay 0.5: apart
