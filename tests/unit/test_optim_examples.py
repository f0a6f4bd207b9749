"""Every example of the scheduler reference, run from examples/configs/, against torch built by hand.

Each expected curve is a torch scheduler constructed here from the numbers printed in the reference, so a
wrong default, a mis-derived "auto" value, a dropped key or an extra scheduler step makes a test fail.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.optim import lr_scheduler as lrs

from fluxflow.training.optim import build_optimizers_and_schedulers, load_optim_sched_config

CONFIGS = Path(__file__).resolve().parents[2] / "examples" / "configs"
REL = 1e-12


class TinyVAE(nn.Module):
    """Shaped like FluxFlowVAE for the optimizer's purposes: a compressor, an expander, one own parameter."""

    def __init__(self) -> None:
        super().__init__()
        self.compressor = nn.Sequential(nn.Conv2d(3, 8, 3), nn.GroupNorm(2, 8), nn.SiLU(), nn.Conv2d(8, 4, 1))
        self.expander = nn.Sequential(nn.Conv2d(4, 8, 1), nn.GroupNorm(2, 8), nn.SiLU(), nn.Conv2d(8, 3, 3))
        self.latent_scale = nn.Parameter(torch.ones(4))


def components() -> dict[str, nn.Module]:
    return {
        "vae": TinyVAE(),
        "flow": nn.TransformerEncoderLayer(d_model=16, nhead=2, dim_feedforward=32, batch_first=True),
        "text_encoder": nn.Sequential(nn.Embedding(50, 16), nn.Linear(16, 16)),
        "discriminator": nn.Sequential(nn.utils.parametrizations.spectral_norm(nn.Conv2d(3, 8, 4)),
                                       nn.LeakyReLU(0.2), nn.Conv2d(8, 1, 1)),
    }


def metric_at(k: int) -> float:
    """A loss that improves, stalls and oscillates, so that plateau schedulers do reduce."""
    return 1.0 + 0.5 * math.sin(k / 7.0) + 0.1 * math.cos(k / 3.0)


def our_curves(config, n: int, lr: float = 1e-4, plateau: bool = False) -> dict[str, list[float]]:
    built = build_optimizers_and_schedulers(config, components(), n, lr=lr)
    curves = {name: [c.lr] for name, c in built.items()}
    for k in range(n):
        for name, c in built.items():
            assert len({g["lr"] for g in c.optimizer.param_groups}) == 1  # every group on the same curve
            c.step(metric_at(k) if plateau else None)
            curves[name].append(c.lr)
    return curves


def torch_curve(lr: float, n: int, make, plateau: bool = False) -> list[float]:
    """The reference: a plain optimizer with the LR and a scheduler built by ``make(optimizer)``."""
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(2, 2))], lr=lr)
    sched = make(opt)
    out = [opt.param_groups[0]["lr"]]
    for k in range(n):
        sched.step(metric_at(k)) if plateau else sched.step()
        out.append(opt.param_groups[0]["lr"])
    return out


def assert_same_curve(ours: list[float], ref: list[float]) -> None:
    assert len(ours) == len(ref)
    for k, (a, b) in enumerate(zip(ours, ref, strict=True)):
        assert math.isclose(a, b, rel_tol=REL, abs_tol=0.0), f"step {k}: {a!r} != {b!r}"


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
        warnings.filterwarnings("ignore", message="optimizers.flow: Lion with decoupled_weight_decay")
        yield


def cosine(lr, n, factor=0.1, t_max=None):
    return lambda o: lrs.CosineAnnealingLR(o, T_max=t_max or n, eta_min=lr * factor)


N = 3000

