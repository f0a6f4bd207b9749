"""Watching a run, the whole way: a shapes run with ``--validation_split 0.1 --report_to tensorboard
--push_to_hub --hub_push_checkpoints`` (the stand-in Hub of tests/hub_server.py) gives validation curves,
grids in TensorBoard, a report page that renders in Chromium, and a pushed model that loads by repo id.

``fluxflow-train`` runs in a subprocess: huggingface_hub reads HF_ENDPOINT when it is imported."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest
from browser import assert_rendered, chromium, needs_chromium
from hub_server import hub_env, serve_hub
from huggingface_hub import ModelCard
from test_trackers import _events

from fluxflow.datasets.shapes import write_shapes_dataset
from fluxflow.report import write_report
from fluxflow.training.metrics import read_metrics
from fluxflow.training.tokenizer import bundled_text_model

TOKEN = "hf_fluxflowWatchedRunToken0123"
REPO = "fake-user/shapes-run"  # the stand-in's user / the output folder's name
CAPTIONS = ["a red circle in the top left on a white background", "a blue star on the right on a black background"]

LOAD = """
import json, sys
from pathlib import Path
import numpy as np, torch
from fluxflow import FluxFlowPipeline
pipe = FluxFlowPipeline.from_pretrained(sys.argv[1])
pipe.set_progress_bar_config(disable=True)
image = pipe(sys.argv[2], num_inference_steps=2, height=32, width=32, output_type="np",
             generator=torch.Generator().manual_seed(0)).images
files = [p.name for p in Path(sys.argv[3]).rglob("*")]
print(json.dumps({"shape": list(image.shape), "finite": bool(np.isfinite(image).all()), "files": files}))
"""


@pytest.fixture(scope="module")
def watched(tmp_path_factory):
    root = tmp_path_factory.mktemp("watched")
    data = write_shapes_dataset(root / "data", 20, size=32, seed=0) / "train"
    out = root / "shapes-run"
    flags = ["--data_path", str(data), "--img_size", "32", "--model_preset", "tiny", "--batch_size", "4",
             "--workers", "0", "--seed", "3", "--output_path", str(out), "--tokenizer_name", bundled_text_model(),
             "--train_vae", "--train_diff_full", "--max_train_steps", "4", "--checkpoint_save_interval", "2",
             "--log_interval", "1", "--sample_steps", "2", "--sample_captions", *CAPTIONS,
             "--validation_split", "0.1", "--validation_judge_prompts", "2", "--report_to", "tensorboard",
             "--push_to_hub", "--hub_token", TOKEN, "--hub_push_checkpoints"]
    with serve_hub(root / "hub") as url:
        env = hub_env(url, root / "hf_home")
        train = subprocess.run([sys.executable, "-m", "fluxflow.cli.train", *flags], env=env, capture_output=True,
                               text=True, timeout=600)
        assert train.returncode == 0, train.stderr[-4000:]
        load = subprocess.run([sys.executable, "-c", LOAD, REPO, CAPTIONS[0], str(root / "hf_home")], env=env,
                              capture_output=True, text=True, timeout=300)
        assert load.returncode == 0, load.stderr[-4000:]
        auth = dict(url.auth)
    return SimpleNamespace(out=out, repo=root / "hub" / "models" / REPO, log=train.stdout + train.stderr,
                           loaded=json.loads(load.stdout.strip().splitlines()[-1]), auth=auth,
                           report=write_report(out))


def test_validation_curves_and_grids_in_tensorboard(watched):
    rows = [r for r in read_metrics(watched.out / "logs" / "metrics.jsonl") if "val/seconds" in r]
    assert [r["step"] for r in rows] == [2, 4]  # every checkpoint (the default interval) and the end
    assert {"val/vae/psnr", "val/vae/ms_ssim", "val/flow/loss", "val/judge/accuracy"} <= set(rows[-1])
    scalars, images = _events(watched.out / "logs" / "fluxflow")
    assert scalars["val/flow/loss"] == [2, 4] and scalars["val/vae/psnr"] == [2, 4]
    assert {tag: [e.step for e in events] for tag, events in images.items()} == {
        "samples/vae": [0, 2, 4], "samples/flow": [0, 2, 4]}
    assert "validation: 2 held-out samples" in watched.log  # 10% of 20


def test_the_pushed_model_loads_by_repo_id_with_its_card(watched):
    assert watched.loaded["shape"] == [1, 32, 32, 3] and watched.loaded["finite"]
    assert "checkpoint.safetensors" not in watched.loaded["files"]  # checkpoints/ is not downloaded with it
    card = ModelCard.load(watched.repo / "README.md")
    assert card.data.library_name == "diffusers" and card.data.license and "fluxflow" in card.data.tags
    assert f'FluxFlowPipeline.from_pretrained("{REPO}")' in card.text
    assert (watched.repo / "samples.webp").is_file() and "![samples](./samples.webp)" in card.text
    assert (watched.repo / "checkpoints" / "checkpoint.safetensors").is_file()  # --hub_push_checkpoints
    assert (watched.out / "pipeline" / "README.md").read_text() == (watched.repo / "README.md").read_text()


def test_the_token_is_sent_to_the_hub_and_written_nowhere(watched):
    assert any(f"Bearer {TOKEN}" in (headers or "") for sent in watched.auth.values() for headers in sent)
    assert TOKEN not in watched.log
    leaked = [p for p in watched.out.rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]
    assert not leaked
    assert json.loads((watched.out / "logs" / "train_config.json").read_text())["hub_token"] == "***"


@pytest.mark.browser
@needs_chromium
def test_the_report_page_renders_in_chromium(watched, tmp_path):
    shot = tmp_path / "shot.png"
    body = assert_rendered(chromium(watched.report.as_uri(), tmp_path / "profile", f"--screenshot={shot}",
                                    "--window-size=1200,1600"))
    drawn = {name for chart in body.find_all("figure", "chart") for name in chart.attrs["data-series"].split(",")}
    assert {"loss/vae", "loss/flow", "val/flow/loss", "val/vae/psnr", "val/judge/accuracy"} <= drawn
    for grid in body.find_all("div", "grid"):
        (slider,) = grid.find_all("input", "grid-slider")
        assert slider.attrs["max"] == "2"  # steps 0, 2 and 4
    assert "Model card" in "".join(h.text for h in body.find_all("h2"))
    assert shot.stat().st_size > 10_000
