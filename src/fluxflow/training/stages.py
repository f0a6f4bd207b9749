"""A pipeline file's stages: training runs one after another, each starting from the previous one's weights.

A ``--config`` file with a ``stages:`` list (docs/TRAINING.md) is read here. Each stage's options are
merged, lowest first: built-in default < the file's top level < ``defaults:`` < the stage's keys (and its
``transition:`` / ``unfreeze:``) < the command line, which applies to every stage. Each stage becomes a
``TrainConfig`` writing to ``<output_path>/stages/<i>-<name>``, validated with every other stage before
anything is built: one ``ConfigError`` names every problem, each after its stage. ``plan.plan_text`` is the
``--dry_run`` plan (of a single run too, through :func:`single_stage`).
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..models.presets import PRESETS, preset_config
from ..models.transformer import PATCH_SIZES
from .arguments import PIPELINE_KEYS, parse_command_line, read_config_mapping, read_options, sections_config
from .checkpoint_check import (checkpoint_problems, checkpoint_sizes, pretrained_vae_downsampling,
                               pretrained_vae_problems)
from .config import TrainConfig, folder_problems
from .errors import ConfigError, did_you_mean
from .optim import OptimSchedConfig
from .optim.schema import ALIASES, COMPONENTS, canonical, component_list
from .schema import INVALID, check_value

NAME = re.compile(r"[A-Za-z0-9_-]+")
STAGE_KEYS = ("name", "transition", "freeze", "unfreeze")
# options of the whole pipeline, which a stage (or defaults:) may not set: why
PIPELINE_ONLY = {
    "output_path": "each stage writes to <output_path>/stages/<i>-<name>; set output_path at the top "
                   "level",
    "resume_from_checkpoint": "it resumes the whole pipeline: give it at the top level or on the command "
                              "line",
    "dry_run": "it plans the whole pipeline: give --dry_run on the command line",
    "config": "a stage is part of the one --config file",
}
FIRST_ONLY = ("model_checkpoint", "pretrained_vae_model_name_or_path", "pretrained_vae_subfolder")
# transition: key -> the flag it sets
TRANSITION = {"steps": "max_train_steps", "epochs": "n_epochs", "metric": "early_stop_metric",
              "patience": "early_stop_patience", "threshold": "early_stop_threshold",
              "mode": "early_stop_mode", "max_steps": "max_train_steps"}
ENDS = ("steps", "epochs", "metric")
# mode flag -> the optimizer/scheduler components it trains
TRAINED_BY = {"train_vae": ("vae", "vae_encoder", "vae_decoder"),
              "gan_training": ("discriminator", "vae", "vae_encoder", "vae_decoder"),
              "train_spade": ("vae", "vae_decoder"), "train_diff": ("flow",), "train_diff_full": ("flow",),
              "train_text_encoder": ("text_encoder",)}
LAUNCHERS = {"FSDP": "ACCELERATE_USE_FSDP", "DeepSpeed": "ACCELERATE_USE_DEEPSPEED"}


@dataclass
class Stage:
    """One run of a pipeline: its merged, validated config (writing to its own folder) and what it ends on."""

    index: int  # 1-based
    name: str
    cfg: TrainConfig
    optim: OptimSchedConfig
    freeze: list[str] = field(default_factory=list)
    unfreeze: list[str] = field(default_factory=list)
    transition: dict = field(default_factory=dict)  # as written, {} when none

    @property
    def folder(self) -> Path:
        return Path(self.cfg.output_path)

    @property
    def label(self) -> str:
        return f"stage {self.index} '{self.name}'"

    def config_dict(self) -> dict:
        """The stage as a single run's ``--config`` file: the options that differ from their defaults (never
        the Hub token) and the optimizer/scheduler sections, unless ``optim_sched_config`` names a file."""
        default = asdict(TrainConfig())
        out = {k: v for k, v in asdict(self.cfg).items() if v != default[k] and k != "hub_token"}
        sections = {} if self.cfg.optim_sched_config else self.optim.to_dict()
        return {**out, **{k: v for k, v in sections.items() if v}}


def single_stage(cfg: TrainConfig, optim: OptimSchedConfig | None = None) -> Stage:
    """A single run as a one-stage pipeline, for :func:`plan_text` (``--dry_run`` without ``stages:``)."""
    return Stage(1, "run", cfg, optim or OptimSchedConfig())


# ------------------------------------------------------------------------------------------- reading


@dataclass
class _Layer:
    """One level of a stage's options: training values, and the optimizer/scheduler sections it gives."""

    values: dict
    optim: OptimSchedConfig | None = None
    has_sections: bool = False


