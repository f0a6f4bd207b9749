"""Optimizers named by import path (docs/SCHEDULERS.md, "Any optimizer by import path"): checked against
the class's signature when the config is loaded, built and stepped for real with packages that run on a
CPU."""

from __future__ import annotations

import copy
import json
import sys
import warnings

import pytest
import torch
from torch import nn

from fluxflow.training.optim import (
    ConfigError,
    build_optimizer,
    build_optimizers_and_schedulers,
    build_scheduler,
    ensure_train_mode,
    evaluation_mode,
    load_optim_sched_config,
    needs_train_eval,
)


def _regression():
    """A toy linear regression: a model, its inputs and targets."""
    torch.manual_seed(0)
    x = torch.randn(64, 8)
    y = x @ torch.randn(8, 4) + 0.5
    return nn.Linear(8, 4), x, y


def _losses(model, optimizer, x, y, steps: int) -> list[float]:
    losses = []
    for _ in range(steps):
        loss = (model(x) - y).pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses


def _built(entry: dict, model: nn.Module, total_steps: int = 100, **kwargs):
    return build_optimizers_and_schedulers({"optimizers": {"flow": entry}}, {"flow": model}, total_steps,
                                           **kwargs)["flow"]


def _problems(config: dict) -> str:
    with pytest.raises(ConfigError) as err:
        load_optim_sched_config(config)
    return str(err.value)


# ------------------------------------------------------------------------------------------------ building


@pytest.mark.parametrize("entry, cls_name, steps", [
    ({"type": "prodigyopt.Prodigy"}, "Prodigy", 30),
    ({"type": "schedulefree.AdamWScheduleFree", "lr": 0.05, "warmup_steps": 2}, "AdamWScheduleFree", 30),
    ({"type": "transformers.optimization.Adafactor", "scale_parameter": False, "relative_step": False,
      "lr": 0.05}, "Adafactor", 30),
    ({"type": "torch.optim.Adagrad", "lr": 0.1, "lr_decay": 0.0}, "Adagrad", 30),
])
def test_an_optimizer_by_import_path_builds_and_lowers_a_regression_loss(entry, cls_name, steps):
    pytest.importorskip(entry["type"].split(".")[0])
    model, x, y = _regression()
    built = _built(entry, model)
    assert type(built.optimizer).__name__ == cls_name
    assert built.optimizer_config["type"] == entry["type"]
    losses = _losses(model, built.optimizer, x, y, steps)
    assert losses[-1] < 0.5 * losses[0], losses


def test_adafactor_with_the_briefs_settings_steps_at_its_lr():
    model, x, y = _regression()
    built = _built({"type": "transformers.optimization.Adafactor", "scale_parameter": False,
                    "relative_step": False, "lr": 1e-3}, model)
    assert built.lr == 1e-3
    losses = _losses(model, built.optimizer, x, y, 10)
    assert losses[-1] < losses[0]


def test_prodigy_without_lr_gets_1_and_neither_the_cli_lr_nor_the_batch_scale():
    built = _built({"type": "prodigyopt.Prodigy"}, nn.Linear(2, 2), lr=3e-4, lr_multiplier=64)
    assert built.lr == 1.0 and built.optimizer.defaults["lr"] == 1.0


def test_prodigy_with_an_adamw_style_lr_warns():
    expected = r"optimizers\.flow\.lr is 0\.0001 but prodigyopt\.Prodigy .* expects lr 1"
    with pytest.warns(UserWarning, match=expected):
        built = _built({"type": "prodigyopt.Prodigy", "lr": 1e-4}, nn.Linear(2, 2))
    assert built.lr == 1e-4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _built({"type": "prodigyopt.Prodigy", "lr": 0.5}, nn.Linear(2, 2))  # near 1.0: no warning


def test_a_sub_component_of_another_type_does_not_inherit_prodigys_lr():
    vae = nn.ModuleDict({"compressor": nn.Linear(2, 2), "expander": nn.Linear(2, 2)})
    config = {"optimizers": {"vae": {"type": "prodigyopt.Prodigy"}, "vae_encoder": {"type": "AdamW"}}}
    built = build_optimizers_and_schedulers(config, {"vae": vae}, 10, lr=2e-4)
    assert built["vae"].lr == 1.0 and built["vae_encoder"].lr == 2e-4


