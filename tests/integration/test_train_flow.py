"""fluxflow-train stage 2 and joint training with tiny models: samples, EMA, exported pipeline, resume."""

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from resume_check import assert_resume_is_exact
from safetensors.torch import load_file

from fluxflow import FluxFlowPipeline
from fluxflow.cli.train import main
from fluxflow.datasets.shapes import write_shapes_dataset
from fluxflow.training.metrics import read_metrics

CAPTIONS = ["a red circle in the top left on a white background", "a blue square"]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return write_shapes_dataset(tmp_path_factory.mktemp("data") / "shapes", 16, size=32, seed=0) / "train"


@pytest.fixture(scope="module")
def vae_checkpoint(shapes, tmp_path_factory):
    out = tmp_path_factory.mktemp("vae")
    _train(shapes, out, "--train_vae", "--max_train_steps", "2", "--no_samples")
    return out / "checkpoint.safetensors"


def _train(data, out, *flags):
    argv = ["--data_path", str(data), "--img_size", "32", "--model_preset", "tiny", "--batch_size", "4",
            "--workers", "0", "--seed", "5", "--output_path", str(out), "--sample_steps", "2",
            "--sample_captions", *CAPTIONS, *flags]
    assert main(argv) == 0


def _components(path):
    with safe_open(str(path), "pt") as f:
        return json.loads(f.metadata()["fluxflow_components"])


@pytest.mark.parametrize("mode", ["--train_diff_full", "--train_diff"])
def test_flow_modes_sample_export_and_use_ema(shapes, vae_checkpoint, tmp_path, mode):
    _train(shapes, tmp_path, mode, "--model_checkpoint", str(vae_checkpoint), "--max_train_steps", "3",
           "--checkpoint_save_interval", "2", "--use_ema", "--ema_decay", "0.5", "--lr", "1e-3",
           "--sample_sizes", "32", "--log_interval", "1")
    names = {p.name for p in (tmp_path / "samples").iterdir()}
    assert names == {f"samples_epoch_{s:04d}_caption_{i}-0032.webp" for s in (0, 2, 3) for i in range(2)} | \
        {f"flow_grid_{s:04d}.webp" for s in (0, 2, 3)}
    assert set(_components(tmp_path / "checkpoint.safetensors")) == {"vae", "transformer", "transformer_ema",
                                                                    "text_encoder"}
    weights = load_file(tmp_path / "checkpoint.safetensors")
    raw = {k[len("transformer."):]: v for k, v in weights.items() if k.startswith("transformer.")}
    ema = {k[len("transformer_ema."):]: v for k, v in weights.items() if k.startswith("transformer_ema.")}
    assert any(not torch.equal(raw[k], ema[k]) for k in raw)
    pipe = FluxFlowPipeline.from_pretrained(tmp_path / "pipeline")
    exported = pipe.transformer.state_dict()
    assert all(torch.equal(exported[k], ema[k]) for k in ema)  # the pipeline carries the EMA weights
    assert (tmp_path / "pipeline" / "README.md").exists()
    assert pipe.scheduler.config.shift == 1.0
    image = pipe(CAPTIONS[0], num_inference_steps=2, height=32, width=32, output_type="np").images
    assert image.shape == (1, 32, 32, 3) and np.isfinite(image).all()
    rows = read_metrics(tmp_path / "logs" / "metrics.jsonl")
    assert all("loss/flow" in r and "lr/flow" in r for r in rows)
    if mode == "--train_diff":
        assert all(r["flow/mean_sigma"] <= 0.3 for r in rows)


def test_joint_training_trains_vae_and_flow(shapes, tmp_path):
    _train(shapes, tmp_path, "--train_vae", "--gan_training", "--train_diff_full", "--train_spade",
           "--max_train_steps", "2", "--checkpoint_save_interval", "2", "--log_interval", "1")
    rows = read_metrics(tmp_path / "logs" / "metrics.jsonl")
    assert all({"loss/flow", "loss/vae", "loss/discriminator"} <= set(r) for r in rows)
    names = {p.name for p in (tmp_path / "samples").iterdir()}
    assert "samples_epoch_0002_caption_1-0032.webp" in names
    assert any(n.startswith("vae_epoch_0002-") and n.endswith("-ctx.webp") for n in names)
    assert {"vae_grid_0002.webp", "flow_grid_0002.webp"} <= names
    assert set(_components(tmp_path / "checkpoint.safetensors")) == {"vae", "discriminator", "transformer",
                                                                    "text_encoder"}
    single = FluxFlowPipeline.from_pretrained(tmp_path / "checkpoint.safetensors")
    assert single.vae.config.scaling_factor != 1.0  # latent statistics measured after VAE training


def test_flow_resume_with_ema_gives_identical_weights(shapes, vae_checkpoint, tmp_path):
    flags = ["--train_diff_full", "--model_checkpoint", str(vae_checkpoint), "--max_train_steps", "6",
             "--checkpoint_save_interval", "3", "--no_samples", "--use_ema", "--ema_decay", "0.9",
             "--train_text_encoder"]
    assert_resume_is_exact(_train, shapes, tmp_path, flags)


def test_flow_training_without_a_vae_is_refused(shapes, tmp_path):
    assert main(["--data_path", str(shapes), "--train_diff_full", "--output_path", str(tmp_path)]) == 2


def test_cached_text_embeddings_train_like_the_encoder(shapes, vae_checkpoint, tmp_path):
    flags = ["--train_diff_full", "--model_checkpoint", str(vae_checkpoint), "--max_train_steps", "3",
             "--no_samples", "--cfg_dropout_prob", "0.3"]
    _train(shapes, tmp_path / "plain", *flags)
    _train(shapes, tmp_path / "cached", *flags, "--cache_text_embeddings")
    a = load_file(tmp_path / "plain" / "checkpoint.safetensors")
    b = load_file(tmp_path / "cached" / "checkpoint.safetensors")
    for key in a:  # the same math; batch-of-one encoding may differ from batched in the last float bits
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)
