"""Multi-stage pipelines, the config side: a `stages:` list merged, validated in full, planned (--dry_run)."""

import math
import shutil

import pytest
import yaml

from fluxflow.datasets.shapes import write_shapes_dataset
from fluxflow.training.arguments import load_config, parse_config
from fluxflow.training.config import TrainConfig
from fluxflow.training.errors import ConfigError
from fluxflow.training.plan import plan_text
from fluxflow.training.stages import load_pipeline, single_stage


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """12 shapes images of 32 px: an imagefolder split."""
    return write_shapes_dataset(tmp_path_factory.mktemp("shapes"), 12, size=32) / "train"


@pytest.fixture
def head(data, tmp_path):
    """The shared top level of every pipeline file here."""
    return f"data_path: {data}\nimg_size: 32\nmodel_preset: tiny\noutput_path: {tmp_path / 'out'}\n"


def load(tmp_path, text, *argv):
    path = tmp_path / "pipeline.yaml"
    path.write_text(text, encoding="utf-8")
    return load_pipeline(["--config", str(path), *argv])


def problems(tmp_path, text, *argv) -> list[str]:
    with pytest.raises(ConfigError, match="pipeline.yaml") as err:
        load(tmp_path, text, *argv)
    return err.value.problems


TWO = """stages:
  - name: vae
    train_vae: true
    max_train_steps: 10
  - name: flow
    train_diff_full: true
"""


# ------------------------------------------------------------------------------------------ merging


def test_no_stages_is_a_single_run(tmp_path, head):
    assert load_pipeline(["--train_vae"]) is None
    assert load(tmp_path, head + "train_vae: true\n") is None


