"""Stepping, state and resume: one scheduler step per optimizer step (also under Accelerate with
gradient accumulation), state_dict round trips, and ``--preserve_lr``."""

from __future__ import annotations

import io
import json
import warnings

import pytest
import torch
from torch import nn
from torch.optim import lr_scheduler as lrs

from fluxflow.training.optim import (
    LR_FILE,
    ConfigError,
    build_optimizers_and_schedulers,
    load_lrs,
    save_lrs,
)

CONFIG = {
    "optimizers": {"flow": {"type": "Lion", "lr": 1e-5}, "vae": {"type": "AdamW", "lr": 2e-4},
                   "discriminator": {"lr": 1e-4}},
    "schedulers": {"flow": [{"type": "LinearLR", "start_factor": 0.01, "end_factor": 1.0, "total_iters": 20},
                            {"type": "CosineAnnealingLR", "eta_min_factor": 0.1}],
                   "vae": {"type": "StepLR", "step_size": 30, "gamma": 0.5},
                   "discriminator": {"type": "ReduceLROnPlateau", "patience": 2, "factor": 0.5}},
}


class TinyVAE(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.compressor = nn.Conv2d(3, 4, 3, padding=1)
        self.expander = nn.Conv2d(4, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.expander(self.compressor(x))


def models(seed: int = 0) -> dict[str, nn.Module]:
    torch.manual_seed(seed)
    return {"flow": nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 4)), "vae": TinyVAE(),
            "discriminator": nn.Conv2d(3, 1, 3)}


def train_steps(built, comps, steps: int, start: int = 0) -> list[dict[str, float]]:
    """Real optimizer steps on a fixed batch; every scheduler stepped once after each."""
    x = torch.linspace(-1, 1, 48).reshape(1, 3, 4, 4)
    lrs_seen = []
    for k in range(start, start + steps):
        losses = {"flow": comps["flow"](x[0, 0]).pow(2).mean(), "vae": (comps["vae"](x) - x).pow(2).mean(),
                  "discriminator": comps["discriminator"](x).mean() ** 2}
        for name, loss in losses.items():
            built[name].optimizer.zero_grad()
            loss.backward()
            built[name].optimizer.step()
            built[name].step(1.0 if name == "discriminator" and k > 3 else loss.detach())
        lrs_seen.append(built.lrs())
    return lrs_seen


def test_step_advances_exactly_one_optimizer_step_and_plateau_needs_its_metric():
    comps = models()
    built = build_optimizers_and_schedulers(CONFIG, comps, 100)
    train_steps(built, comps, 7)
    assert built["flow"].scheduler.last_epoch == 7 and built["vae"].scheduler.last_epoch == 7
    assert built["discriminator"].monitor == "loss" and built["flow"].monitor is None
    with pytest.raises(ValueError, match=r"discriminator: ReduceLROnPlateau steps on a metric"):
        built["discriminator"].step()
    assert built["discriminator"].step(torch.tensor(2.0)) is True  # a tensor loss is accepted


def test_a_skipped_optimizer_step_does_not_step_the_scheduler():
    built = build_optimizers_and_schedulers(CONFIG, models(), 100)
    comp = built["vae"]

    class Overflowed:  # what Accelerate's optimizer wrapper reports after an fp16 overflow
        step_was_skipped = True
        param_groups = comp.optimizer.param_groups

    comp.optimizer = Overflowed()
    assert comp.step() is False and comp.scheduler.last_epoch == 0