# file -> (--lr, steps, {component: (initial lr, reference scheduler factory)})
COMPLETE = {
    "optim_sched_vae_gan.json": (1e-4, N, {"vae": (2e-5, cosine(2e-5, N)),
                                           "discriminator": (2e-5, cosine(2e-5, N))}),
    "optim_sched_flow_lion.json": (1e-4, N, {"flow": (5e-7, cosine(5e-7, N)),
                                             "vae": (5e-7, cosine(5e-7, N))}),
    "optim_sched_joint.json": (1e-4, N, {"flow": (1e-6, cosine(1e-6, N)), "vae": (5e-6, cosine(5e-6, N)),
                                         "text_encoder": (1e-7, cosine(1e-7, N, 0.001)),
                                         "discriminator": (5e-6, cosine(5e-6, N))}),
    "optim_sched_sgd_step.json": (1e-4, 25_000, {"vae": (0.01, lambda o: lrs.StepLR(o, 10_000, 0.5))}),
    "optim_sched_basic_usage.json": (1e-4, N, {"flow": (5e-7, cosine(5e-7, N)),
                                               "vae": (1e-5, cosine(1e-5, N))}),
    # the first example: vae_encoder's own cosine of 100 steps; the rest of the VAE on the default
    # cosine to 10%; flow_processor (= flow) on a linear decay over 1000 steps, then flat.
    "scheduler_basic.yaml": (3e-4, N, {"vae_encoder": (3e-4, cosine(3e-4, N, 0.1, t_max=100)),
                                       "vae": (3e-4, cosine(3e-4, N)),
                                       "flow": (3e-4, lambda o: lrs.LinearLR(o, 1.0, 0.1, 1000))}),
}


@pytest.mark.parametrize("filename", list(COMPLETE))
def test_complete_examples_follow_the_torch_curve(filename):
    lr, n, expected = COMPLETE[filename]
    config = load_optim_sched_config(CONFIGS / filename)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*T_max is 100")
        curves = our_curves(config, n, lr=lr)
    untouched = {"vae", "flow", "text_encoder", "discriminator"} - set(expected)
    # components given but not configured still train, on their defaults; configured ones as written
    assert set(expected) <= set(curves) and untouched <= set(curves)
    for name, (initial, make) in expected.items():
        assert curves[name][0] == initial
        assert_same_curve(curves[name], torch_curve(initial, n, make))


def test_complete_examples_pass_every_optimizer_setting_to_torch():
    built = build_optimizers_and_schedulers(CONFIGS / "optim_sched_joint.json", components(), 100)
    flow, vae, te, disc = (built[n].optimizer for n in ("flow", "vae", "text_encoder", "discriminator"))
    assert type(flow).__name__ == "Lion" and flow.decoupled_wd is True
    assert flow.param_groups[0]["betas"] == (0.9, 0.95) and flow.param_groups[0]["weight_decay"] == 0.01
    assert isinstance(vae, torch.optim.AdamW) and vae.param_groups[0]["betas"] == (0.9, 0.95)
    assert te.param_groups[0]["betas"] == (0.9, 0.99) and te.param_groups[0]["lr"] == 1e-7
    assert disc.param_groups[0]["betas"] == (0.0, 0.9) and disc.param_groups[0]["amsgrad"] is True
    assert disc.param_groups[0]["weight_decay"] == 0.001
    sgd = build_optimizers_and_schedulers(CONFIGS / "optim_sched_sgd_step.json", components(), 100)["vae"]
    group = sgd.optimizer.param_groups[0]
    assert isinstance(sgd.optimizer, torch.optim.SGD)
    assert (group["momentum"], group["nesterov"], group["weight_decay"]) == (0.9, True, 1e-4)


def test_basic_example_splits_the_vae_between_two_optimizers():
    comps = components()
    with pytest.warns(UserWarning, match=r"T_max is 100 but it runs for 3000 steps"):
        built = build_optimizers_and_schedulers(CONFIGS / "scheduler_basic.yaml", comps, N)
    encoder = {id(p) for g in built["vae_encoder"].optimizer.param_groups for p in g["params"]}
    rest = {id(p) for g in built["vae"].optimizer.param_groups for p in g["params"]}
    assert encoder == {id(p) for p in comps["vae"].compressor.parameters()}
    assert rest == {id(p) for p in comps["vae"].expander.parameters()} | {id(comps["vae"].latent_scale)}