@dataclass
class _Spec:
    """A stage as written: its own layer, the lists and the transition."""

    index: int
    name: str
    layer: _Layer
    freeze: list[str]
    unfreeze: list[str]
    transition: dict


def load_pipeline(argv: list[str] | None = None) -> tuple[TrainConfig, list[Stage]] | None:
    """``None`` when there is no ``--config`` file with ``stages:`` (a single run:
    ``arguments.load_config``); else the top-level config (checked for output_path and
    resume_from_checkpoint only) and the stages, all validated. Raises one :class:`ConfigError` naming every
    problem of every stage."""
    given, config_file = parse_command_line(argv)
    data = read_config_mapping(config_file) if config_file else {}
    if "stages" not in data:
        return None
    problems: list[str] = []
    top_values, top_sections = read_options({k: v for k, v in data.items() if k not in PIPELINE_KEYS},
                                            problems, extra=PIPELINE_KEYS)
    top_layer = _layer(top_values, top_sections, problems, "")
    defaults = _defaults_layer(data.get("defaults"), problems)
    cli = _Layer({k: v for k, v in given.items() if k not in PIPELINE_ONLY})
    top = TrainConfig(**{**top_values, **given})
    pairs: list[tuple[str, str]] = []  # (stage label, problem)
    stages = []
    for spec in _read_stages(data["stages"], pairs, problems):
        previous = stages[-1] if stages else None
        stages.append(_build(spec, [top_layer, defaults, spec.layer, cli], top, previous, pairs))
    pairs += _chain_problems(stages)
    top_problems = _top_problems(top)
    if any(q.startswith("--output_path ") for q in top_problems):  # the stage folders lie inside: said once
        pairs = [(label, q) for label, q in pairs if not q.startswith("--output_path ")]
    problems += top_problems + _grouped(pairs)
    if problems:
        raise ConfigError(problems, source=str(config_file))
    return top, stages


def _layer(values: dict, sections: dict, problems: list[str], where: str) -> _Layer:
    if sections and values.get("optim_sched_config"):
        problems.append(f"{where}give the optimizer/scheduler config either with optim_sched_config or in "
                        "optimizers:/schedulers:/scheduler_config: sections, not both")
    return _Layer(values, sections_config(sections, problems, where), bool(sections))


def _defaults_layer(raw, problems: list[str]) -> _Layer:
    """``defaults:``, merged under every stage: no option of the whole pipeline, none of the first stage's."""
    if raw is None:
        return _Layer({})
    if not isinstance(raw, dict):
        problems.append(f"defaults must be a mapping of options, got {type(raw).__name__}")
        return _Layer({})
    values, sections = read_options(raw, problems, where="defaults.", extra=("config",))
    for key in [k for k in PIPELINE_ONLY if k in values or k in raw]:
        values.pop(key, None)
        problems.append(f"defaults.{key} cannot be set per stage: {PIPELINE_ONLY[key]}")
    for key in [k for k in FIRST_ONLY if k in values]:
        values.pop(key)
        problems.append(f"defaults.{key} would apply to every stage, but it is for the first one only (later "
                        "stages start from the previous stage's weights): set it at the top level or in "
                        "stage 1")
    return _layer(values, sections, problems, "defaults: ")


def _read_stages(raw, pairs: list, problems: list[str]) -> list[_Spec]:
    if not isinstance(raw, list):
        problems.append(f"stages must be a list of stages (mappings with a name and options), got "
                        f"{type(raw).__name__}")
        return []
    if not raw:
        problems.append("stages is empty: give at least one stage (a mapping with a name and options)")
    specs, seen = [], {}
    for index, item in enumerate(raw, 1):
        spec = _read_stage(index, item, pairs)
        if spec is None:
            continue
        if spec.name in seen:
            pairs.append((f"stage {index} '{spec.name}'", f"name {spec.name!r} is taken by stage "
                          f"{seen[spec.name]}: names must be unique (they name the stage folders)"))
        seen.setdefault(spec.name, index)
        specs.append(spec)
    return specs