def test_a_single_run_refuses_a_pipeline_file(tmp_path, head):
    path = tmp_path / "pipeline.yaml"
    path.write_text(head + TWO, encoding="utf-8")
    with pytest.raises(ConfigError, match="stages: this file is a multi-stage pipeline"):
        load_config(["--config", str(path)])
    path.write_text(head + "train_vae: true\ndefaults:\n  batch_size: 4\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="defaults: is merged under every stage of a pipeline"):
        parse_config(["--config", str(path)])


def test_precedence_top_then_defaults_then_stage_then_command_line(tmp_path, head):
    text = head + """lr: 3.0e-4
kl_beta: 0.01
batch_size: 8
log_interval: 5
defaults:
  kl_beta: 0.02
  training: {batch_size: 4}
stages:
  - name: a
    train_vae: true
    batch_size: 2
    log_interval: 6
  - name: b
    train_vae: true
"""
    top, (a, b) = load(tmp_path, text, "--log_interval", "7")
    assert (a.cfg.lr, a.cfg.kl_beta, a.cfg.batch_size, a.cfg.log_interval) == (3e-4, 0.02, 2, 7)
    assert (b.cfg.lr, b.cfg.kl_beta, b.cfg.batch_size, b.cfg.log_interval) == (3e-4, 0.02, 4, 7)
    assert top.output_path == str(tmp_path / "out") and top.log_interval == 7


def test_stage_folders_and_weights_of_later_stages(tmp_path, head):
    top, (vae, flow) = load(tmp_path, head + TWO, "--dry_run")
    assert top.dry_run and not vae.cfg.dry_run and not flow.cfg.dry_run
    assert vae.folder == tmp_path / "out" / "stages" / "1-vae" and (vae.index, vae.name) == (1, "vae")
    assert flow.folder == tmp_path / "out" / "stages" / "2-flow" and flow.label == "stage 2 'flow'"
    assert vae.cfg.model_checkpoint is None
    assert flow.cfg.model_checkpoint == str(vae.folder / "checkpoint.safetensors")


def test_per_stage_optimizer_sections(tmp_path, head):
    text = head + """schedulers: {vae: {type: LinearLR}, flow: {type: LinearLR}}
stages:
  - name: vae
    train_vae: true
    optimizers: {vae: {type: AdamW, lr: 1.0e-3}}
    schedulers: {vae: {type: CosineAnnealingLR}}
  - name: flow
    train_diff_full: true
"""
    _, (vae, flow) = load(tmp_path, text)
    assert vae.optim.optimizers == {"vae": {"type": "AdamW", "lr": 1e-3}}
    assert vae.optim.schedulers == {"vae": {"type": "CosineAnnealingLR"}}
    assert flow.optim.schedulers["flow"] == {"type": "LinearLR"} and not flow.optim.optimizers


def test_the_highest_optimizer_config_wins_whole(tmp_path, head):
    """A stage's own optim_sched_config file replaces the top level's sections; the command line's replaces
    every stage's sections."""
    (tmp_path / "optim.yaml").write_text("optimizers: {flow: {lr: 5.0e-5}}\n", encoding="utf-8")
    text = head + """optimizers: {vae: {lr: 1.0e-3}}
stages:
  - name: vae
    train_vae: true
    schedulers: {vae: {type: LinearLR}}
  - name: flow
    train_diff_full: true
    optim_sched_config: %s
""" % (tmp_path / "optim.yaml")
    _, (vae, flow) = load(tmp_path, text)
    assert vae.optim.schedulers == {"vae": {"type": "LinearLR"}} and not vae.optim.optimizers
    assert flow.optim.optimizers == {"flow": {"lr": 5e-5}}
    _, stages = load(tmp_path, text, "--optim_sched_config", str(tmp_path / "optim.yaml"))
    assert all(s.optim.optimizers == {"flow": {"lr": 5e-5}} and not s.optim.schedulers for s in stages)


def test_transition_sets_the_flags(tmp_path, head):
    text = head + """max_train_steps: 99
validation_split: 0.25
stages:
  - name: a
    train_vae: true
    transition: {steps: 500}
  - name: b
    train_diff_full: true
    transition: {epochs: 2}
  - name: c
    train_diff_full: true
    transition: {metric: val/flow/loss, patience: 4, threshold: 0.001, mode: min, max_steps: 5000}
"""
    _, (a, b, c) = load(tmp_path, text)
    assert a.cfg.max_train_steps == 500 and a.transition == {"steps": 500}
    assert (b.cfg.n_epochs, b.cfg.max_train_steps) == (2, None)  # the top's 99 would end it first
    assert (c.cfg.early_stop_metric, c.cfg.early_stop_patience, c.cfg.early_stop_threshold,
            c.cfg.early_stop_mode, c.cfg.max_train_steps) == ("val/flow/loss", 4, 0.001, "min", 5000)


def test_after_stage_lets_a_flow_only_stage_follow(tmp_path, head, data):
    _, (_, flow) = load(tmp_path, head + TWO)
    assert flow.cfg.trains_flow and not flow.cfg.train_vae
    flow_only = TrainConfig(data_path=str(data), img_size=32, model_preset="tiny", train_diff_full=True,
                            output_path=str(tmp_path / "o"))
    with pytest.raises(ConfigError, match="flow training without --train_vae needs a trained VAE"):
        flow_only.validate()
    flow_only.validate(after_stage=True)
    assert "flow training without --train_vae" in " ".join(problems(tmp_path, head + """stages:
  - name: flow
    train_diff_full: true
"""))


def test_config_dict_is_a_single_run_config(tmp_path, head):
    own = "max_train_steps: 10\n    optimizers: {vae: {lr: 2.0e-4}}"
    text = head + TWO.replace("max_train_steps: 10", own)
    _, (vae, flow) = load(tmp_path, text)
    path = tmp_path / "stage1.yaml"
    path.write_text(yaml.safe_dump(vae.config_dict()), encoding="utf-8")
    cfg, optim = load_config(["--config", str(path)])
    assert cfg == vae.cfg and optim.optimizers == {"vae": {"lr": 2e-4}}
    assert flow.config_dict()["model_checkpoint"] == str(vae.folder / "checkpoint.safetensors")


# ------------------------------------------------------------------------------------------- errors


def test_every_problem_of_every_stage_in_one_error(tmp_path, head):
    text = head + """stages:
  - name: vae
    train_vae: true
    output_path: elsewhere
    lrr: 1.0e-4
    transition: {step: 10}
  - name: flow
    train_diff_full: true
    model_checkpoint: x.safetensors
    freeze: [flow]
  - name: flow
    train_vae: true
    config: other.yaml
    transition: {metric: loss/vae}
"""
    found = problems(tmp_path, text)
    expected = [
        "stage 1 'vae': output_path cannot be set per stage: each stage writes to <output_path>/stages/",
        "stage 1 'vae': lrr is not an option (did you mean 'lr'?)",
        "stage 1 'vae': transition.step is not a transition key (did you mean 'steps'?)",
        "stage 2 'flow': model_checkpoint is for the first stage only: stage 2 starts from stage 1's weights",
        "stage 2 'flow': freeze: flow is trained by train_diff_full",
        "stage 3 'flow': config cannot be set per stage",
        "stage 3 'flow': transition.metric needs max_steps",
        "stage 3 'flow': name 'flow' is taken by stage 2",
    ]
    for message in expected:
        assert any(message in p for p in found), (message, found)


@pytest.mark.parametrize("stages,message", [
    ("stages: {name: a}\n", "stages must be a list of stages"),
    ("stages: []\n", "stages is empty"),
    ("stages:\n  - train_vae\n", "stage 1: must be a mapping of options with a name, got str"),
    ("stages:\n  - train_vae: true\n", "stage 1: name is required"),
    ("stages:\n  - {name: a b, train_vae: true}\n", "stage 1: name must be letters, digits, _ and -"),
    ("stages:\n  - {name: a, train_vae: true, resume_from_checkpoint: latest}\n",
     "stage 1 'a': resume_from_checkpoint cannot be set per stage"),
    ("stages:\n  - {name: a, train_vae: true, dry_run: true}\n",
     "stage 1 'a': dry_run cannot be set per stage"),
    ("defaults: {output_path: x}\nstages:\n  - {name: a, train_vae: true}\n",
     "defaults.output_path cannot be set per stage"),
    ("defaults: {model_checkpoint: x}\nstages:\n  - {name: a, train_vae: true}\n",
     "defaults.model_checkpoint would apply to every stage"),
    ("defaults: {batch_sise: 2}\nstages:\n  - {name: a, train_vae: true}\n",
     "defaults.batch_sise is not an option (did you mean 'batch_size'?)"),
    ("stages:\n  - {name: a, train_vae: true, transition: [steps, 10]}\n",
     "stage 1 'a': transition must be a mapping"),
    ("stages:\n  - {name: a, train_vae: true, transition: {steps: 10, epochs: 2}}\n",
     "stage 1 'a': transition: give one of steps, epochs or metric, not steps and epochs"),
    ("stages:\n  - {name: a, train_vae: true, transition: {steps: 0}}\n",
     "stage 1 'a': transition.steps must be >= 1, got 0"),
    ("stages:\n  - {name: a, train_vae: true, transition: {patience: 2}}\n",
     "stage 1 'a': transition.patience goes with transition.metric"),
    ("stages:\n  - {name: a, train_vae: true, transition: {metric: loss/vae, mode: up, max_steps: 9}}\n",
     "stage 1 'a': transition.mode must be one of 'min', 'max', got 'up'"),
    ("stages:\n  - {name: a, train_vae: true, max_train_steps: 5, transition: {steps: 10}}\n",
     "stage 1 'a': transition.steps and max_train_steps both set the stage's max_train_steps: give one"),
    ("stages:\n  - {name: a, train_vae: true, optim_sched_config: x.json, optimizers: {vae: {lr: 1.0}}}\n",
     "stage 1 'a': give the optimizer/scheduler config either with optim_sched_config or in"),
    ("stages:\n  - {name: a, train_vae: true, optimizers: {vea: {lr: 1.0}}}\n",
     "stage 1 'a': optimizers.vea"),
])
def test_bad_pipelines_are_named(tmp_path, head, stages, message):
    assert any(message in p for p in problems(tmp_path, head + stages)), message


def test_a_problem_shared_by_stages_is_said_once(tmp_path, head):
    found = problems(tmp_path, head + "kl_beta: -1\n" + TWO)
    assert found == ["stage 1 'vae', stage 2 'flow': --kl_beta must be >= 0, got -1"]


def test_freeze_and_unfreeze(tmp_path, head):
    text = head + """stages:
  - name: vae
    train_vae: true
    freeze: [text_encoder, flow_processor]
  - name: flow
    train_diff_full: true
    unfreeze: [text_encoder]
    freeze: [discriminator]
"""
    _, (vae, flow) = load(tmp_path, text)
    assert vae.freeze == ["text_encoder", "flow"] and not vae.cfg.train_text_encoder
    assert flow.cfg.train_text_encoder and flow.unfreeze == ["text_encoder"]
    bad = head + """stages:
  - name: vae
    train_vae: true
    gan_training: true
    freeze: [vea, discriminator]
    unfreeze: [text_encoder]
  - name: flow
    train_diff_full: true
    unfreeze: [vae, flow]
  - name: joint
    train_vae: true
    train_diff_full: true
    freeze: [vae]
    unfreeze: [text_encoder]
"""
    found = problems(tmp_path, bad)
    for message in [
        "stage 1 'vae': freeze: 'vea' is not a component (did you mean 'vae'?); components: flow (alias",
        "stage 1 'vae': freeze: discriminator is trained by gan_training",
        "stage 1 'vae': unfreeze: text_encoder trains it with the flow processor (train_text_encoder)",
        "stage 2 'flow': unfreeze: vae is trained by train_vae or gan_training or train_spade",
        "stage 2 'flow': unfreeze: flow is trained by train_diff or train_diff_full",
        "stage 3 'joint': freeze: vae is trained by train_vae",
    ]:
        assert any(message in p for p in found), (message, found)
    assert len(found) == 6, found
    assert "must be a list of component names" in problems(tmp_path, head + """stages:
  - {name: a, train_vae: true, freeze: vae}
""")[0]


def test_fsdp_and_deepspeed_refuse_vae_stages(tmp_path, head, monkeypatch):
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    found = problems(tmp_path, head + TWO)
    assert found == ["stage 1 'vae': FSDP runs only flow stages (train_diff_full / train_diff); train the "
                     "VAE and GAN with DDP (accelerate_configs/multi_gpu.yaml): run those stages in a launch "
                     "of their own"]
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "false")
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    assert problems(tmp_path, head + TWO)[0].startswith("stage 1 'vae': DeepSpeed runs only flow stages")