def test_class_keys_and_types_reach_the_optimizer():
    built = _built({"type": "prodigyopt.Prodigy", "betas": [0.9, 0.99], "d_coef": 2, "weight_decay": 0.01,
                    "use_bias_correction": True}, nn.Linear(2, 2))
    defaults = built.optimizer.defaults
    assert defaults["betas"] == (0.9, 0.99) and defaults["d_coef"] == 2 and defaults["use_bias_correction"]
    decays = sorted(g["weight_decay"] for g in built.optimizer.param_groups)
    assert decays == [0.0, 0.01]  # biases and norms are not decayed, as for the built-in types


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step")
def test_schedule_free_runs_on_a_constant_schedule_in_train_mode():
    built = _built({"type": "schedulefree.AdamWScheduleFree", "warmup_steps": 5}, nn.Linear(2, 2))
    assert built.scheduler_config == {"type": "ConstantLR", "factor": 1.0}
    assert needs_train_eval(built.optimizer) and built.optimizer.param_groups[0]["train_mode"]
    for _ in range(20):
        built.step()
    assert built.lr == built.optimizer_config["lr"]  # the warm-up is the optimizer's own, not the LR's
    assert not needs_train_eval(_built({"type": "torch.optim.Adagrad"}, nn.Linear(2, 2)).optimizer)


def test_evaluation_mode_moves_schedule_free_weights_to_the_average_and_back():
    model, x, y = _regression()
    built = build_optimizers_and_schedulers(
        {"optimizers": {"flow": {"type": "schedulefree.AdamWScheduleFree", "lr": 0.05},
                        "vae": {"type": "torch.optim.Adagrad"}}}, {"flow": model, "vae": nn.Linear(2, 2)}, 50)
    _losses(model, built["flow"].optimizer, x, y, 20)
    training_point = copy.deepcopy(model.state_dict())
    with evaluation_mode(built) as switched:
        assert switched == [built["flow"].optimizer]  # Adagrad has no modes: left alone
        averaged = copy.deepcopy(model.state_dict())
        assert not torch.allclose(averaged["weight"], training_point["weight"])
        with evaluation_mode(built) as nested:
            assert nested == []  # already in eval mode: nothing switched twice
        assert not built["flow"].optimizer.param_groups[0]["train_mode"]
    assert built["flow"].optimizer.param_groups[0]["train_mode"]
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, training_point[key])


def test_evaluation_mode_reaches_through_accelerates_wrapper():
    accelerate = pytest.importorskip("accelerate")
    model, x, y = _regression()
    built = _built({"type": "schedulefree.AdamWScheduleFree", "lr": 0.05}, model)
    acc = accelerate.Accelerator(cpu=True)
    model, optimizer = acc.prepare(model, built.optimizer)
    built.optimizer = optimizer
    _losses(model, optimizer, x, y, 5)
    assert needs_train_eval(optimizer)
    with evaluation_mode(built) as switched:
        assert switched == [optimizer] and not optimizer.optimizer.param_groups[0]["train_mode"]
    assert optimizer.optimizer.param_groups[0]["train_mode"]
    acc.free_memory()


# ----------------------------------------------------------------------------------------------- state


def _state_round_trip(entry: dict, steps_before: int, steps_after: int, save_in_eval_mode: bool = False):
    """Train, save model + optimizer state, train on; a fresh copy loads the state, trains the same steps."""
    model, x, y = _regression()
    built = _built(entry, model)
    _losses(model, built.optimizer, x, y, steps_before)
    with evaluation_mode(built) if save_in_eval_mode else _nothing():
        saved = copy.deepcopy((model.state_dict(), built.optimizer.state_dict()))
    continued = _losses(model, built.optimizer, x, y, steps_after)
    fresh, _, _ = _regression()
    resumed = _built(entry, fresh)
    fresh.load_state_dict(saved[0])
    resumed.optimizer.load_state_dict(saved[1])
    ensure_train_mode(resumed)
    losses = _losses(fresh, resumed.optimizer, x, y, steps_after)
    if save_in_eval_mode:  # train() recomputes the training point from the average: equal up to rounding
        assert losses == pytest.approx(continued, rel=1e-5)
        assert all(torch.allclose(v, model.state_dict()[k], atol=1e-6) for k, v in fresh.state_dict().items())
        return saved
    assert losses == continued
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, model.state_dict()[key])
    return saved


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def test_prodigy_state_round_trip_gives_identical_next_steps():
    saved = _state_round_trip({"type": "prodigyopt.Prodigy"}, 7, 5)
    assert saved[1]["param_groups"][0]["d"] > 1e-6  # the estimate moved: it is part of the state