def _read_stage(index: int, raw, pairs: list) -> _Spec | None:
    """One ``stages:`` entry; its problems go to ``pairs`` under its label."""
    if not isinstance(raw, dict):
        pairs.append((f"stage {index}", "must be a mapping of options with a name, got "
                                         f"{type(raw).__name__}"))
        return None
    name, p = raw.get("name"), []
    good_name = isinstance(name, str) and NAME.fullmatch(name) is not None
    if name is None:
        p.append("name is required (letters, digits, _ and -; it names the stage's folder)")
    elif not good_name:
        p.append(f"name must be letters, digits, _ and - (it names the stage's folder), got {name!r}")
    name = name if good_name else str(index)
    values, sections = read_options(raw, p, extra=(*STAGE_KEYS, "config"))
    for key in [k for k in PIPELINE_ONLY if k in values or k in raw]:
        values.pop(key, None)
        p.append(f"{key} cannot be set per stage: {PIPELINE_ONLY[key]}")
    for key in [k for k in FIRST_ONLY if k in values and index > 1]:
        values.pop(key)
        p.append(f"{key} is for the first stage only: stage {index} starts from stage {index - 1}'s weights")
    transition = {} if raw.get("transition") is None else raw["transition"]
    values.update(_transition(transition, values, p))
    freeze = _components("freeze", raw.get("freeze"), p)
    unfreeze = _components("unfreeze", raw.get("unfreeze"), p)
    p += [f"{c} is in both freeze and unfreeze" for c in freeze if c in unfreeze]
    layer = _layer(values, sections, p, "")
    label = f"stage {index} '{name}'" if good_name else f"stage {index}"
    pairs += [(label, q) for q in p]
    return _Spec(index, name, layer, freeze, unfreeze, transition if isinstance(transition, dict) else {})


def _transition(raw, stage_values: dict, p: list[str]) -> dict:
    """The flags of a ``transition:`` (``steps`` -> max_train_steps, ``epochs`` -> n_epochs, ``metric`` ->
    early_stop_metric with patience, threshold, mode and the cap max_steps)."""
    if not isinstance(raw, dict):
        p.append(f"transition must be a mapping: steps: N, epochs: N, or metric: NAME with max_steps: N (and "
                 f"patience, threshold, mode); got {type(raw).__name__} {raw!r}")
        return {}
    checks = {f.name: f.metadata.get("check") for f in fields(TrainConfig)}
    out = {}
    for key, value in raw.items():
        if key not in TRANSITION:
            p.append(f"transition.{key} is not a transition key{did_you_mean(key, TRANSITION)}; use "
                     f"{', '.join(TRANSITION)}")
        elif (v := check_value(f"transition.{key}", value, checks[TRANSITION[key]], p)) is not INVALID:
            out[TRANSITION[key]] = v
    ends = [k for k in ENDS if k in raw]
    if len(ends) > 1:
        p.append(f"transition: give one of steps, epochs or metric, not {' and '.join(ends)}")
    if "metric" not in raw:
        p += [f"transition.{k} goes with transition.metric"
              for k in ("patience", "threshold", "mode", "max_steps") if k in raw]
    elif "max_steps" not in raw:
        p.append("transition.metric needs max_steps: the cap on the stage's optimizer steps, should the "
                 "metric keep improving")
    if "epochs" in raw:
        out.setdefault("max_train_steps", None)  # else a max_train_steps from the top level would end it
    for key in [k for k in raw if k in TRANSITION]:
        flags = [TRANSITION[key], *(["max_train_steps"] if key == "epochs" else [])]
        p += [f"transition.{key} and {flag} both set the stage's {flag}: give one" for flag in flags
              if flag in stage_values]
    return out


