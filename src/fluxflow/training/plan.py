"""The ``--dry_run`` plan of a pipeline file's stages (or of a single run): what each stage trains, on what,
for how long, until what, and each optimizer's learning rate at the first and at the last step, computed by
building the real optimizers and schedulers on stand-in modules and stepping them through the stage."""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from dataclasses import fields

from torch import nn
from torch.optim.lr_scheduler import ReduceLROnPlateau

from .config import TrainConfig
from .data import DataConfig
from .errors import ConfigError
from .optim import build_optimizers_and_schedulers
from .stages import TRAINED_BY, Stage, trained_components
def plan_text(stages: list[Stage]) -> str:
    """The ``--dry_run`` plan: per stage its folder, modes, trained and frozen components, weights, data,
    batch, length, end, and each optimizer with its LR at the first and at the last step. Raises
    :class:`ConfigError` when a stage's data cannot be read (its length is counted from it)."""
    blocks, problems, sizes = [], [], {}
    for stage in stages:
        try:
            blocks.append(_stage_block(stage, stages, sizes))
        except ConfigError as err:
            problems += [f"{stage.label}: {q}" for q in err.problems]
    if problems:
        raise ConfigError(problems)
    head = f"fluxflow-train plan: {len(stages)} stage{'s' * (len(stages) > 1)}"
    return "\n\n".join([head, *blocks]) + "\n"


def _stage_block(stage: Stage, stages: list[Stage], sizes: dict) -> str:
    cfg = stage.cfg
    samples, steps_per_epoch = _data_size(cfg, sizes)
    total = cfg.max_train_steps or cfg.n_epochs * steps_per_epoch
    trained = trained_components(cfg)
    rows = [("modes", ", ".join(f for f in TRAINED_BY if getattr(cfg, f)) or "-"),
            ("trains", _trains_text(cfg, trained)),
            ("frozen", _frozen_text(cfg, trained, stage.freeze)),
            ("weights", _weights_text(stage, stages)),
            ("data", _data_text(cfg, samples)),
            ("batch", _batch_text(cfg)),
            ("length", _length_text(cfg, total, steps_per_epoch)),
            ("ends", _ends_text(cfg, total))]
    optim_rows, notes = _optimizer_rows(stage, trained, total)
    rows += [("optimizers" if i == 0 else "", row) for i, row in enumerate(optim_rows)]
    rows += [("notes" if i == 0 else "", note) for i, note in enumerate(notes)]
    return "\n".join([f"{stage.label}  ->  {stage.folder}", *(f"  {key:<12} {text}" for key, text in rows)])


def _processes() -> int:
    return max(int(os.environ.get("WORLD_SIZE", "1") or 1), 1)


def _data_size(cfg: TrainConfig, sizes: dict) -> tuple[int | None, int]:
    """``(samples, optimizer steps per epoch)`` from the data set itself (``None, 0`` when streamed); the
    same data read once per plan."""
    if cfg.streaming:
        return None, 0
    key = (tuple(getattr(cfg, f.name) for f in fields(DataConfig)), cfg.validation_split, cfg.batch_size)
    if key not in sizes:
        from .data import build_dataset, make_dataloader

        try:
            with _quiet_datasets():
                dataset = build_dataset(cfg)
            batches = len(make_dataloader(dataset, cfg.batch_size, 0, seed=cfg.seed))
        except Exception as err:  # any reader's error: the plan cannot count the stage's steps
            why = " ".join(str(err).split()) or type(err).__name__
            raise ConfigError(f"data: cannot read it to count the stage's steps: {why}") from None
        sizes[key] = (len(dataset), batches)
    samples, batches = sizes[key]
    return samples, math.ceil(math.ceil(batches / _processes()) / cfg.training_steps)


@contextlib.contextmanager
def _quiet_datasets():
    """No `datasets` progress bars while the plan counts samples (the plan is what is printed)."""
    import datasets

    shown = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if shown:
            datasets.enable_progress_bars()


def _trains_text(cfg: TrainConfig, trained: dict) -> str:
    names = [c for c in ("vae", "discriminator", "flow", "text_encoder") if c in trained]
    spade_only = cfg.train_spade and not (cfg.train_vae or cfg.gan_training)
    notes = {"vae": " (SPADE layers only)" if spade_only else "", "text_encoder": " (projection heads)"}
    return ", ".join(c + notes.get(c, "") for c in names) or "-"


def _frozen_text(cfg: TrainConfig, trained: dict, freeze: list[str]) -> str:
    present = ["vae", *(["flow", "text_encoder"] if cfg.trains_flow else [])]
    frozen = [c for c in present if c not in trained]
    frozen += [f"{c} (freeze:)" for c in freeze if c not in frozen]
    return ", ".join(frozen) or "-"


def _weights_text(stage: Stage, stages: list[Stage]) -> str:
    cfg = stage.cfg
    if stage.index > 1:
        return f"from {stages[stage.index - 2].label} ({cfg.model_checkpoint})" + _new_models(stage, stages)
    if not (cfg.model_checkpoint or cfg.pretrained_vae_model_name_or_path):
        return f"new models ({cfg.model_preset} preset)"
    parts = [f"model_checkpoint {cfg.model_checkpoint}"] if cfg.model_checkpoint else []
    if cfg.pretrained_vae_model_name_or_path:
        sub = f" ({cfg.pretrained_vae_subfolder})" if cfg.pretrained_vae_subfolder else ""
        parts.append(f"VAE {cfg.pretrained_vae_model_name_or_path}{sub} (pretrained, frozen)")
        parts += [] if cfg.model_checkpoint else [f"the other models new ({cfg.model_preset} preset)"]
    return "; ".join(parts)


