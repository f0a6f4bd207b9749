"""The core functions of benchmarks/sampling.py and benchmarks/ablation.py, at tiny sizes (no numbers asserted
about speed or quality: those are measured, not tested)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from benchmark_scripts import load_benchmark
from pipeline_cases import SIZE, tiny_pipeline

from fluxflow.datasets.shapes import write_shapes_dataset

ablation = load_benchmark("ablation")
sampling = load_benchmark("sampling")


# ------------------------------------------------------------------------------------------------ PSNR / SSIM

def test_identical_images_have_ssim_one_and_infinite_psnr():
    x = torch.rand(2, 3, 16, 16)
    assert torch.allclose(ablation.ssim(x, x), torch.ones(2, dtype=torch.float64), atol=1e-12)
    assert torch.isinf(ablation.psnr(x, x)).all()


def test_psnr_of_a_known_noisy_pair():
    x = torch.full((1, 3, 16, 16), 0.5, dtype=torch.float64)
    sign = torch.ones(16, 16, dtype=torch.float64)
    sign[::2, 1::2] = sign[1::2, ::2] = -1  # checkerboard: |error| 0.1 everywhere, MSE 0.01
    y = x + 0.1 * sign
    assert ablation.psnr(y, x).item() == pytest.approx(20.0, abs=1e-9)
    assert ablation.psnr(y * 255, x * 255, data_range=255.0).item() == pytest.approx(20.0, abs=1e-9)


def test_ssim_of_flat_images_is_the_luminance_term():
    """Flat images have zero variances, so SSIM = (2ab + C1) / (a^2 + b^2 + C1), C1 = (0.01)^2."""
    a, b = 0.5, 0.7
    x, y = (torch.full((1, 1, 11, 11), v, dtype=torch.float64) for v in (a, b))
    c1 = 0.01**2
    assert ablation.ssim(x, y).item() == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-12)


def test_ssim_matches_the_formula_at_one_window():
    """An 11x11 image has one valid window: SSIM is the paper's formula with Gaussian-weighted statistics."""
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(1, 1, 11, 11, generator=gen, dtype=torch.float64)
    y = (x + 0.2 * torch.rand(1, 1, 11, 11, generator=gen, dtype=torch.float64)).clamp(0, 1)
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    xs, ys = x[0, 0].numpy(), y[0, 0].numpy()
    mx, my = (w * xs).sum(), (w * ys).sum()
    vx, vy, cov = (w * (xs - mx) ** 2).sum(), (w * (ys - my) ** 2).sum(), (w * (xs - mx) * (ys - my)).sum()
    c1, c2 = 0.01**2, 0.03**2
    expected = (2 * mx * my + c1) * (2 * cov + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    assert ablation.ssim(x, y).item() == pytest.approx(expected, rel=1e-10)
    assert 0 < expected < 1


def test_ssim_drops_with_noise():
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    noisy = [(x + s * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
             for s in (0.02, 0.1, 0.3)]
    values = [ablation.ssim(n, x).item() for n in noisy]
    assert values[0] > values[1] > values[2]


# ------------------------------------------------------------------------------------------------ model sizes

def test_match_widths_gives_parameter_counts_within_tolerance():
    target = ablation.vae_params("bezier", (8, 16, 32))
    for act in ("silu", "gelu"):
        widths, params = ablation.match_widths(act, target)
        assert params == ablation.vae_params(act, widths)
        assert abs(params / target - 1) <= 0.05
        assert all(w % 8 == 0 for w in widths) and list(widths) == sorted(widths)


def test_match_widths_refuses_an_impossible_tolerance():
    with pytest.raises(ValueError, match="within"):
        ablation.match_widths("gelu", ablation.vae_params("bezier", (8, 16, 32)), tol=1e-6)


def test_bezier_vae_is_larger_at_equal_widths():
    """The presets keep block_out_channels for every activation; each Bezier gate adds a 1x1 conv C -> 5C."""
    assert ablation.vae_params("bezier", (8, 16, 32)) > ablation.vae_params("gelu", (8, 16, 32))
    assert ablation.vae_params("gelu", (8, 16, 32)) == ablation.vae_params("silu", (8, 16, 32))


# ------------------------------------------------------------------------------------------ training + eval

def test_train_and_evaluate_a_tiny_vae(tmp_path):
    data = write_shapes_dataset(tmp_path / "data", 16, size=32, seed=0, n_test=4, second_object_prob=0.0)
    run = ablation.train_vae(tmp_path / "run", data / "train", "gelu", (4, 8, 8), steps=2, seed=0, batch=4,
                             checkpoints=2)
    assert sorted(run["train_s"]) == [1, 2] and 0 < run["train_s"][1] < run["train_s"][2]
    images = ablation.load_images(data / "test")
    quality = ablation.evaluate_run(tmp_path / "run", images, "cpu", torch.float32)
    assert sorted(quality) == [1, 2]
    for p, s in quality.values():
        assert math.isfinite(p) and -1 <= s <= 1
    again = ablation.train_vae(tmp_path / "run", data / "train", "gelu", (4, 8, 8), steps=2, seed=0, batch=4)
    assert again == run  # a finished run is reused, not retrained


# ------------------------------------------------------------------------------------------------ sampling

@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline()


@pytest.mark.parametrize("guidance", [1.0, 4.0])
def test_bare_loop_and_pipeline_give_the_same_images(pipe, guidance):
    prompts = ["a red circle in the center on a white background",
               "a blue star at the top on a gray background"]
    cond, uncond = sampling.text_embeddings(pipe, prompts)
    bare = sampling.bare_sample(pipe.transformer, pipe.vae, pipe.scheduler.config, cond, uncond, 3, guidance,
                                sampling.generators(7, 2, "cpu"))
    common = {"height": SIZE, "width": SIZE, "num_inference_steps": 3, "guidance_scale": guidance,
              "output_type": "pt"}
    piped = pipe(**sampling.pipeline_kwargs(cond, uncond), generator=sampling.generators(7, 2, "cpu"),
                 **common).images
    from_strings = pipe(prompts, generator=sampling.generators(7, 2, "cpu"), **common).images
    assert bare.shape == (2, 3, SIZE, SIZE)
    assert torch.allclose(bare, piped, atol=1e-6) and torch.allclose(bare, from_strings, atol=1e-6)
    other_seed = sampling.bare_sample(pipe.transformer, pipe.vae, pipe.scheduler.config, cond, uncond, 3,
                                      guidance, sampling.generators(8, 2, "cpu"))
    assert not torch.allclose(bare, other_seed, atol=1e-3)


def test_regenerated_held_out_prompts_are_the_written_test_split(tmp_path):
    data = write_shapes_dataset(tmp_path / "run" / "data", 6, size=16, seed=0, n_test=3,
                                second_object_prob=0.0)
    pipeline = tmp_path / "run" / "flow" / "pipeline"
    written, source = sampling.held_out_prompts(pipeline, 6, 3)
    assert source.endswith("metadata.jsonl") and len(written) == 3
    regenerated, source = sampling.held_out_prompts(tmp_path / "elsewhere" / "flow" / "pipeline", 6, 3)
    assert source.startswith("regenerated") and regenerated == written
    assert (data / "test").is_dir()