def _components(key: str, raw, p: list[str]) -> list[str]:
    """``freeze:`` / ``unfreeze:``: component names of the optimizer/scheduler config (aliases allowed)."""
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(n, str) for n in raw):
        p.append(f"{key} must be a list of component names ({component_list()}), got {raw!r}")
        return []
    out = []
    for name in raw:
        if canonical(name) not in COMPONENTS:
            hint = did_you_mean(name, [*COMPONENTS, *ALIASES])
            p.append(f"{key}: {name!r} is not a component{hint}; components: {component_list()}")
        elif canonical(name) not in out:
            out.append(canonical(name))
    return out


# ------------------------------------------------------------------------------------------ building


def _merge(layers: list[_Layer]) -> tuple[dict, OptimSchedConfig | None]:
    """Values layer over layer; the optimizer config of the highest layer that gives one (sections or an
    ``optim_sched_config`` file), whole."""
    values, optim = {}, None
    for layer in layers:
        if layer.has_sections:
            values.pop("optim_sched_config", None)
            optim = layer.optim
        if layer.values.get("optim_sched_config"):
            optim = None
        values.update(layer.values)
    return values, optim


def _build(spec: _Spec, layers: list[_Layer], top: TrainConfig, previous: Stage | None, pairs: list
           ) -> Stage:
    """The stage's merged config, validated; problems to ``pairs``. A later stage's ``model_checkpoint`` is
    the previous stage's ``checkpoint.safetensors`` (set after validation: it does not exist yet)."""
    values, optim = _merge(layers)
    if previous is not None:
        values.update(dict.fromkeys(FIRST_ONLY))
    folder = Path(top.output_path, "stages", f"{spec.index}-{spec.name}")
    cfg = TrainConfig(**{**values, "output_path": str(folder), "dry_run": False,
                         "resume_from_checkpoint": None})
    p = _freeze_problems(cfg, spec.freeze, spec.unfreeze) + _launch_problems(cfg)
    try:
        optim = cfg.validate(optim, after_stage=previous is not None)
    except ConfigError as err:
        p += err.problems
    if previous is not None:
        cfg.model_checkpoint = str(previous.folder / "checkpoint.safetensors")
    stage = Stage(spec.index, spec.name, cfg, optim or OptimSchedConfig(), spec.freeze, spec.unfreeze,
                  spec.transition)
    pairs += [(stage.label, q) for q in p]
    return stage


def trained_components(cfg: TrainConfig) -> dict[str, str]:
    """``{component: the mode flag that trains it}`` (the first one given, in the order of TRAINED_BY)."""
    out: dict[str, str] = {}
    for flag, components in TRAINED_BY.items():
        if getattr(cfg, flag):
            for c in components:
                out.setdefault(c, flag)
    return out


def _freeze_problems(cfg: TrainConfig, freeze: list[str], unfreeze: list[str]) -> list[str]:
    """A stage freezes only what its modes do not train; it unfreezes only the text encoder (which sets
    train_text_encoder); everything else is trained by its mode flag."""
    trained = trained_components(cfg)
    p = [f"freeze: {c} is trained by {trained[c]}; drop it from freeze: or turn {trained[c]} off"
         for c in freeze if c in trained]
    for c in unfreeze:
        if c != "text_encoder":
            flags = " or ".join(f for f, trains in TRAINED_BY.items() if c in trains and "text" not in f)
            p.append(f"unfreeze: {c} is trained by {flags}: set that in the stage (unfreeze: takes only "
                     "text_encoder)")
        elif cfg.trains_flow:
            cfg.train_text_encoder = True
        else:
            p.append("unfreeze: text_encoder trains it with the flow processor (train_text_encoder), which "
                     "needs train_diff or train_diff_full")
    return p


def _launch_problems(cfg: TrainConfig) -> list[str]:
    """Under ``accelerate launch`` with FSDP or DeepSpeed only flow stages run (``run._check_launch``)."""
    kind = next((k for k, env in LAUNCHERS.items() if os.environ.get(env, "").lower() == "true"), None)
    p = []
    if kind and cfg.trains_vae:
        p.append(f"{kind} runs only flow stages (train_diff_full / train_diff); train the VAE and GAN with "
                 "DDP (accelerate_configs/multi_gpu.yaml): run those stages in a launch of their own")
    if kind == "FSDP" and cfg.use_ema:
        p.append("use_ema is not supported with FSDP (the average would be sharded too); use "
                 "accelerate_configs/deepspeed_zero2.yaml or multi_gpu.yaml for an EMA stage")
    return p


