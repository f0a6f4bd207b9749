"""Loading optimizer/scheduler configs: every accepted form, and malformed configs that must fail
up front with a message naming the problem."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from fluxflow.training.optim import (
    ConfigError,
    OptimSchedConfig,
    build_optimizers_and_schedulers,
    load_optim_sched_config,
)

BAD_CONFIGS = [
    # (id, config, fragments the message must contain)
    ("negative eta_min_factor", {"schedulers": {"vae": {"type": "CosineAnnealingLR", "eta_min_factor": -1}}},
     ["schedulers.vae.eta_min_factor must be >= 0, got -1"]),
    ("eta_min_factor above 1", {"schedulers": {"vae": {"type": "CosineAnnealingLR", "eta_min_factor": 1.5}}},
     ["schedulers.vae.eta_min_factor must be <= 1, got 1.5"]),
    ("unknown scheduler type", {"schedulers": {"flow": {"type": "CosineLR"}}},
     ["schedulers.flow.type 'CosineLR' is not a scheduler", "allowed: CosineAnnealingLR, LinearLR"]),
    ("misspelt scheduler type", {"schedulers": {"flow": {"type": "cosineannealinglr"}}},
     ["did you mean 'CosineAnnealingLR'?"]),
    ("missing scheduler type", {"schedulers": {"flow": {"eta_min_factor": 0.1}}},
     ["schedulers.flow.type is missing; one of: CosineAnnealingLR"]),
    ("unknown optimizer type", {"optimizers": {"vae": {"type": "Adagrad"}}},
     ["optimizers.vae.type 'Adagrad' is not an optimizer", "allowed: AdamW, Adam, SGD, RMSprop, Lion"]),
    ("misspelt optimizer type", {"optimizers": {"vae": {"type": "adamw"}}}, ["did you mean 'AdamW'?"]),
    ("misspelt component", {"optimizers": {"vea": {"lr": 1e-4}}},
     ["optimizers.vea: 'vea' is not a component (did you mean 'vae'?)",
      "components: flow (alias flow_processor)"]),
    ("misspelt alias", {"scheduler_config": {"flow_procesor": {"type": "LinearLR"}}},
     ["scheduler_config.flow_procesor", "did you mean 'flow_processor'?"]),
    ("misspelt key", {"optimizers": {"vae": {"weight_decy": 0.1}}},
     ["optimizers.vae.weight_decy is not a known key (did you mean 'weight_decay'?)"]),
    ("key of another optimizer", {"optimizers": {"vae": {"type": "AdamW", "momentum": 0.9}}},
     ["optimizers.vae.momentum is not a setting of AdamW (it belongs to SGD, RMSprop)"]),
    ("key of another scheduler", {"schedulers": {"vae": {"type": "ExponentialLR", "step_size": 10}}},
     ["schedulers.vae.step_size is not a setting of ExponentialLR (it belongs to StepLR)"]),
    ("lr as a string", {"optimizers": {"flow": {"lr": "1e-4"}}},
     ["optimizers.flow.lr must be a number, got str '1e-4'; write numbers without quotes"]),
    ("zero lr", {"optimizers": {"flow": {"lr": 0}}}, ["optimizers.flow.lr must be > 0, got 0"]),
    ("negative weight decay", {"optimizers": {"flow": {"weight_decay": -0.1}}},
     ["optimizers.flow.weight_decay must be >= 0, got -0.1"]),
    ("bool for a number", {"optimizers": {"vae": {"eps": True}}},
     ["optimizers.vae.eps must be a number, got bool"]),
    ("nan lr", {"optimizers": {"vae": {"lr": float("nan")}}}, ["optimizers.vae.lr must be a finite number"]),
    ("one beta", {"optimizers": {"vae": {"betas": [0.9]}}},
     ["optimizers.vae.betas must be a list of two numbers in [0, 1), got [0.9]"]),
    ("beta of 1", {"optimizers": {"discriminator": {"betas": [0.0, 1.0]}}},
     ["optimizers.discriminator.betas[1] must be < 1, got 1.0"]),
    ("amsgrad as a string", {"optimizers": {"vae": {"amsgrad": "yes"}}},
     ["optimizers.vae.amsgrad must be true or false, got 'yes'"]),
    ("nesterov without momentum", {"optimizers": {"vae": {"type": "SGD", "nesterov": True}}},
     ["optimizers.vae.nesterov needs momentum > 0 and dampening 0"]),
    ("nesterov with dampening", {"optimizers": {"vae": {"type": "SGD", "momentum": 0.9, "dampening": 0.1,
                                                        "nesterov": True}}},
     ["optimizers.vae.nesterov needs momentum > 0 and dampening 0, got momentum 0.9, dampening 0.1"]),
    ("nesterov on a sub-component of a momentum-less parent",
     {"optimizers": {"vae": {"type": "SGD"}, "vae_encoder": {"nesterov": True}}},
     ["optimizers.vae_encoder.nesterov needs momentum > 0"]),
    ("momentum of 1", {"optimizers": {"vae": {"type": "SGD", "momentum": 1.0}}},
     ["optimizers.vae.momentum must be < 1, got 1.0"]),
    ("fractional steps", {"schedulers": {"vae": {"type": "StepLR", "step_size": 10.5}}},
     ["schedulers.vae.step_size must be a whole number of steps, got 10.5"]),
    ("zero T_max", {"schedulers": {"vae": {"type": "CosineAnnealingLR", "T_max": 0}}},
     ["schedulers.vae.T_max must be >= 1, got 0"]),
    ("gamma above 1", {"schedulers": {"vae": {"type": "ExponentialLR", "gamma": 1.1}}},
     ["schedulers.vae.gamma must be <= 1, got 1.1"]),
    ("zero start_factor", {"schedulers": {"vae": {"type": "LinearLR", "start_factor": 0}}},
     ["schedulers.vae.start_factor must be > 0, got 0"]),
    ("plateau factor of 1", {"schedulers": {"vae": {"type": "ReduceLROnPlateau", "factor": 1.0}}},
     ["schedulers.vae.factor must be < 1, got 1.0"]),
    ("plateau mode", {"schedulers": {"vae": {"type": "ReduceLROnPlateau", "mode": "minimum"}}},
     ["schedulers.vae.mode must be one of 'min', 'max', got 'minimum' (did you mean 'min'?)"]),
    ("negative patience", {"schedulers": {"vae": {"type": "ReduceLROnPlateau", "patience": -1}}},
     ["schedulers.vae.patience must be >= 0, got -1"]),
    ("chained plateau", {"schedulers": {"vae": [{"type": "LinearLR", "total_iters": 5},
                                                {"type": "ReduceLROnPlateau"}]}},
     ["schedulers.vae[1]: ReduceLROnPlateau cannot be chained"]),
    ("chain entry without length",
     {"schedulers": {"flow": [{"type": "LinearLR"}, {"type": "CosineAnnealingLR"}]}},
     ["schedulers.flow[0].total_iters is missing"]),
    ("empty chain", {"schedulers": {"flow": []}}, ["schedulers.flow is an empty list"]),
    ("scheduler as a string", {"schedulers": {"flow": "CosineAnnealingLR"}},
     ["schedulers.flow must be a mapping with a 'type'", "got str 'CosineAnnealingLR'"]),
    ("optimizer as a list", {"optimizers": {"flow": ["Lion"]}},
     ["optimizers.flow must be a mapping of optimizer settings, got list"]),
    ("section as a list", {"optimizers": ["vae"]},
     ["optimizers must be a mapping of component name -> settings"]),
    ("misspelt section", {"optimisers": {"vae": {}}},
     ["optimisers is not a section", "did you mean 'optimizers'?"]),
    ("no section", {}, ["the config has none of the sections optimizers, schedulers, scheduler_config"]),
    ("unknown top-level key", {"optimizers": {}, "warmup": 100}, ["warmup is not a section"]),
    ("alias and name together", {"optimizers": {"flow": {}, "flow_processor": {}}},
     ["optimizers.flow_processor and optimizers.flow name the same component"]),
    ("both scheduler sections", {"schedulers": {}, "scheduler_config": {}},
     ["schedulers and scheduler_config are both given"]),
    ("top level not a mapping", [{"optimizers": {}}], ["config must be a file path or a mapping, got list"]),
]


@pytest.mark.parametrize("config, fragments", [c[1:] for c in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS])
def test_malformed_config_fails_before_anything_is_built(config, fragments):
    model = nn.Linear(2, 2)
    with pytest.raises(ConfigError) as err:
        build_optimizers_and_schedulers(config, {"vae": model, "flow": nn.Linear(2, 2)}, 100)
    for fragment in fragments:
        assert fragment in str(err.value)
    assert model.weight.grad is None and not hasattr(model.weight, "_optim_built")
    with pytest.raises(ConfigError):  # validation alone finds it
        load_optim_sched_config(config)


BAD_FILES = [
    ("empty.json", "", ["empty.json: the file is empty"]),
    ("blank.yaml", "   \n\n", ["the file is empty"]),
    ("comments.yaml", "# nothing here\n", ["the file is empty (only comments)"]),
    ("broken.json", '{"optimizers": {"vae": {"lr": 1e-4,}}}', ["invalid JSON at line 1 column"]),
    ("broken.yaml", "schedulers:\n  vae: {type: StepLR\n", ["invalid YAML"]),
    ("tabs.yaml", "schedulers:\n\tvae: 1\n", ["invalid YAML"]),
    ("dup.json", '{"optimizers": {"vae": {}, "vae": {}}}', ["invalid JSON: duplicate key 'vae'"]),
    ("dup.yaml", "schedulers:\n  vae: {type: StepLR}\n  vae: {type: LinearLR}\n", ["duplicate key 'vae'"]),
    ("list.yaml", "- optimizers\n", ["must be a mapping at the top level, got list"]),
    ("config.toml", "[optimizers]\n", ["unsupported file type '.toml'"]),
    ("bad_value.yaml", "schedulers:\n  vae:\n    type: StepLR\n    gamma: -2\n",
     ["bad_value.yaml: schedulers.vae.gamma must be > 0, got -2"]),
]


@pytest.mark.parametrize("name, text, fragments", BAD_FILES, ids=[f[0] for f in BAD_FILES])
def test_malformed_file_fails_with_its_name_and_the_problem(tmp_path, name, text, fragments):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_optim_sched_config(path)
    for fragment in fragments:
        assert fragment in str(err.value)


def test_missing_file_is_an_error_not_a_warning(tmp_path):
    with pytest.raises(ConfigError, match="nope.json: file not found"):
        load_optim_sched_config(str(tmp_path / "nope.json"))


def test_every_problem_is_reported_at_once():
    config = {"optimizers": {"vae": {"lr": -1, "betas": [2, 0.9]}, "flwo": {}},
              "schedulers": {"vae": {"type": "StepLR", "gamma": 0}}}
    with pytest.raises(ConfigError) as err:
        load_optim_sched_config(config)
    assert len(err.value.problems) == 4
    assert str(err.value).startswith("4 problems:\n  - ")
    assert {p.split()[0] for p in err.value.problems} == {"optimizers.vae.lr", "optimizers.vae.betas[0]",
                                                          "optimizers.flwo:", "schedulers.vae.gamma"}


def test_yaml_exponent_floats_are_numbers_and_quoted_numbers_are_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optimizers:\n  vae:\n    lr: 1e-4\n    eps: 1E-8\n    weight_decay: 5.0e-3\n")
    config = load_optim_sched_config(path)
    assert config.optimizers["vae"] == {"lr": 1e-4, "eps": 1e-8, "weight_decay": 5e-3}
    path.write_text("optimizers:\n  vae:\n    lr: '1e-4'\n")
    with pytest.raises(ConfigError, match="write numbers without quotes"):
        load_optim_sched_config(path)


def test_scheduler_config_form_and_aliases(tmp_path):
    path = tmp_path / "s.yml"
    path.write_text("scheduler_config:\n  flow_processor:\n    type: LinearLR\n    total_iters: 10\n")
    config = load_optim_sched_config(path)
    assert config.schedulers == {"flow": {"type": "LinearLR", "total_iters": 10}}
    assert config.components == ["flow"] and config.source == str(path)


def test_inside_a_larger_training_config():
    training = {"training": {"lr": 1e-4, "n_epochs": 2}, "data": {"img_size": 256},
                "scheduler_config": {"vae": {"type": "StepLR", "step_size": 5}}}
    config = load_optim_sched_config(training, strict=False)  # the training schema owns the other keys
    assert config.schedulers == {"vae": {"type": "StepLR", "step_size": 5}} and config.optimizers == {}
    with pytest.raises(ConfigError, match="training is not a section"):
        load_optim_sched_config(training)  # strict by default: a standalone file has only our sections
    with pytest.raises(ConfigError, match="did you mean 'schedulers'"):
        load_optim_sched_config({**training, "schedulrs": {}}, strict=False)  # near-misses still fail


def test_accepted_sources_and_round_trip(tmp_path):
    data = {"optimizers": {"flow": {"type": "Lion", "lr": 5e-7, "betas": [0.9, 0.95]}},
            "schedulers": {"flow": [{"type": "LinearLR", "total_iters": 10}, {"type": "CosineAnnealingLR"}]}}
    path = tmp_path / "c.json"
    path.write_text(json.dumps(data))
    from_file, from_dict = load_optim_sched_config(path), load_optim_sched_config(data)
    assert from_file.optimizers == from_dict.optimizers and from_file.schedulers == from_dict.schedulers
    assert from_file.optimizers["flow"]["betas"] == (0.9, 0.95)  # normalized to what torch expects
    assert load_optim_sched_config(str(path)).schedulers == from_dict.schedulers
    assert load_optim_sched_config(from_dict) is from_dict
    assert load_optim_sched_config(None) == OptimSchedConfig()
    as_json = json.loads(json.dumps(from_dict.to_dict()))
    assert load_optim_sched_config(as_json).schedulers == from_dict.schedulers
    with pytest.raises(ConfigError, match="must be a file path or a mapping, got int"):
        load_optim_sched_config(3)


def test_resolved_settings_show_inheritance_and_defaults():
    config = load_optim_sched_config({"optimizers": {"vae": {"type": "SGD", "lr": 0.1, "momentum": 0.9},
                                                     "vae_decoder": {"nesterov": True}}})
    # no type: the decoder inherits SGD from its parent, so nesterov (an SGD key) validates and merges
    expected = {"type": "SGD", "lr": 0.1, "momentum": 0.9, "nesterov": True}
    assert config.optimizer_config("vae_decoder") == expected
    assert config.optimizer_config("text_encoder", lr=1e-3)["lr"] == pytest.approx(1e-4)
    assert config.optimizer_config("flow_processor")["type"] == "Lion"
    assert config.scheduler_config("vae_encoder") == {"type": "CosineAnnealingLR", "eta_min_factor": 0.1}
    assert config.scheduler_config("text_encoder")["eta_min_factor"] == 0.001


def test_an_empty_optimizers_section_means_defaults():
    built = build_optimizers_and_schedulers({"optimizers": {}}, {"vae": nn.Linear(2, 2)}, 10, lr=0.5)
    assert isinstance(built["vae"].optimizer, torch.optim.AdamW) and built["vae"].lr == 0.5