def test_curve_per_optimizer_step_is_independent_of_gradient_accumulation():
    accelerate = pytest.importorskip("accelerate")
    curves = {}
    for accumulation in (1, 4):
        comps = models()
        built = build_optimizers_and_schedulers(CONFIG, {"vae": comps["vae"]}, 40)
        acc = accelerate.Accelerator(cpu=True, gradient_accumulation_steps=accumulation)
        model, optimizer = acc.prepare(comps["vae"], built["vae"].optimizer)
        built["vae"].optimizer = optimizer  # step() now sees Accelerate's step_was_skipped
        x = torch.ones(1, 3, 4, 4)
        seen = [built["vae"].lr]
        for _ in range(40 * accumulation):  # micro-batches
            with acc.accumulate(model):
                acc.backward((model(x) - x).pow(2).mean())
                optimizer.step()
                optimizer.zero_grad()
            if acc.sync_gradients:
                built["vae"].step()
                seen.append(built["vae"].lr)
        curves[accumulation] = seen
        acc.free_memory()
    assert len(curves[1]) == len(curves[4]) == 41
    assert curves[1] == curves[4]
    assert curves[1][29] == 2e-4 and curves[1][30] == 1e-4 and curves[1][40] == 1e-4


def _roundtrip(obj):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_state_dicts_round_trip_through_torch_save():
    comps = models()
    built = build_optimizers_and_schedulers(CONFIG, comps, 100)
    train_steps(built, comps, 25)  # the flow chain is past its warm-up milestone, the vae before its drop
    saved_models = _roundtrip({n: m.state_dict() for n, m in comps.items()})
    saved_opt = _roundtrip({n: c.optimizer.state_dict() for n, c in built.items()})
    saved_sched = _roundtrip(built.state_dict())
    expected = train_steps(built, comps, 30, start=25)

    resumed_comps = models(seed=1)  # other weights: everything must come from the saved state
    for name, module in resumed_comps.items():
        module.load_state_dict(saved_models[name])
    resumed = build_optimizers_and_schedulers(CONFIG, resumed_comps, 100)
    for name, c in resumed.items():
        c.optimizer.load_state_dict(saved_opt[name])
    resumed.load_state_dict(saved_sched)
    assert train_steps(resumed, resumed_comps, 30, start=25) == expected
    for name in comps:  # the optimizer moments were restored too: identical weights afterwards
        for a, b in zip(comps[name].parameters(), resumed_comps[name].parameters(), strict=True):
            assert torch.equal(a, b)

    fresh_comps = models()  # without loading, the curve restarts: the comparison above can fail
    fresh = build_optimizers_and_schedulers(CONFIG, fresh_comps, 100)
    assert train_steps(fresh, fresh_comps, 30, start=25) != expected


def test_loading_scheduler_state_for_other_components_fails():
    built = build_optimizers_and_schedulers(CONFIG, models(), 100)
    longer = build_optimizers_and_schedulers(CONFIG, models(), 200)
    with pytest.warns(UserWarning, match="saved by a run of 100 steps and this run has 200"):
        longer.load_state_dict(built.state_dict())
    assert longer["flow"].scheduler._schedulers[1].T_max == 80  # the saved length (100 - 20 warm-up) wins
    state = built.state_dict()
    del state["schedulers"]["vae"]
    with pytest.raises(ValueError, match=r"scheduler state is for components \['discriminator', 'flow'\]"):
        built.load_state_dict(state)


# ----------------------------------------------------------------------------------------- --preserve_lr

PRESERVE = {"optimizers": {"flow": {"type": "AdamW", "lr": 1e-4}, "vae": {"lr": 5e-5}},
            "schedulers": {"flow": {"type": "CosineAnnealingLR", "eta_min_factor": 0.1},
                           "vae": {"type": "ConstantLR", "factor": 1.0}}}