def test_schedule_free_state_saved_in_eval_mode_resumes_after_ensure_train_mode():
    """Runs save their state in train mode (exact); a state saved in eval mode still resumes, up to rounding."""
    entry = {"type": "schedulefree.AdamWScheduleFree", "lr": 0.05}
    saved = _state_round_trip(entry, 7, 5, save_in_eval_mode=True)
    assert saved[1]["param_groups"][0]["train_mode"] is False


def test_prodigy_state_saves_and_loads_through_accelerate(tmp_path):
    accelerate = pytest.importorskip("accelerate")
    runs = []
    for resume in (False, True):
        model, x, y = _regression()
        built = _built({"type": "prodigyopt.Prodigy"}, model)
        acc = accelerate.Accelerator(cpu=True)
        model, optimizer = acc.prepare(model, built.optimizer)
        if resume:
            acc.load_state(str(tmp_path / "state"))
        else:
            _losses(model, optimizer, x, y, 6)
            acc.save_state(str(tmp_path / "state"))
        runs.append(_losses(model, optimizer, x, y, 4))
        acc.free_memory()
    assert runs[0] == runs[1]


# ------------------------------------------------------------------------------------------ validation


@pytest.mark.parametrize("config, fragments", [
    ({"optimizers": {"flow": {"type": "prodigyopt.Prodigy", "beta4": 0.5}}},
     ["optimizers.flow.beta4 is not an argument of prodigyopt.Prodigy (did you mean 'betas'?)",
      "accepted: type, lr, betas, beta3, eps, weight_decay, decouple"]),
    ({"optimizers": {"vae": {"type": "torch.optim.Adagrad", "momentum": 0.9}}},
     ["optimizers.vae.momentum is not an argument of torch.optim.Adagrad", "accepted: type, lr, lr_decay"]),
    ({"optimizers": {"flow": {"type": "notapackage.Opt"}}},
     ["optimizers.flow.type 'notapackage.Opt' needs the package 'notapackage', which is not installed: "
      "pip install notapackage"]),
    ({"optimizers": {"flow": {"type": "collections.OrderedDict"}}},
     ["optimizers.flow.type 'collections.OrderedDict' is not a torch.optim.Optimizer subclass"]),
    ({"optimizers": {"flow": {"type": "os.path.join"}}},
     ["is not a torch.optim.Optimizer subclass (it is a function)"]),
    ({"optimizers": {"flow": {"type": "torch.optim.Adagrd"}}},
     ["optimizers.flow.type 'torch.optim.Adagrd' does not exist: torch.optim has no attribute or module "
      "'Adagrd'"]),
    ({"optimizers": {"flow": {"type": "Adagrad"}}},
     ["optimizers.flow.type 'Adagrad' is not an optimizer (did you mean 'torch.optim.Adagrad'?)",
      "allowed: AdamW, Adam, SGD, RMSprop, Lion, or the import path of a torch.optim.Optimizer subclass"]),
    ({"optimizers": {"flow": {"type": "prodigyopt.Prodigy", "betas": [0.9], "d_coef": True, "lr": "1"}}},
     ["optimizers.flow.betas must be a list of 2 numbers (prodigyopt.Prodigy's default is (0.9, 0.999)), "
      "got [0.9]",
      "optimizers.flow.d_coef must be a number (prodigyopt.Prodigy's default is 1.0), got bool True",
      "optimizers.flow.lr must be a number, got str '1'"]),
    ({"optimizers": {"flow": {"type": "torch.optim.Adagrad", "maximize": 1, "weight_decay": -1}}},
     ["optimizers.flow.maximize must be true or false (torch.optim.Adagrad's default is False), got 1",
      "optimizers.flow.weight_decay must be >= 0, got -1"]),
    ({"optimizers": {"flow": {"type": "torch.optim.Adagrad", "lr_decay": -1}}},
     ["optimizers.flow: torch.optim.Adagrad refuses these settings", "Invalid lr_decay value: -1"]),
    ({"optimizers": {"flow": {"type": "transformers.optimization.Adafactor"}}},
     ["optimizers.flow: transformers.optimization.Adafactor refuses these settings",
      "Cannot combine manual `lr` and `relative_step=True` options"]),
    ({"optimizers": {"flow": {"type": "schedulefree.AdamWScheduleFree"}},
      "schedulers": {"flow": {"type": "CosineAnnealingLR"}}},
     ["schedulers.flow: flow runs schedulefree.AdamWScheduleFree, a schedule-free optimizer",
      "its scheduler can only be ConstantLR with factor 1 (or none), got CosineAnnealingLR",
      "optimizers.flow.warmup_steps"]),
    ({"optimizers": {"vae_encoder": {"type": "schedulefree.SGDScheduleFree"}},
      "scheduler_config": {"vae": [{"type": "LinearLR", "total_iters": 10}, {"type": "CosineAnnealingLR"}]}},
     ["scheduler_config.vae (the scheduler of vae, which vae_encoder uses): vae_encoder runs "
      "schedulefree.SGDScheduleFree", "got LinearLR -> CosineAnnealingLR"]),
    ({"optimizers": {"flow": {"type": "schedulefree.AdamWScheduleFree"}},
      "schedulers": {"flow": {"type": "ConstantLR", "factor": 0.5}}}, ["got ConstantLR"]),
])
def test_bad_import_path_entries_are_named_with_their_key_path(config, fragments):
    message = _problems(config)
    for fragment in fragments:
        assert fragment in message, message


