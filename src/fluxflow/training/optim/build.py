"""Optimizers and LR schedulers per model component, built from an ``OptimSchedConfig``.

Every optimizer and scheduler is the torch class of the same name (Lion: ``lion_pytorch.Lion``);
this module only maps config entries onto their arguments. Step counting: ``total_steps`` is the number
of *optimizer* steps of the whole run, and the trainer steps each scheduler once per optimizer step
itself (``ComponentOptim.step``) instead of handing schedulers to ``accelerator.prepare`` (which would
step them once per process). The LR curve is then the same for any process count and accumulation.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

import torch
from torch import nn
from torch.optim import lr_scheduler as lrs

from ..errors import ConfigError, did_you_mean
from .config import OptimSchedConfig, load_optim_sched_config
from .imported import ESTIMATED_LR, is_import_path, resolve_optimizer
from .schema import (
    ALIASES,
    COMPONENTS,
    DEFAULT_LR,
    SCHEDULER_DEFAULTS,
    SUBCOMPONENTS,
    auto_step_size,
    canonical,
    chain_length,
    check_optimizer_consistency,
    component_list,
    is_constant_schedule,
    validate_optimizer_entry,
    validate_scheduler_spec,
)
from .train_eval import ensure_train_mode, evaluation_mode, needs_train_eval  # noqa: F401 - re-exported here


def _optimizer_class(type_: str) -> type[torch.optim.Optimizer]:
    """The class of a built-in name, or the one an import path names (checked when the entry was)."""
    if is_import_path(type_):
        return resolve_optimizer(type_)
    if type_ == "Lion":
        from lion_pytorch import Lion  # imported only when used

        return Lion
    return {"AdamW": torch.optim.AdamW, "Adam": torch.optim.Adam, "SGD": torch.optim.SGD,
            "RMSprop": torch.optim.RMSprop}[type_]


def _takes_weight_decay(cls: type) -> bool:
    """Whether a per-group ``weight_decay`` means anything to ``cls`` (one of its arguments)."""
    params = inspect.signature(cls.__init__).parameters
    return "weight_decay" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


# ---------------------------------------------------------------------------------------------- optimizer


def parameter_groups(params: nn.Module | Iterable[torch.Tensor], decay_bias_and_norm: bool = False
                     ) -> list[dict[str, Any]]:
    """Trainable parameters split into a decayed group and a ``weight_decay=0`` group.

    Biases and norm weights (every tensor with fewer than 2 dimensions, as in nanoGPT) are not decayed:
    pulling a norm's scale or a bias towards 0 is not regularization. ``decay_bias_and_norm=True``
    keeps one group that the optimizer's ``weight_decay`` applies to entirely.
    """
    tensors = params.parameters() if isinstance(params, nn.Module) else params
    trainable = [p for p in tensors if p.requires_grad]
    if decay_bias_and_norm:
        groups = [{"params": trainable}]
    else:
        groups = [{"params": [p for p in trainable if p.dim() >= 2]},
                  {"params": [p for p in trainable if p.dim() < 2], "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def build_optimizer(params: nn.Module | Iterable[torch.Tensor], cfg: Mapping[str, Any], *,
                    lr: float | None = None, path: str = "optimizer") -> torch.optim.Optimizer:
    """The optimizer ``cfg["type"]`` (default AdamW) over the trainable ``params``.

    ``type`` is a built-in name (torch's, lion-pytorch's Lion) or the import path of any optimizer class.
    ``cfg`` takes the keys of the reference (``lr``, ``betas``, ``weight_decay``, ``eps``, ``amsgrad``,
    ``momentum``, ``nesterov``, ``decoupled_weight_decay``, ...) or the class's own arguments, plus
    ``decay_bias_and_norm``; a missing ``lr`` comes from ``lr`` (``--lr``; Prodigy: 1.0); keys not given keep
    the class's own defaults. A schedule-free optimizer is returned in train mode, ready to step.
    """
    problems: list[str] = []
    entry = validate_optimizer_entry(path, cfg, "AdamW", problems)
    if entry is not None:
        check_optimizer_consistency(path, entry, problems)
    if problems:
        raise ConfigError(problems)
    kwargs = dict(entry)
    type_ = kwargs.pop("type", "AdamW")
    kwargs.setdefault("lr", ESTIMATED_LR.get(type_, lr))
    if kwargs["lr"] is None:
        raise ConfigError(f"{path}.lr is missing; set it in the config or pass --lr")
    _warn_estimated_lr(path, type_, kwargs["lr"])
    cls = _optimizer_class(type_)
    one_group = kwargs.pop("decay_bias_and_norm", False) or not _takes_weight_decay(cls)
    groups = parameter_groups(params, one_group)
    if not groups:
        raise ValueError(f"{path}: no trainable parameters (all are frozen or none were given)")
    optimizer = cls(groups, **kwargs)
    ensure_train_mode(optimizer)
    return optimizer


def _warn_estimated_lr(path: str, type_: str, lr: float) -> None:
    """Prodigy estimates the step size and multiplies it by lr: anything far from 1.0 is most likely an
    AdamW-style lr by habit."""
    expected = ESTIMATED_LR.get(type_)
    if expected is not None and not expected / 10 <= lr <= expected * 10:
        warnings.warn(f"{path}.lr is {lr:g} but {type_} estimates the step size itself and expects lr "
                      f"{expected:g} (its authors' default; lr multiplies the estimate): leave lr out, or "
                      f"keep it near {expected:g}", stacklevel=3)


# ---------------------------------------------------------------------------------------------- scheduler


def _check_total_steps(total_steps: Any) -> None:
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
        raise ConfigError(f"total_steps must be a positive whole number of optimizer steps, "
                          f"got {total_steps!r}")


def _initial_lr(optimizer: torch.optim.Optimizer) -> float:
    lrs_ = {float(g.get("initial_lr", g["lr"])) for g in optimizer.param_groups}  # torchao's are tensors
    if len(lrs_) != 1:
        raise ValueError(f"eta_min_factor needs one initial LR for all parameter groups, got {sorted(lrs_)}")
    return float(lrs_.pop())


def _build_one(optimizer: torch.optim.Optimizer, entry: Mapping[str, Any], span: int, base_lr: float
               ) -> lrs.LRScheduler:
    """One torch scheduler; ``span`` is the number of steps its "auto" value stands for."""
    type_ = entry["type"]
    e = {**SCHEDULER_DEFAULTS[type_], **entry}
    if type_ == "CosineAnnealingLR":
        return lrs.CosineAnnealingLR(optimizer, T_max=e.get("T_max", span),
                                     eta_min=base_lr * e["eta_min_factor"])
    if type_ == "LinearLR":
        return lrs.LinearLR(optimizer, start_factor=e["start_factor"], end_factor=e["end_factor"],
                            total_iters=e.get("total_iters", span))
    if type_ == "ExponentialLR":
        return lrs.ExponentialLR(optimizer, gamma=e["gamma"])
    if type_ == "ConstantLR":
        return lrs.ConstantLR(optimizer, factor=e["factor"], total_iters=e.get("total_iters", span))
    if type_ == "StepLR":
        return lrs.StepLR(optimizer, step_size=e.get("step_size", auto_step_size(span)), gamma=e["gamma"])
    return lrs.ReduceLROnPlateau(optimizer, mode=e["mode"], factor=e["factor"], patience=e["patience"],
                                 threshold=e["threshold"], threshold_mode=e["threshold_mode"],
                                 cooldown=e["cooldown"])


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: Mapping[str, Any] | list, total_steps: int, *,
                    path: str = "scheduler") -> lrs.LRScheduler:
    """The torch scheduler ``cfg["type"]`` for ``optimizer``, its "auto" values sized to ``total_steps``.

    A list of entries is chained with ``SequentialLR``: each entry runs for its ``total_iters`` (a cosine:
    its ``T_max``) and the last one's "auto" values cover the steps left. Step it once per optimizer step.
    """
    _check_total_steps(total_steps)
    problems: list[str] = []
    spec = validate_scheduler_spec(path, cfg, problems)
    if problems:
        raise ConfigError(problems)
    if needs_train_eval(optimizer) and not is_constant_schedule(spec):
        raise ConfigError(f"{path}: a schedule-free optimizer ({type(optimizer).__name__}) carries its own "
                          f"schedule; its scheduler can only be ConstantLR with factor 1 (warm-up: the "
                          f"optimizer's warmup_steps)")
    base_lr = _initial_lr(optimizer)
    if isinstance(spec, dict):
        _warn_short_cosine(path, spec, total_steps)
        return _build_one(optimizer, spec, total_steps, base_lr)
    lengths = [chain_length(e) for e in spec[:-1]]
    used = sum(lengths)
    if used >= total_steps:
        warnings.warn(f"{path}: the chain's first schedulers take {used} steps, which is all of the run's "
                      f"{total_steps}; the last scheduler never runs", stacklevel=2)
    last_span = chain_length(spec[-1]) or max(1, total_steps - used)
    spans = [*lengths, last_span]
    for i, (entry, span) in enumerate(zip(spec, spans, strict=True)):
        _warn_short_cosine(f"{path}[{i}]", entry, span)
    schedulers = [_build_one(optimizer, e, n, base_lr) for e, n in zip(spec, spans, strict=True)]
    return lrs.SequentialLR(optimizer, schedulers, milestones=list(accumulate(lengths)))


def _warn_short_cosine(path: str, entry: Mapping[str, Any], span: int) -> None:
    if entry["type"] == "CosineAnnealingLR" and entry.get("T_max", span) < span:
        warnings.warn(f"{path}.T_max is {entry['T_max']} but it runs for {span} steps: torch's cosine climbs "
                      f"back to the initial LR after T_max steps and repeats every {2 * entry['T_max']}",
                      stacklevel=3)


# ------------------------------------------------------------------------------------------------ results


@dataclass(eq=False)
class ComponentOptim:
    """One component's optimizer and scheduler, with the resolved settings they were built from."""

    name: str
    optimizer: torch.optim.Optimizer
    scheduler: lrs.LRScheduler
    optimizer_config: dict[str, Any]
    scheduler_config: dict[str, Any] | list[dict[str, Any]]
    monitor: str | None = None  # for ReduceLROnPlateau: the metric the trainer passes to step()

    def step(self, metric: float | torch.Tensor | None = None) -> bool:
        """Advance the scheduler by exactly one optimizer step; call it right after ``optimizer.step()``.

        Under gradient accumulation call it only when ``accelerator.sync_gradients`` is true. If the
        (accelerate-prepared) optimizer reports ``step_was_skipped`` (fp16 overflow) the scheduler is not
        stepped either, as Accelerate does. ReduceLROnPlateau needs ``metric``. Returns whether it stepped.
        """
        if getattr(self.optimizer, "step_was_skipped", False):
            return False
        if isinstance(self.scheduler, lrs.ReduceLROnPlateau):
            if metric is None:
                raise ValueError(f"{self.name}: ReduceLROnPlateau steps on a metric; call step(metric=<the "
                                 f"{self.monitor!r} value of this step>)")
            self.scheduler.step(float(metric))
        else:
            self.scheduler.step()
        return True

    @property
    def lr(self) -> float:
        """The LR the next optimizer step will use."""
        return float(self.optimizer.param_groups[0]["lr"])


