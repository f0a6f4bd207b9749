"""--weighting_scheme: diffusers' SD3 noise-level densities and loss weightings in the flow objective."""

import math

import pytest
import torch
import torch.nn.functional as F
from diffusers.training_utils import compute_density_for_timestep_sampling, compute_loss_weighting_for_sd3

from fluxflow.training.config import TrainConfig
from fluxflow.training.flow_objective import FlowObjective, shift_sigmas, weighted_mse

SCHEMES = ("logit_normal", "mode", "cosmap", "sigma_sqrt", "none")


def _objective(**kw) -> FlowObjective:
    return FlowObjective(TrainConfig(train_diff_full=not kw.get("train_diff"), **kw))


def _old_sigmas(cfg: TrainConfig, batch: int, generator: torch.Generator) -> torch.Tensor:
    """The noise levels as FlowObjective.sample_sigmas drew them before --weighting_scheme existed."""
    u = torch.randn(batch, generator=generator, device=generator.device) * cfg.logit_std + cfg.logit_mean
    s = shift_sigmas(torch.sigmoid(u), cfg.timestep_shift)
    return s * cfg.diff_max_sigma if cfg.train_diff else s


@pytest.mark.parametrize("seed", [0, 1, 7, 1234])
@pytest.mark.parametrize("settings", [{}, {"logit_mean": 0.5, "logit_std": 1.3}, {"timestep_shift": 3.0},
                                      {"train_diff": True, "diff_max_sigma": 0.3, "logit_mean": -0.2}])
def test_default_sigmas_are_bit_identical_to_the_old_formula(seed, settings):
    """The same generator draws the same levels as before, bit for bit, and leaves it in the same state."""
    objective = _objective(**settings)
    new_gen, old_gen = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
    for batch in (1, 16, 33):
        assert torch.equal(objective.sample_sigmas(batch, new_gen), _old_sigmas(objective.cfg, batch, old_gen))
    assert torch.equal(new_gen.get_state(), old_gen.get_state())


def test_default_logit_normal_is_diffusers_distribution():
    """At mean 0, std 1 diffusers' torch.normal draw and ours agree bit for bit (elsewhere by an ulp)."""
    ours = _objective().sample_sigmas(1000, torch.Generator().manual_seed(5))
    theirs = compute_density_for_timestep_sampling("logit_normal", 1000, 0.0, 1.0, None,
                                                   generator=torch.Generator().manual_seed(5))
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("train_diff", [False, True])
def test_each_scheme_gives_levels_in_the_trained_range(scheme, train_diff):
    top = 0.3 if train_diff else 1.0
    s = _objective(weighting_scheme=scheme, train_diff=train_diff, diff_max_sigma=0.3).sample_sigmas(
        20000, torch.Generator().manual_seed(0))
    assert s.shape == (20000,) and s.dtype == torch.float32
    assert s.min() > 0 and s.max() <= top and torch.isfinite(s).all()
    assert s.max() > 0.9 * top and s.min() < 0.1 * top  # the whole range is trained


@pytest.mark.parametrize("scheme", ["cosmap", "sigma_sqrt", "none"])
def test_uniform_schemes_draw_diffusers_density_reflected_into_0_1(scheme):
    """The uniform densities are diffusers' draw u, used as 1 - u (never a level of exactly 0)."""
    s = _objective(weighting_scheme=scheme).sample_sigmas(500, torch.Generator().manual_seed(3))
    u = compute_density_for_timestep_sampling(scheme, 500, 0.0, 1.0, 1.29, generator=torch.Generator().manual_seed(3))
    assert torch.equal(s, 1 - u)
    assert abs(float(s.mean()) - 0.5) < 0.05