def test_later_stage_image_size_against_the_first_stage_vae(tmp_path, head):
    text = head + TWO + "    img_size: 36\n"
    found = problems(tmp_path, text)
    assert len(found) == 1 and found[0].startswith("stage 2 'flow': --img_size must be a multiple of"), found


def test_top_level_resume(tmp_path, head):
    top, _ = load(tmp_path, head + TWO, "--resume_from_checkpoint", "latest")
    assert top.resume_from_checkpoint == "latest"
    elsewhere = tmp_path / "state" / "checkpoint-3"
    elsewhere.mkdir(parents=True)
    found = problems(tmp_path, head + TWO, "--resume_from_checkpoint", str(elsewhere))
    assert found[0].startswith("--resume_from_checkpoint must be 'latest' in a pipeline (it continues")


# --------------------------------------------------------------------------------------------- plan


def test_plan_shows_modes_lengths_and_learning_rates(tmp_path, head):
    text = head + """stages:
  - name: vae
    train_vae: true
    train_spade: true
    max_train_steps: 100
    optimizers: {vae: {type: AdamW, lr: 1.0e-3}}
    schedulers: {vae: {type: CosineAnnealingLR, eta_min_factor: 0.01}}
  - name: flow
    train_diff_full: true
    batch_size: 4
    unfreeze: [text_encoder]
    schedulers: {flow: {type: ReduceLROnPlateau}}
    transition: {epochs: 2}
"""
    _, stages = load(tmp_path, text)
    plan = plan_text(stages)
    vae, flow = plan.split("\n\n")[1:]
    assert vae.startswith(f"stage 1 'vae'  ->  {tmp_path / 'out' / 'stages' / '1-vae'}")
    assert "  modes        train_vae, train_spade\n" in vae and "  trains       vae\n" in vae
    assert "  weights      new models (tiny preset)" in vae and "100 optimizer steps (max_train_steps)" in vae
    last = 1e-5 + (1e-3 - 1e-5) * (1 + math.cos(math.pi * 99 / 100)) / 2  # the LR of step 100 of 100
    assert last < 1.1e-5 and f"vae  AdamW   lr 0.001 -> {last:.3g}  (CosineAnnealingLR)" in vae
    assert "  modes        train_diff_full, train_text_encoder\n" in flow
    assert "  frozen       vae\n" in flow
    assert f"from stage 1 'vae' ({stages[0].folder / 'checkpoint.safetensors'})" in flow
    assert "12 samples, 32 px" in flow
    assert "4 per process x 1 accumulation x 1 process = 4 images per optimizer step" in flow
    assert "6 optimizer steps = 2 epochs x 3" in flow and "ends         after 2 epochs" in flow
    assert "then follows" in flow and "(ReduceLROnPlateau)" in flow and "text_encoder" in flow


