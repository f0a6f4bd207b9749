"""Building optimizers and schedulers: the reference's worked claims, defaults, auto values, chains,
components and sub-components, weight-decay groups, Lion's decoupled weight decay."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn
from torch.optim import lr_scheduler as lrs

from fluxflow.training.optim import (
    ConfigError,
    build_optimizer,
    build_optimizers_and_schedulers,
    build_scheduler,
    lr_curves,
)


class TinyVAE(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.compressor = nn.Sequential(nn.Conv2d(3, 8, 3), nn.GroupNorm(2, 8), nn.Conv2d(8, 4, 1))
        self.expander = nn.Sequential(nn.Conv2d(4, 8, 1), nn.GroupNorm(2, 8), nn.Conv2d(8, 3, 3))
        self.latent_scale = nn.Parameter(torch.ones(4))


def flow_model() -> nn.Module:
    return nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16), nn.Linear(16, 8))


def param_ids(optimizer: torch.optim.Optimizer) -> list[int]:
    return [id(p) for g in optimizer.param_groups for p in g["params"]]


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
        yield


def curve(cfg: dict, n: int, lr: float = 1e-5) -> list[float]:
    return lr_curves({"schedulers": {"vae": cfg}, "optimizers": {"vae": {"lr": lr}}}, n)["vae"]


# ------------------------------------------------------------------------------- the reference's claims


@pytest.mark.parametrize("gamma, about", [(0.9999, 7000), (0.999, 700), (0.95, 14)])
def test_exponential_half_life_matches_the_reference(gamma, about):
    lrs_ = curve({"type": "ExponentialLR", "gamma": gamma}, 8000)
    halved = next(k for k, v in enumerate(lrs_) if v <= lrs_[0] / 2)
    assert abs(halved - about) <= 0.02 * about  # 6932, 693, 14
    assert lrs_[halved - 1] > lrs_[0] / 2


@pytest.mark.parametrize("factor, end", [(0.1, 1e-6), (0.001, 1e-8), (0.5, 5e-6)])
def test_cosine_ends_at_eta_min_factor_of_the_initial_lr(factor, end):
    lrs_ = curve({"type": "CosineAnnealingLR", "eta_min_factor": factor}, 5000)
    assert lrs_[0] == 1e-5
    assert lrs_[-1] == pytest.approx(end, rel=1e-9)
    assert all(a >= b for a, b in zip(lrs_, lrs_[1:], strict=False))  # smooth decay, never back up
    assert lrs_[2500] == pytest.approx(end + (1e-5 - end) / 2, rel=1e-9)  # cosine: half-way at mid-run


def test_linear_warmup_decay_and_partial_decay_claims():
    warm = curve({"type": "LinearLR", "start_factor": 0.1, "end_factor": 1.0, "total_iters": 5000}, 6000)
    assert warm[0] == pytest.approx(1e-6) and warm[2500] == pytest.approx(5.5e-6)
    assert warm[5000] == pytest.approx(1e-5) and warm[6000] == pytest.approx(1e-5)
    decay = curve({"type": "LinearLR", "start_factor": 1.0, "end_factor": 0.0, "total_iters": 50_000}, 50_000)
    assert decay[25_000] == pytest.approx(5e-6) and decay[-1] == 0.0
    partial = curve({"type": "LinearLR", "start_factor": 1.0, "end_factor": 0.25}, 4000)  # auto total_iters
    assert partial[2000] == pytest.approx(0.625e-5) and partial[-1] == pytest.approx(2.5e-6)


def test_constant_factor_applies_for_total_iters_then_jumps_back():
    lrs_ = curve({"type": "ConstantLR", "factor": 0.1, "total_iters": 10_000}, 12_000)
    assert lrs_[0] == pytest.approx(1e-6) and lrs_[9999] == pytest.approx(1e-6)
    assert lrs_[10_000] == pytest.approx(1e-5, rel=1e-12)
    auto = curve({"type": "ConstantLR", "factor": 0.5}, 100)  # auto: the whole run
    assert auto[99] == pytest.approx(5e-6) and auto[100] == pytest.approx(1e-5, rel=1e-12)


def test_step_lr_staircase_and_auto_step_size():
    lrs_ = curve({"type": "StepLR", "step_size": 10_000, "gamma": 0.5}, 30_000)
    assert lrs_[9999] == 1e-5 and lrs_[10_000] == pytest.approx(5e-6)
    assert lrs_[20_000] == pytest.approx(2.5e-6)
    auto = curve({"type": "StepLR"}, 3000)  # three stages: step_size 1000, default gamma 0.1
    assert [auto[0], auto[999]] == [1e-5, 1e-5]
    assert auto[1000] == pytest.approx(1e-6) and auto[2999] == pytest.approx(1e-7)


def _plateau(losses: list[float], **cfg) -> list[float]:
    built = build_optimizers_and_schedulers(
        {"optimizers": {"vae": {"lr": 1.0}}, "schedulers": {"vae": {"type": "ReduceLROnPlateau", **cfg}}},
        {"vae": nn.Linear(2, 2)}, 1000)["vae"]
    out = []
    for loss in losses:
        built.step(loss)
        out.append(built.lr)
    return out


def test_plateau_halves_after_patience_steps_without_threshold_improvement():
    cfg = {"mode": "min", "factor": 0.5, "patience": 10, "threshold": 1e-4}
    tiny_gains = [1.0 - 1e-6 * k for k in range(30)]  # improves, but by less than the threshold
    lrs_ = _plateau(tiny_gains, **cfg)
    assert lrs_[10] == 1.0 and lrs_[11] == 0.5  # 11th step without a real improvement
    real_gains = [1.0 * (1 - 1e-3) ** k for k in range(30)]
    assert _plateau(real_gains, **cfg)[-1] == 1.0
    rising = [float(k) for k in range(30)]  # mode max: a rising metric is progress
    assert _plateau(rising, mode="max", factor=0.1, patience=5, threshold=0.001)[-1] == 1.0
    assert _plateau(rising, mode="min", factor=0.1, patience=5, threshold=0.001)[6] == pytest.approx(0.1)


# -------------------------------------------------------------------------------------------- defaults


def test_components_without_config_get_documented_defaults():
    comps = {"flow": flow_model(), "vae": TinyVAE(), "text_encoder": nn.Linear(4, 4),
             "discriminator": nn.Conv2d(3, 1, 3)}
    built = build_optimizers_and_schedulers(None, comps, 1000, lr=2e-4)
    flow, vae, te, disc = (built[n].optimizer for n in ("flow", "vae", "text_encoder", "discriminator"))
    assert type(flow).__name__ == "Lion" and flow.decoupled_wd is False
    assert flow.defaults["betas"] == (0.9, 0.95) and flow.param_groups[0]["weight_decay"] == 0.01
    assert isinstance(vae, torch.optim.AdamW) and vae.defaults["betas"] == (0.9, 0.95)
    assert te.defaults["lr"] == pytest.approx(2e-5) and te.defaults["betas"] == (0.9, 0.99)
    assert disc.defaults["betas"] == (0.0, 0.9) and disc.defaults["amsgrad"] is True
    assert disc.defaults["weight_decay"] == 0.001
    for name, end in [("flow", 0.1), ("vae", 0.1), ("text_encoder", 0.001), ("discriminator", 0.1)]:
        sched = built[name].scheduler
        assert isinstance(sched, lrs.CosineAnnealingLR) and sched.T_max == 1000
        assert sched.eta_min == pytest.approx(end * built[name].optimizer.defaults["lr"])


def test_entry_without_lr_takes_the_cli_lr_and_keeps_component_defaults_of_its_type():
    cfg = {"optimizers": {"discriminator": {"weight_decay": 0.0}, "vae": {"type": "SGD", "momentum": 0.5}}}
    comps = {"discriminator": nn.Linear(2, 2), "vae": TinyVAE()}
    built = build_optimizers_and_schedulers(cfg, comps, 10, lr=3e-3)
    disc = built["discriminator"].optimizer
    assert disc.defaults["lr"] == 3e-3 and disc.defaults["betas"] == (0.0, 0.9) and disc.defaults["amsgrad"]
    assert disc.defaults["weight_decay"] == 0.0
    sgd = built["vae"].optimizer  # another type: the AdamW defaults (betas, eps) do not leak into SGD
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["momentum"] == 0.5 and sgd.defaults["lr"] == 3e-3


def test_scheduler_defaults_are_the_reference_ones():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(2, 2))], lr=1.0)
    lin = build_scheduler(opt, {"type": "LinearLR"}, 500)
    assert (lin.start_factor, lin.end_factor, lin.total_iters) == (1.0, 0.1, 500)
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(2, 2))], lr=1.0)
    exp = build_scheduler(opt, {"type": "ExponentialLR"}, 500)
    exp.step()
    assert exp.gamma == 0.95 and opt.param_groups[0]["lr"] == 0.95  # not the old 0.1-per-step default
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(2, 2))], lr=1.0)
    plat = build_scheduler(opt, {"type": "ReduceLROnPlateau"}, 500)
    assert (plat.mode, plat.factor, plat.patience, plat.threshold) == ("min", 0.1, 10, 1e-4)
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(2, 2))], lr=1.0)
    const = build_scheduler(opt, {"type": "ConstantLR"}, 500)
    assert (const.factor, const.total_iters) == (1.0, 500)


# ---------------------------------------------------------------------------------------------- chains


def test_three_scheduler_chain_matches_a_hand_built_sequential_lr():
    chain = [{"type": "ConstantLR", "factor": 0.5, "total_iters": 100},
             {"type": "ExponentialLR", "gamma": 0.99, "total_iters": 200},
             {"type": "CosineAnnealingLR", "eta_min_factor": 0.2}]
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(2, 2))], lr=1.0)
    ref = lrs.SequentialLR(opt, [lrs.ConstantLR(opt, 0.5, 100), lrs.ExponentialLR(opt, 0.99),
                                 lrs.CosineAnnealingLR(opt, T_max=700, eta_min=0.2)], milestones=[100, 300])
    expected = [opt.param_groups[0]["lr"]]
    for _ in range(1000):
        ref.step()
        expected.append(opt.param_groups[0]["lr"])
    ours = curve(chain, 1000, lr=1.0)
    assert ours == pytest.approx(expected, rel=1e-12, abs=0)
    assert ours[99] == 0.5 and ours[100] == 1.0 and ours[-1] == pytest.approx(0.2, rel=1e-9)


def test_single_entry_list_is_the_plain_scheduler_and_long_chains_warn():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(2, 2))], lr=1.0)
    assert isinstance(build_scheduler(opt, [{"type": "StepLR"}], 30), lrs.StepLR)
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(2, 2))], lr=1.0)
    with pytest.warns(UserWarning, match="the last scheduler never runs"):
        build_scheduler(opt, [{"type": "LinearLR", "total_iters": 50}, {"type": "ExponentialLR"}], 40)


# ------------------------------------------------------------------------------ components and splits


def test_sub_components_take_their_parameters_out_of_the_vae():
    vae = TinyVAE()
    cfg = {"optimizers": {"vae": {"type": "SGD", "lr": 0.01, "momentum": 0.9}, "vae_encoder": {"lr": 0.001},
                          "vae_decoder": {"type": "AdamW", "lr": 0.002}},
           "schedulers": {"vae": {"type": "StepLR", "step_size": 7}}}
    built = build_optimizers_and_schedulers(cfg, {"vae": vae}, 100)
    assert list(built) == ["vae_encoder", "vae_decoder", "vae"]
    enc, dec, rest = (param_ids(built[n].optimizer) for n in ("vae_encoder", "vae_decoder", "vae"))
    assert set(enc) == {id(p) for p in vae.compressor.parameters()}
    assert set(dec) == {id(p) for p in vae.expander.parameters()}
    assert rest == [id(vae.latent_scale)]
    assert len(enc) + len(dec) + len(rest) == len({*enc, *dec, *rest}) == len(list(vae.parameters()))
    encoder = built["vae_encoder"].optimizer  # same type as the parent: inherits momentum, own lr
    assert isinstance(encoder, torch.optim.SGD) and encoder.defaults["momentum"] == 0.9
    assert encoder.defaults["lr"] == 0.001
    decoder = built["vae_decoder"].optimizer  # another type: nothing of SGD's is inherited
    assert isinstance(decoder, torch.optim.AdamW) and decoder.defaults["lr"] == 0.002
    scheds = [built[n].scheduler for n in built]  # sub-components without an entry share the parent's
    assert all(isinstance(s, lrs.StepLR) and s.step_size == 7 for s in scheds)


def test_frozen_parameters_are_left_out_and_empty_components_skipped():
    vae, flow = TinyVAE(), flow_model()
    vae.compressor.requires_grad_(False)
    flow[1].requires_grad_(False)
    cfg = {"optimizers": {"vae_encoder": {"lr": 1e-3}, "discriminator": {"lr": 1e-3}}}
    built = build_optimizers_and_schedulers(cfg, {"vae": vae, "flow_processor": flow}, 10)
    assert "vae_encoder" not in built and built.skipped["vae_encoder"] == "no trainable parameters"
    assert built.skipped["discriminator"] == "configured but not among the trained components"
    trained = {*param_ids(built["vae"].optimizer), *param_ids(built["flow"].optimizer)}
    frozen = {id(p) for m in (vae, flow) for p in m.parameters() if not p.requires_grad}
    assert frozen and not trained & frozen
    assert len(trained) == sum(1 for m in (vae, flow) for p in m.parameters() if p.requires_grad)


def test_shared_parameters_land_in_one_optimizer_only():
    text_encoder = nn.Linear(4, 4)
    flow = nn.Sequential(text_encoder, nn.Linear(4, 4))  # the flow model holds the text encoder
    with pytest.warns(UserWarning, match="already belongs to"):
        built = build_optimizers_and_schedulers(None, {"text_encoder": text_encoder, "flow": flow}, 10)
    te, fl = param_ids(built["text_encoder"].optimizer), param_ids(built["flow"].optimizer)
    assert set(te) == {id(p) for p in text_encoder.parameters()} and not set(te) & set(fl)


def test_component_name_errors():
    with pytest.raises(ConfigError, match=r"'flwo' is not a component \(did you mean 'flow'\?\)"):
        build_optimizers_and_schedulers(None, {"flwo": flow_model()}, 10)
    with pytest.raises(ConfigError, match=r"has no \.compressor submodule"):
        build_optimizers_and_schedulers({"optimizers": {"vae_encoder": {}}}, {"vae": nn.Linear(2, 2)}, 10)
    with pytest.raises(ConfigError, match="name the same component"):
        build_optimizers_and_schedulers(None, {"flow": flow_model(), "flow_processor": flow_model()}, 10)
    with pytest.raises(TypeError, match=r"components\['vae'\] must be an nn.Module"):
        build_optimizers_and_schedulers(None, {"vae": [nn.Parameter(torch.zeros(1))]}, 10)
    with pytest.raises(ConfigError, match="total_steps must be a positive whole number"):
        build_optimizers_and_schedulers(None, {"vae": TinyVAE()}, 0)
    with pytest.raises(ConfigError, match="--lr must be a positive number"):
        build_optimizers_and_schedulers(None, {"vae": TinyVAE()}, 10, lr=-1.0)


# ------------------------------------------------------------------------------------------ optimizers


@pytest.mark.parametrize("cfg, cls, keys", [
    ({"type": "AdamW", "betas": [0.8, 0.9], "eps": 1e-6, "amsgrad": True}, torch.optim.AdamW,
     {"betas": (0.8, 0.9), "eps": 1e-6, "amsgrad": True}),
    ({"type": "Adam", "amsgrad": True}, torch.optim.Adam, {"amsgrad": True, "weight_decay": 0}),
    ({"type": "SGD", "momentum": 0.9, "nesterov": True, "dampening": 0.0}, torch.optim.SGD,
     {"momentum": 0.9, "nesterov": True}),
    ({"type": "RMSprop", "alpha": 0.9, "centered": True, "momentum": 0.1}, torch.optim.RMSprop,
     {"alpha": 0.9, "centered": True, "momentum": 0.1}),
])
def test_build_optimizer_passes_keys_to_the_torch_class(cfg, cls, keys):
    opt = build_optimizer(nn.Linear(3, 3), cfg, lr=0.05)
    assert type(opt) is cls and opt.defaults["lr"] == 0.05
    assert {k: opt.defaults[k] for k in keys} == keys


def test_build_optimizer_lr_rules():
    assert build_optimizer(nn.Linear(2, 2), {"lr": 0.3}, lr=0.1).defaults["lr"] == 0.3  # config wins
    assert isinstance(build_optimizer(nn.Linear(2, 2), {}, lr=0.1), torch.optim.AdamW)  # default type
    with pytest.raises(ConfigError, match=r"optimizer\.lr is missing"):
        build_optimizer(nn.Linear(2, 2), {"type": "SGD"})
    with pytest.raises(ValueError, match="no trainable parameters"):
        build_optimizer(nn.Linear(2, 2).requires_grad_(False), {"lr": 0.1})


def _one_zero_grad_step(opt: torch.optim.Optimizer, model: nn.Module) -> dict[str, bool]:
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()  # no zeros: decay must be visible where it applies
            p.grad = torch.zeros_like(p)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt.step()
    return {n: not torch.equal(before[n], p) for n, p in model.named_parameters()}


def test_biases_and_norm_weights_are_not_decayed_by_default():
    model = flow_model()  # Linear weights (2-D) and biases + LayerNorm weight/bias (1-D)
    changed = _one_zero_grad_step(build_optimizer(model, {"lr": 0.1, "weight_decay": 0.5}), model)
    assert changed == {"0.weight": True, "0.bias": False, "1.weight": False, "1.bias": False,
                       "2.weight": True, "2.bias": False}
    model = flow_model()
    opt = build_optimizer(model, {"lr": 0.1, "weight_decay": 0.5, "decay_bias_and_norm": True})
    assert len(opt.param_groups) == 1 and all(_one_zero_grad_step(opt, model).values())


def test_lion_decoupled_weight_decay_shrinks_weights_by_weight_decay_per_step():
    cfg = {"type": "Lion", "lr": 5e-7, "weight_decay": 0.01, "decoupled_weight_decay": True}
    for decoupled, factor in [(True, 0.99), (False, 1 - 5e-7 * 0.01)]:  # 1% per step / lr * wd (the paper)
        model = nn.Linear(4, 4, bias=False, dtype=torch.float64)  # float64: 1 - 5e-9 is not 1
        model.weight.grad = torch.zeros_like(model.weight)  # no gradient: only the decay moves weights
        w0 = model.weight.detach().clone()
        build_optimizer(model, {**cfg, "decoupled_weight_decay": decoupled}).step()
        assert torch.allclose(model.weight, w0 * factor, rtol=1e-12, atol=0)
        assert not torch.equal(model.weight, w0)


def test_lion_decoupled_weight_decay_warns_when_it_would_erase_the_weights():
    cfg = {"optimizers": {"flow": {"type": "Lion", "lr": 5e-7, "weight_decay": 0.01,
                                   "decoupled_weight_decay": True}}}
    with pytest.warns(UserWarning, match=r"shrink weights by up to exp\(-500\)"):
        build_optimizers_and_schedulers(cfg, {"flow": flow_model()}, 50_000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_optimizers_and_schedulers(cfg, {"flow": flow_model()}, 50)  # 0.5 over the run: no warning


def test_scheduler_input_errors_name_the_path():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(2, 2))], lr=1.0)
    with pytest.raises(ConfigError, match=r"scheduler\.gamma must be > 0, got 0"):
        build_scheduler(opt, {"type": "StepLR", "gamma": 0}, 10)
    with pytest.raises(ConfigError, match="total_steps must be a positive whole number"):
        build_scheduler(opt, {"type": "StepLR"}, True)
    two = torch.optim.SGD([{"params": [nn.Parameter(torch.zeros(1))], "lr": 1.0},
                           {"params": [nn.Parameter(torch.zeros(1))], "lr": 2.0}])
    with pytest.raises(ValueError, match="one initial LR"):
        build_scheduler(two, {"type": "CosineAnnealingLR"}, 10)
    cosine = build_scheduler(opt, {"type": "CosineAnnealingLR", "eta_min_factor": 0.3}, 10)
    assert math.isclose(cosine.eta_min, 0.3)