def test_mode_draws_diffusers_density_and_mode_scale_moves_it():
    cfg_draw = _objective(weighting_scheme="mode", mode_scale=1.29).sample_sigmas(
        500, torch.Generator().manual_seed(2))
    theirs = compute_density_for_timestep_sampling("mode", 500, 0.0, 1.0, 1.29, generator=torch.Generator().manual_seed(2))
    assert torch.equal(cfg_draw, theirs)
    draws = {scale: _objective(weighting_scheme="mode", mode_scale=scale).sample_sigmas(
        20000, torch.Generator().manual_seed(0)) for scale in (0.0, 1.29)}
    middle = {scale: float(((s > 0.25) & (s < 0.75)).float().mean()) for scale, s in draws.items()}
    assert abs(middle[0.0] - 0.5) < 0.02  # scale 0: uniform
    assert middle[1.29] > middle[0.0] + 0.1  # a positive scale concentrates the levels in the middle
    assert not torch.equal(draws[0.0], draws[1.29])


@pytest.mark.parametrize("scale", [-1.0, 1.8, 5.0])
def test_mode_scale_outside_the_monotonic_range_is_refused(scale):
    from fluxflow.training.config import TrainConfig

    problems = TrainConfig(train_diff_full=True, weighting_scheme="mode", mode_scale=scale)._mode_problems()
    assert any(p.startswith(f"--mode_scale {scale}: --weighting_scheme mode needs a scale in") for p in problems)
    assert not any("--mode_scale" in p for p in  # only the mode scheme reads it
                   TrainConfig(train_diff_full=True, weighting_scheme="none", mode_scale=scale)._mode_problems())


@pytest.mark.parametrize("scheme", ["cosmap", "sigma_sqrt"])
def test_weighted_loss_is_diffusers_weight_times_per_sample_mse(scheme):
    gen = torch.Generator().manual_seed(0)
    pred, target = torch.randn(8, 4, 6, 6, generator=gen), torch.randn(8, 4, 6, 6, generator=gen)
    sigmas = torch.rand(8, generator=gen) * 0.9 + 0.05
    weights = compute_loss_weighting_for_sd3(scheme, sigmas)
    expected = (weights * ((pred - target) ** 2).mean(dim=(1, 2, 3))).mean()
    torch.testing.assert_close(weighted_mse(pred, target, scheme, sigmas), expected)
    if scheme == "sigma_sqrt":
        torch.testing.assert_close(weights, sigmas ** -2)
    else:
        torch.testing.assert_close(weights, 2 / (math.pi * (1 - 2 * sigmas + 2 * sigmas ** 2)))


@pytest.mark.parametrize("scheme", ["logit_normal", "mode", "none"])
def test_unweighted_schemes_loss_is_plain_mse(scheme):
    """Weights all 1: the objective's loss is exactly F.mse_loss of the velocity (the loss of earlier runs)."""
    x0 = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    seen = {}

    def model(x_t, embeds, pooled, timestep, mask, return_dict=False):
        seen["v"] = torch.tanh(x_t) * 0.5
        return (seen["v"],)

    objective = _objective(weighting_scheme=scheme)
    loss, logs = objective.loss(model, x0, (None, None, None), torch.Generator().manual_seed(4))
    gen = torch.Generator().manual_seed(4)
    noise = torch.randn(x0.shape, generator=gen)
    objective.sample_sigmas(4, gen)
    assert torch.equal(loss, F.mse_loss(seen["v"], noise - x0))
    assert torch.equal(compute_loss_weighting_for_sd3(scheme, torch.rand(4)), torch.ones(4))


def test_weighted_scheme_changes_the_loss_by_its_weights():
    """sigma_sqrt weighs low noise levels up: the same prediction error costs more than unweighted."""
    x0 = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    losses = {}
    for scheme in ("none", "sigma_sqrt"):
        loss, _ = _objective(weighting_scheme=scheme).loss(lambda x_t, *a, **k: (torch.zeros_like(x_t),), x0,
                                                           (None, None, None), torch.Generator().manual_seed(4))
        losses[scheme] = float(loss)
    assert losses["sigma_sqrt"] > losses["none"]  # the same draws (uniform density), weights >= 1