def _new_models(stage: Stage, stages: list[Stage]) -> str:
    """``"; new flow processor (small preset)"`` for a model no earlier stage had (when that is known)."""
    if stages[0].cfg.model_checkpoint:
        return ""
    earlier = [s.cfg for s in stages[:stage.index - 1]]
    new = [what for what, flag in (("flow processor", "trains_flow"), ("discriminator", "gan_training"))
           if getattr(stage.cfg, flag) and not any(getattr(c, flag) for c in earlier)]
    return "".join(f"; new {what} ({stage.cfg.model_preset} preset)" for what in new)


def _data_text(cfg: TrainConfig, samples: int | None) -> str:
    if cfg.source == "datasets":
        subset = f" ({cfg.dataset_config_name})" if cfg.dataset_config_name else ""
        text = f"{cfg.dataset_name}{subset} split {cfg.dataset_split}{', streamed' * cfg.streaming}"
    elif cfg.source == "captions_file":
        text = f"{cfg.data_path} with {cfg.captions_file}"
    else:
        text = f"{cfg.data_path} (imagefolder)"
    text += f", {samples} samples" if samples is not None else ""
    text += f", {cfg.img_size} px" + (" (aspect buckets)" if cfg.aspect_buckets else "")
    if cfg.validation_split:
        text += f"; validation: {cfg.validation_split:.0%} held out"
    elif cfg.validates:
        text += f"; validation: {cfg.validation_data_path or cfg.validation_dataset_name}"
    return text


def _batch_text(cfg: TrainConfig) -> str:
    procs = _processes()
    per_step = cfg.batch_size * cfg.training_steps * procs
    return (f"{cfg.batch_size} per process x {cfg.training_steps} accumulation x {procs} "
            f"process{'es' * (procs > 1)} = {per_step} images per optimizer step")


def _length_text(cfg: TrainConfig, total: int, steps_per_epoch: int) -> str:
    if cfg.max_train_steps:
        return f"{total} optimizer steps (max_train_steps)"
    return f"{total} optimizer steps = {cfg.n_epochs} epoch{'s' * (cfg.n_epochs > 1)} x {steps_per_epoch}"


def _ends_text(cfg: TrainConfig, total: int) -> str:
    if cfg.early_stop_metric:
        return (f"when {cfg.early_stop_metric} ({cfg.early_stop_mode}) has not improved by more than "
                f"{cfg.early_stop_threshold:g} for {cfg.early_stop_patience} evaluations; at most {total} "
                "steps")
    return f"after {total} optimizer steps" if cfg.max_train_steps else \
        f"after {cfg.n_epochs} epoch{'s' * (cfg.n_epochs > 1)}"


def _optimizer_rows(stage: Stage, trained: dict, total: int) -> tuple[list[str], list[str]]:
    """One aligned row per optimizer (type, LR at the first and the last step, scheduler), built for real on
    stand-in modules and stepped through the stage; and the notes: warnings, components configured but not
    trained."""
    cfg = stage.cfg
    modules = {c: _stand_in(c, cfg) for c in ("vae", "discriminator", "flow", "text_encoder") if c in trained}
    if not modules or total < 1:
        return [], []
    multiplier = cfg.batch_size * cfg.training_steps * _processes() if cfg.scale_lr else 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step", category=UserWarning)
        try:
            built = build_optimizers_and_schedulers(stage.optim, modules, total, lr=cfg.lr,
                                                    lr_multiplier=multiplier)
        except (ConfigError, ValueError) as err:
            raise ConfigError(f"optimizers/schedulers: {err}") from None
        first = {name: c.lr for name, c in built.items()}
        stepped = [c for c in built.values() if not isinstance(c.scheduler, ReduceLROnPlateau)]
        for _ in range(total - 1):  # the LR of step n is the one after n - 1 scheduler steps
            for c in stepped:
                c.step()
    width = max(map(len, built), default=0)
    rows = []
    for name, c in built.items():
        schedule = c.scheduler_config
        kind = " -> ".join(e["type"] for e in schedule) if isinstance(schedule, list) else schedule["type"]
        end = f"-> {c.lr:.3g}" if c in stepped else f"then follows its metric {c.monitor!r}"
        rows.append(f"{name:<{width}}  {c.optimizer_config['type']:<7} lr {first[name]:.3g} {end}  ({kind})")
    notes = [f"{name}: configured but not trained in this stage" if why.startswith("configured") else
             f"{name}: configured, but this stage trains none of its parameters"
             for name, why in built.skipped.items() if name in stage.optim.components]
    notes += [" ".join(str(w.message).split()) for w in caught]
    return rows, notes


def _stand_in(component: str, cfg: TrainConfig) -> nn.Module:
    """A one-weight module per component; the VAE's in its compressor and expander, which vae_encoder /
    vae_decoder entries take their parameters from (train_spade alone trains only the expander's)."""
    if component != "vae":
        return nn.Linear(1, 1, bias=False)
    vae = nn.ModuleDict({half: nn.Linear(1, 1, bias=False) for half in ("compressor", "expander")})
    vae.compressor.requires_grad_(cfg.train_vae or cfg.gan_training)
    return vae