# (file, component) -> (reference scheduler factory given the initial lr and the run length, steps, plateau)
LR = 1e-5
SINGLE = {
    ("scheduler_cosine.yaml", "flow"): (lambda n: cosine(LR, n, 0.1), N),
    ("scheduler_cosine.yaml", "vae"): (lambda n: cosine(LR, n, 0.001), N),
    ("scheduler_cosine.yaml", "discriminator"): (lambda n: cosine(LR, n, 0.5), N),
    ("scheduler_linear.yaml", "flow"): (lambda n: lambda o: lrs.LinearLR(o, 0.1, 1.0, 5000), 50_000),
    ("scheduler_linear.yaml", "vae"): (lambda n: lambda o: lrs.LinearLR(o, 1.0, 0.0, 50_000), 50_000),
    ("scheduler_linear.yaml", "discriminator"): (lambda n: lambda o: lrs.LinearLR(o, 1.0, 0.25, n), 50_000),
    ("scheduler_exponential.yaml", "flow"): (lambda n: lambda o: lrs.ExponentialLR(o, 0.9999), 8000),
    ("scheduler_exponential.yaml", "vae"): (lambda n: lambda o: lrs.ExponentialLR(o, 0.999), 8000),
    ("scheduler_exponential.yaml", "discriminator"): (lambda n: lambda o: lrs.ExponentialLR(o, 0.95), 8000),
    ("scheduler_constant.yaml", "flow"): (lambda n: lambda o: lrs.ConstantLR(o, 1.0, n), 12_000),
    ("scheduler_constant.yaml", "vae"): (lambda n: lambda o: lrs.ConstantLR(o, 0.1, 10_000), 12_000),
    ("scheduler_constant.yaml", "discriminator"): (lambda n: lambda o: lrs.ConstantLR(o, 0.01, 1000), 12_000),
    ("scheduler_step.yaml", "flow"): (lambda n: lambda o: lrs.StepLR(o, 10_000, 0.5), 45_000),
    ("scheduler_step.yaml", "vae"): (lambda n: lambda o: lrs.StepLR(o, 5000, 0.1), 45_000),
    ("scheduler_step.yaml", "discriminator"): (lambda n: lambda o: lrs.StepLR(o, 20_000, 0.8), 45_000),
    ("scheduler_plateau.yaml", "flow"): (
        lambda n: lambda o: lrs.ReduceLROnPlateau(o, "min", factor=0.5, patience=10, threshold=1e-4), 400),
    ("scheduler_plateau.yaml", "vae"): (
        lambda n: lambda o: lrs.ReduceLROnPlateau(o, "max", factor=0.1, patience=5, threshold=0.001), 400),
    ("scheduler_plateau.yaml", "discriminator"): (
        lambda n: lambda o: lrs.ReduceLROnPlateau(o, "min", factor=0.75, patience=20, threshold=1e-5), 400),
}


@pytest.mark.parametrize("filename", sorted({f for f, _ in SINGLE}))
def test_each_scheduler_example_follows_the_torch_curve(filename):
    cases = {c: v for (f, c), v in SINGLE.items() if f == filename}
    n = next(iter(cases.values()))[1]
    plateau = "plateau" in filename
    curves = our_curves(CONFIGS / filename, n, lr=LR, plateau=plateau)
    for component, (make, _) in cases.items():
        ref = torch_curve(LR, n, make(n), plateau=plateau)
        assert_same_curve(curves[component], ref)
    if plateau:  # the metric really drove reductions, and differently per example
        ends = [curves[c][-1] for c in cases]
        assert len(set(ends)) == 3 and all(end < LR for end in ends)


def test_chained_example_warms_up_then_follows_a_cosine_to_ten_percent():
    n, warm = 20_000, 1000
    curve = our_curves(CONFIGS / "scheduler_warmup_cosine.yaml", n)["flow"]

    def make(o):
        parts = [lrs.LinearLR(o, 0.01, 1.0, warm), lrs.CosineAnnealingLR(o, T_max=n - warm, eta_min=1e-6)]
        return lrs.SequentialLR(o, parts, milestones=[warm])

    assert_same_curve(curve, torch_curve(1e-5, n, make))
    assert curve[0] == pytest.approx(1e-7, rel=1e-12)
    assert max(curve) == pytest.approx(1e-5, rel=1e-12) and curve.index(max(curve)) == warm
    assert curve[-1] == pytest.approx(1e-6, rel=1e-9)