def test_plan_of_a_single_run_and_of_unreadable_data(tmp_path, data):
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    run = ["--train_vae", "--img_size", "32", "--model_preset", "tiny", "--n_epochs", "3", "--batch_size",
           "5"]
    cfg, optim = load_config([*run, "--data_path", str(copy), "--output_path", str(tmp_path / "run")])
    plan = plan_text([single_stage(cfg, optim)])
    assert f"stage 1 'run'  ->  {tmp_path / 'run'}" in plan and "9 optimizer steps = 3 epochs x 3" in plan
    shutil.rmtree(copy)
    with pytest.raises(ConfigError, match="stage 1 'run': data: cannot read it to count the stage's steps"):
        plan_text([single_stage(cfg, optim)])


def test_plan_of_sub_components_and_configured_but_untrained(tmp_path, head):
    text = head + """stages:
  - name: vae
    train_vae: true
    max_train_steps: 10
    optimizers: {vae_encoder: {lr: 1.0e-5}, vae_decoder: {lr: 2.0e-4}, flow: {lr: 1.0e-3}}
"""
    _, stages = load(tmp_path, text)
    plan = plan_text(stages)
    assert "vae_encoder  AdamW   lr 1e-05" in plan and "vae_decoder  AdamW   lr 0.0002" in plan
    assert "notes        flow: configured but not trained in this stage" in plan
    assert "vae: configured" not in plan  # the VAE's parameters all went to its two halves


def test_a_lora_stage_must_be_the_last(tmp_path, head):
    pytest.importorskip("peft")
    text = head + ("stages:\n  - {name: vae, train_vae: true, max_train_steps: 1}\n"
                   "  - {name: lora, train_diff_full: true, lora_rank: 2, max_train_steps: 1}\n"
                   "  - {name: flow, train_diff_full: true, max_train_steps: 1}\n")
    found = problems(tmp_path, text)
    assert any("stage 2 'lora'" in p and "must be the last stage" in p for p in found), found
    last = head + ("stages:\n  - {name: vae, train_vae: true, train_diff_full: true, max_train_steps: 1}\n"
                   "  - {name: lora, train_diff_full: true, lora_rank: 2, max_train_steps: 1}\n")
    _, stages = load(tmp_path, last)
    assert stages[-1].cfg.lora_rank == 2