@dataclass(eq=False)
class OptimSchedSet(Mapping[str, ComponentOptim]):
    """Every component's ``ComponentOptim`` by name, plus the components that got none and why.

    ``state_dict``/``load_state_dict`` cover the schedulers, which Accelerate does not save when they are
    not prepared: ``accelerator.register_for_checkpointing(optim_set)``. Optimizers, once prepared, are
    saved by ``accelerator.save_state`` itself.
    """

    components: dict[str, ComponentOptim]
    total_steps: int
    skipped: dict[str, str] = field(default_factory=dict)

    def __getitem__(self, name: str) -> ComponentOptim:
        return self.components[canonical(name)]

    def __iter__(self) -> Iterator[str]:
        return iter(self.components)

    def __len__(self) -> int:
        return len(self.components)

    def lrs(self) -> dict[str, float]:
        """Current LR per component (what ``save_lrs`` writes and logs show)."""
        return {name: c.lr for name, c in self.components.items()}

    def state_dict(self) -> dict[str, Any]:
        return {"total_steps": self.total_steps,
                "schedulers": {name: c.scheduler.state_dict() for name, c in self.components.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        saved = state["schedulers"]
        if set(saved) != set(self.components):
            raise ValueError(f"scheduler state is for components {sorted(saved)}, this run has "
                             f"{sorted(self.components)}")
        if state.get("total_steps", self.total_steps) != self.total_steps:
            warnings.warn(f"the scheduler state was saved by a run of {state['total_steps']} steps and this "
                          f"run has {self.total_steps}: the loaded schedulers keep their saved lengths "
                          f"(T_max, total_iters, ...)", stacklevel=2)
        for name, sched_state in saved.items():
            self.components[name].scheduler.load_state_dict(sched_state)


# ----------------------------------------------------------------------------------------------- building


def _canonical_names(mapping: Mapping[str, Any], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        name = canonical(key)
        if name not in COMPONENTS:
            hint = did_you_mean(key, [*COMPONENTS, *ALIASES])
            raise ConfigError(f"{what}: {key!r} is not a component{hint}; components: {component_list()}")
        if name in out:
            raise ConfigError(f"{what}: {key!r} and {name!r} name the same component")
        out[name] = value
    return out


def _units(config: OptimSchedConfig, modules: Mapping[str, nn.Module]) -> dict[str, nn.Module]:
    """Modules that get their own optimizer: the given ones plus configured sub-components of them."""
    units: dict[str, nn.Module] = {}
    for name, module in modules.items():
        if not isinstance(module, nn.Module):
            raise TypeError(f"components[{name!r}] must be an nn.Module, got {type(module).__name__}")
        for sub, (parent, attr) in SUBCOMPONENTS.items():
            if parent == name and sub in config.components and sub not in modules:
                child = getattr(module, attr, None)
                if not isinstance(child, nn.Module):
                    raise ConfigError(f"{sub} is configured but components[{name!r}] "
                                      f"({type(module).__name__}) has no .{attr} submodule")
                units[sub] = child
        units[name] = module
    return units


def _claim_parameters(units: Mapping[str, nn.Module]) -> dict[str, list[nn.Parameter]]:
    """Trainable parameters per unit, each in exactly one: sub-components claim theirs before the parent."""
    owner: dict[int, str] = {}
    claimed: dict[str, list[nn.Parameter]] = {}
    for name in sorted(units, key=lambda n: n not in SUBCOMPONENTS):
        claimed[name] = []
        for p in units[name].parameters():
            if not p.requires_grad:
                continue
            if id(p) in owner:
                if SUBCOMPONENTS.get(owner[id(p)], ("",))[0] != name:
                    warnings.warn(f"a parameter of {name} already belongs to {owner[id(p)]}'s optimizer; "
                                  f"it stays there", stacklevel=3)
                continue
            owner[id(p)] = name
            claimed[name].append(p)
    return {name: claimed[name] for name in units}


def _initial_lr_for(name: str, initial_lrs: Mapping[str, float]) -> float | None:
    if name in initial_lrs:
        return initial_lrs[name]
    parent = SUBCOMPONENTS.get(name, (None,))[0]
    return initial_lrs.get(parent) if parent else None


def _warn_lion_decoupled(name: str, cfg: Mapping[str, Any], total_steps: int) -> None:
    wd = cfg.get("weight_decay", 0.0)
    if cfg["type"] == "Lion" and cfg.get("decoupled_weight_decay") and wd * total_steps >= 1:
        warnings.warn(
            f"optimizers.{name}: Lion with decoupled_weight_decay multiplies the weights by (1 - {wd:g}) "
            f"every step at the initial LR (lion-pytorch divides weight_decay by it); over {total_steps} "
            f"steps that can shrink weights by up to exp(-{wd * total_steps:.3g}). Use "
            f"decoupled_weight_decay false (decay scaled by the LR, as in the Lion paper) or a much smaller "
            f"weight_decay.", stacklevel=3)


def build_optimizers_and_schedulers(config: Any, components: Mapping[str, nn.Module], total_steps: int, *,
                                    lr: float = DEFAULT_LR, initial_lrs: Mapping[str, float] | None = None,
                                    lr_multiplier: float = 1.0) -> OptimSchedSet:
    """One optimizer and one scheduler per trained component.

    ``config``: anything ``load_optim_sched_config`` accepts. ``components``: name -> module of what is
    trained (``{"vae": vae, "flow": transformer, ...}``); a configured ``vae_encoder``/``vae_decoder`` takes
    ``vae.compressor``/``vae.expander`` out of the VAE's optimizer; frozen parameters are left out; a
    component with no trainable parameter, or configured but not given, is listed in ``skipped``.
    ``lr`` is ``--lr`` (for entries without ``lr``). ``initial_lrs`` (``--preserve_lr``, see ``load_lrs``)
    replaces the starting LR of the components it names, sub-components falling back to their parent.
    ``lr_multiplier`` (``--scale_lr``: the effective batch) multiplies every other component's own configured
    LR, a sub-component's included. ``total_steps``: optimizer steps of the whole run.
    """
    cfg = load_optim_sched_config(config)
    _check_total_steps(total_steps)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ConfigError(f"--lr must be a positive number, got {lr!r}")
    initial = _canonical_names(initial_lrs or {}, "initial_lrs")
    units = _units(cfg, _canonical_names(components, "components"))
    result = OptimSchedSet({}, total_steps)
    for name in cfg.components:
        if name not in units:
            result.skipped[name] = "configured but not among the trained components"
    for name, params in _claim_parameters(units).items():
        if not params:
            result.skipped[name] = "no trainable parameters"
            continue
        opt_cfg = cfg.optimizer_config(name, lr)
        if (start := _initial_lr_for(name, initial)) is not None:
            opt_cfg["lr"] = start
        elif not cfg.uses_estimated_lr(name):  # Prodigy's 1.0 is not scaled by the batch
            opt_cfg["lr"] *= lr_multiplier
        _warn_lion_decoupled(name, opt_cfg, total_steps)
        optimizer = build_optimizer(params, opt_cfg, path=f"optimizers.{name}")
        sched_cfg = cfg.scheduler_config(name)
        scheduler = build_scheduler(optimizer, sched_cfg, total_steps, path=f"schedulers.{name}")
        monitor = None
        if isinstance(scheduler, lrs.ReduceLROnPlateau):
            monitor = sched_cfg.get("monitor", SCHEDULER_DEFAULTS["ReduceLROnPlateau"]["monitor"])
        result.components[name] = ComponentOptim(name, optimizer, scheduler, opt_cfg, sched_cfg, monitor)
    return result


# ------------------------------------------------------------------------------------------------ curves


def lr_curves(config: Any, total_steps: int, *, lr: float = DEFAULT_LR, metric: float = 1.0,
              strict: bool = True) -> dict[str, list[float]]:
    """LR of every configured component at optimizer steps 0..total_steps, as training would use them.

    Built through ``build_optimizers_and_schedulers`` on stand-in modules, so it is the training curve.
    ReduceLROnPlateau is fed the constant ``metric``: its curve is the one of a loss that never improves.
    An empty config shows the defaults of flow, vae, text_encoder and discriminator.
    """
    cfg = load_optim_sched_config(config, strict=strict)
    names = cfg.components or ["flow", "vae", "text_encoder", "discriminator"]
    modules: dict[str, nn.Module] = {}
    for name in names:
        parent = SUBCOMPONENTS.get(name, (name,))[0]
        if parent == "vae":
            modules["vae"] = nn.ModuleDict({"compressor": nn.Linear(2, 2, bias=False),
                                            "expander": nn.Linear(2, 2, bias=False)})
        else:
            modules[parent] = nn.Linear(2, 2, bias=False)
    with warnings.catch_warnings():
        # no optimizer.step() runs here: silence only torch's "scheduler before optimizer" notice
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step", category=UserWarning)
        built = build_optimizers_and_schedulers(cfg, modules, total_steps, lr=lr)
        curves = {name: [c.lr] for name, c in built.items()}
        for _ in range(total_steps):
            for name, c in built.items():
                c.step(metric)
                curves[name].append(c.lr)
    return curves