def test_a_missing_extra_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "prodigyopt", None)  # import prodigyopt now fails as if not installed
    message = _problems({"optimizers": {"flow": {"type": "prodigyopt.Prodigy"}}})
    assert "optimizers.flow.type 'prodigyopt.Prodigy' needs the package 'prodigyopt', which is not " \
           "installed: pip install prodigyopt (or pip install 'fluxflow[optimizers]')" in message


def test_schedule_free_with_a_constant_scheduler_is_accepted_and_build_scheduler_refuses_a_cosine():
    config = {"optimizers": {"flow": {"type": "schedulefree.AdamWScheduleFree"}},
              "schedulers": {"flow": {"type": "ConstantLR"}}}
    assert load_optim_sched_config(config).scheduler_config("flow")["type"] == "ConstantLR"
    optimizer = build_optimizer(nn.Linear(2, 2), {"type": "schedulefree.AdamWScheduleFree"}, lr=0.01)
    with pytest.raises(ConfigError, match=r"schedulers\.flow: a schedule-free optimizer"):
        build_scheduler(optimizer, {"type": "CosineAnnealingLR"}, 10, path="schedulers.flow")


def test_the_training_config_loader_names_a_bad_key_with_its_path(tmp_path):
    from fluxflow.training.arguments import load_config

    data = tmp_path / "data"
    data.mkdir()
    (data / "metadata.jsonl").write_text('{"file_name": "a.png", "text": "a"}\n', encoding="utf-8")
    optim = tmp_path / "optim.json"
    optim.write_text(json.dumps({"optimizers": {"vae": {"type": "prodigyopt.Prodigy", "beta4": 0.1},
                                                "flow": {"type": "notapackage.Opt"}}}), encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(["--train_vae", "--data_path", str(data), "--optim_sched_config", str(optim)])
    message = str(err.value)
    assert f"--optim_sched_config {optim}: optimizers.vae.beta4 is not an argument of prodigyopt.Prodigy" \
        in message
    assert "optimizers.flow.type 'notapackage.Opt' needs the package 'notapackage'" in message
    optim.write_text(json.dumps({"optimizers": {"vae": {"type": "prodigyopt.Prodigy", "beta3": 0.99}}}),
                     encoding="utf-8")
    _, loaded = load_config(["--train_vae", "--data_path", str(data), "--optim_sched_config", str(optim)])
    assert loaded.optimizer_config("vae") == {"type": "prodigyopt.Prodigy", "lr": 1.0, "beta3": 0.99}


# ------------------------------------------------------------------------------ GPU-oriented packages


@pytest.mark.parametrize("path", ["bitsandbytes.optim.AdamW8bit", "torchao.optim.AdamW8bit"])
def test_eight_bit_optimizers_build_when_installed(path):
    """Not in the dev extra (GPU-oriented); runs where they are installed (benchmarks/gpu.sh, a GPU box)."""
    pytest.importorskip(path.split(".")[0])
    model, x, y = _regression()
    built = _built({"type": path, "lr": 1e-2}, model)
    losses = _losses(model, built.optimizer, x, y, 10)
    assert losses[-1] < losses[0]