def _chain_problems(stages: list[Stage]) -> list[tuple[str, str]]:
    """What only the sequence shows: a later stage's image size against the VAE of stage 1 and the flow
    processor of the first stage that has one; no VAE training after a (frozen) pretrained VAE; LoRA only last."""
    pairs = [(stage.label, f"--lora_rank {stage.cfg.lora_rank}: a LoRA stage saves only its adapter, so it must be "
                            "the last stage (the next one starts from a whole checkpoint)")
             for stage in stages[:-1] if stage.cfg.lora_rank]
    first = stages[0].cfg if stages else None
    if first is None or first.model_preset not in PRESETS or first.flow_patch_size not in (None, *PATCH_SIZES):
        return pairs  # the rest is named by stage 1's own checks
    down = _vae_downsampling(first)
    patch = _checkpoint_sizes(first)[1] or (_flow_patch(first) if first.trains_flow else None)
    for stage in stages[1:]:
        cfg = stage.cfg
        if patch is None and cfg.trains_flow and cfg.model_preset in PRESETS \
                and cfg.flow_patch_size in (None, *PATCH_SIZES):
            patch = _flow_patch(cfg)
        if first.pretrained_vae_model_name_or_path and cfg.trains_vae:
            pairs.append((stage.label, "train_vae, gan_training and train_spade train a FluxFlowVAE, but the "
                                       "VAE is stage 1's pretrained_vae_model_name_or_path (frozen)"))
        elif down:
            pairs += [(stage.label, q) for q in cfg.image_size_problems(down, patch or 1)]
    return pairs


def _checkpoint_sizes(cfg: TrainConfig) -> tuple[int | None, int | None]:
    ok = cfg.model_checkpoint and not checkpoint_problems(cfg.model_checkpoint)
    return checkpoint_sizes(cfg.model_checkpoint) if ok else (None, None)


def _vae_downsampling(first: TrainConfig) -> int | None:
    """The downsampling of the VAE the pipeline starts with (later stages keep it); ``None``: unknown here."""
    name, subfolder = first.pretrained_vae_model_name_or_path, first.pretrained_vae_subfolder
    if name:
        ok = os.path.exists(name) and not pretrained_vae_problems(name, subfolder)
        return pretrained_vae_downsampling(name, subfolder) if ok else None
    if first.model_checkpoint:
        return _checkpoint_sizes(first)[0]
    channels = first.vae_block_out_channels or preset_config(first.model_preset, "vae")["block_out_channels"]
    return 2 ** (len(channels) - 1)


def _flow_patch(cfg: TrainConfig) -> int:
    return cfg.flow_patch_size or preset_config(cfg.model_preset, "transformer")["patch_size"]


def _top_problems(top: TrainConfig) -> list[str]:
    """``output_path`` creatable; ``resume_from_checkpoint`` only 'latest': each stage resumes from its own
    latest state, and finished stages are skipped (``staged.py``)."""
    p = folder_problems("--output_path", top.output_path)
    resume = top.resume_from_checkpoint
    if resume and resume != "latest":
        p.append("--resume_from_checkpoint must be 'latest' in a pipeline (it continues where the pipeline "
                 f"stopped: finished stages are skipped, the next resumes from its latest state), got {resume!r}")
    return p


def _grouped(pairs: list[tuple[str, str]]) -> list[str]:
    """In stage order, ``"stage 1 'vae', stage 2 'flow': <problem>"``: a problem several stages share (a
    shared value) said once."""
    labels: dict[str, list[str]] = {}
    for label, problem in sorted(pairs, key=lambda pair: int(pair[0].split()[1])):  # "stage <i> ..."
        if label not in labels.setdefault(problem, []):
            labels[problem].append(label)
    return [f"{', '.join(ls)}: {problem}" for problem, ls in labels.items()]