def test_preserve_lr_continues_from_the_saved_lr_instead_of_restarting(tmp_path):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
        first = build_optimizers_and_schedulers(PRESERVE, {"flow": nn.Linear(2, 2), "vae": TinyVAE()}, 1000)
        for _ in range(500):
            for c in first.values():
                c.step()
    save_lrs(tmp_path / LR_FILE, first)
    assert json.loads((tmp_path / LR_FILE).read_text()) == first.lrs()
    saved = load_lrs(tmp_path / LR_FILE)
    assert saved["flow"] == pytest.approx(5.5e-5, rel=1e-9)  # half-way down the cosine

    comps = {"flow": nn.Linear(2, 2), "vae": TinyVAE(), "discriminator": nn.Conv2d(3, 1, 3)}
    second = build_optimizers_and_schedulers(PRESERVE, comps, 1000, initial_lrs=saved)
    assert second["flow"].lr == saved["flow"] and second["vae"].lr == saved["vae"]
    assert second["flow"].scheduler.eta_min == pytest.approx(0.1 * saved["flow"])  # the schedule restarts
    assert second["discriminator"].lr == 1e-4  # not saved: its configured (default) start
    restarted = build_optimizers_and_schedulers(PRESERVE, comps, 1000)
    assert restarted["flow"].lr == 1e-4 != second["flow"].lr  # without preserve_lr the LR jumps back up


def test_preserved_lr_of_the_vae_seeds_its_sub_components():
    cfg = {"optimizers": {"vae_encoder": {"lr": 1.0}}}
    built = build_optimizers_and_schedulers(cfg, {"vae": TinyVAE()}, 10, initial_lrs={"vae": 3e-5})
    assert built["vae_encoder"].lr == 3e-5 and built["vae"].lr == 3e-5
    built = build_optimizers_and_schedulers(cfg, {"vae": TinyVAE()}, 10,
                                            initial_lrs={"vae": 3e-5, "vae_encoder": 7e-6})
    assert built["vae_encoder"].lr == 7e-6


@pytest.mark.parametrize("content, expected", [
    ({"flow": 1e-5, "vae": 2e-5, "flow_processor": None}, None),
    ({"flow_processor": 1e-5, "text_encoder": 1e-6}, {"flow": 1e-5, "text_encoder": 1e-6}),
    ({"lr": 4e-7, "vae": 3e-7}, {"flow": 4e-7, "vae": 3e-7}),  # the earlier release's first format
    ({"optimizer_FDiff": 4e-7, "optimizer_Diff": 3e-7, "optimizer_te": 1e-8, "optimizer_Dimg": 2e-7},
     {"flow": 4e-7, "vae": 3e-7, "text_encoder": 1e-8, "discriminator": 2e-7}),
])
def test_load_lrs_reads_ours_and_the_earlier_formats(tmp_path, content, expected):
    content = {k: v for k, v in content.items() if v is not None}
    (tmp_path / LR_FILE).write_text(json.dumps(content))
    assert load_lrs(tmp_path / LR_FILE) == (expected or content)


@pytest.mark.parametrize("content, fragment", [
    ({"vea": 1e-5}, "'vea' is not a component (did you mean 'vae'?)"),
    ({"vae": -1e-5}, "vae must be a positive number, got -1e-05"),
    ({"vae": "1e-5"}, "vae must be a positive number, got '1e-5'"),
    ([1e-5], "must map component -> lr, got list"),
])
def test_load_lrs_rejects_bad_files(tmp_path, content, fragment):
    (tmp_path / LR_FILE).write_text(json.dumps(content))
    with pytest.raises(ConfigError) as err:
        load_lrs(tmp_path / LR_FILE)
    assert fragment in str(err.value)


def test_plateau_scheduler_state_round_trips():
    built = build_optimizers_and_schedulers(CONFIG, models(), 100)
    disc = built["discriminator"]
    for loss in (1.0, 0.5, 0.6, 0.6, 0.6):
        disc.step(loss)
    assert disc.lr == 5e-5 and isinstance(disc.scheduler, lrs.ReduceLROnPlateau)
    other = build_optimizers_and_schedulers(CONFIG, models(), 100)
    other.load_state_dict(_roundtrip(built.state_dict()))
    other["discriminator"].optimizer.load_state_dict(disc.optimizer.state_dict())
    assert other["discriminator"].scheduler.best == 0.5 and other["discriminator"].lr == 5e-5
