"""Loading an optimizer/scheduler config (JSON, YAML or a dict) into a validated ``OptimSchedConfig``.

Accepted forms: ``{"optimizers": {...}, "schedulers": {...}}`` (either may be absent), a
``scheduler_config:`` mapping of component -> scheduler, and either inside a larger training config.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, did_you_mean
from ..files import read_structured_file
from .imported import ESTIMATED_LR, is_schedule_free
from .schema import (
    ALIASES,
    COMPONENT_OPTIMIZERS,
    COMPONENT_SCHEDULERS,
    COMPONENTS,
    DEFAULT_LR,
    DEFAULT_SCHEDULER,
    LR_SCALE,
    SUBCOMPONENTS,
    canonical,
    check_optimizer_consistency,
    component_list,
    is_constant_schedule,
    validate_optimizer_entry,
    validate_scheduler_spec,
)

SECTIONS = ("optimizers", "schedulers", "scheduler_config")
# The scheduler of a schedule-free optimizer without a scheduler entry: it carries its own schedule.
SCHEDULE_FREE_SCHEDULER: dict[str, Any] = {"type": "ConstantLR", "factor": 1.0}


@dataclass(frozen=True)
class OptimSchedConfig:
    """A validated config: per canonical component name, the optimizer and scheduler entries as written.

    Defaults are not filled in here because they depend on ``--lr``; ``optimizer_config`` and
    ``scheduler_config`` give the complete settings a component is built with.
    """

    optimizers: dict[str, dict[str, Any]] = field(default_factory=dict)
    schedulers: dict[str, dict[str, Any] | tuple[dict[str, Any], ...]] = field(default_factory=dict)
    source: str | None = None

    @property
    def components(self) -> list[str]:
        """Components named in the config, in canonical order."""
        return [c for c in COMPONENTS if c in self.optimizers or c in self.schedulers]

    def optimizer_config(self, name: str, lr: float = DEFAULT_LR) -> dict[str, Any]:
        """The settings ``name``'s optimizer is built with: its entry over the defaults it inherits.

        Base: the component's defaults (a sub-component: its parent's resolved settings) with
        ``lr * LR_SCALE``; an entry naming a different ``type`` drops the base's type-specific keys. An
        optimizer that estimates its step size (Prodigy) gets its documented lr (1.0) unless one is
        configured.
        """
        name = canonical(name)
        parent = SUBCOMPONENTS.get(name, (None,))[0]
        if parent is not None:
            base = self.optimizer_config(parent, lr)
        else:
            base = {**COMPONENT_OPTIMIZERS[name], "lr": lr * LR_SCALE.get(name, 1.0)}
        entry = self.optimizers.get(name, {})
        if "type" in entry and entry["type"] != base["type"]:
            estimated = parent is not None and self.uses_estimated_lr(parent)  # Prodigy's 1.0: not for others
            base = {"type": entry["type"], "lr": lr * LR_SCALE.get(name, 1.0) if estimated else base["lr"]}
        resolved = {**base, **copy.deepcopy(entry)}
        if self.uses_estimated_lr(name):
            resolved["lr"] = ESTIMATED_LR[resolved["type"]]
        return resolved

    def optimizer_type(self, name: str) -> str:
        """The optimizer ``type`` ``name`` is built with: a built-in name or an import path."""
        name = canonical(name)
        own = self.optimizers.get(name, {}).get("type")
        if own is not None:
            return own
        if name in SUBCOMPONENTS:
            return self.optimizer_type(SUBCOMPONENTS[name][0])
        return COMPONENT_OPTIMIZERS[name]["type"]

    def lr_is_configured(self, name: str) -> bool:
        """Whether ``name``'s lr is written in the config: its entry's, or its parent's of the same type."""
        name = canonical(name)
        if "lr" in self.optimizers.get(name, {}):
            return True
        parent = SUBCOMPONENTS.get(name, (None,))[0]
        return parent is not None and self.optimizer_type(parent) == self.optimizer_type(name) \
            and self.lr_is_configured(parent)

    def uses_estimated_lr(self, name: str) -> bool:
        """Whether ``name`` runs an optimizer that estimates its step size with no lr configured: it gets the
        lr its authors document (``ESTIMATED_LR``) instead of ``--lr``, and ``--scale_lr`` leaves it alone."""
        return self.optimizer_type(name) in ESTIMATED_LR and not self.lr_is_configured(name)

    def scheduler_config(self, name: str) -> dict[str, Any] | list[dict[str, Any]]:
        """``name``'s scheduler entry (a list for a chain); else its parent's; else the component default."""
        name = canonical(name)
        if name in self.schedulers:
            spec = self.schedulers[name]
            return [dict(e) for e in spec] if isinstance(spec, tuple) else dict(spec)
        parent = SUBCOMPONENTS.get(name, (None,))[0]
        if parent is not None and self.scheduler_entry_of(name) is not None:
            return self.scheduler_config(parent)
        if is_schedule_free(self.optimizer_type(name)):
            return dict(SCHEDULE_FREE_SCHEDULER)
        return dict(COMPONENT_SCHEDULERS.get(name, COMPONENT_SCHEDULERS.get(parent, DEFAULT_SCHEDULER)))

    def scheduler_entry_of(self, name: str) -> str | None:
        """The component whose scheduler entry ``name`` uses (itself or its parent); ``None``: the default."""
        name = canonical(name)
        if name in self.schedulers:
            return name
        parent = SUBCOMPONENTS.get(name, (None,))[0]
        return self.scheduler_entry_of(parent) if parent else None

    def to_dict(self) -> dict[str, Any]:
        """The config as plain JSON-able data (for logs and checkpoint metadata)."""
        def plain(v: Any) -> Any:
            if isinstance(v, (tuple, list)):
                return [plain(x) for x in v]
            if isinstance(v, Mapping):
                return {k: plain(x) for k, x in v.items()}
            return v

        return {"optimizers": plain(self.optimizers), "schedulers": plain(self.schedulers)}


def load_optim_sched_config(source: Any, *, strict: bool = True) -> OptimSchedConfig:
    """Read and validate a config from a ``.json``/``.yaml``/``.yml`` path or a mapping.

    ``None`` gives the empty config (every component on its defaults); an ``OptimSchedConfig`` is
    returned as is. With ``strict=False`` top-level keys other than ours are left to the larger training
    config they belong to, except near-misses of our section names, which stay errors.
    Raises ``ConfigError`` listing every problem, each with its key path.
    """
    if source is None:
        return OptimSchedConfig()
    if isinstance(source, OptimSchedConfig):
        return source
    if isinstance(source, (str, os.PathLike)):
        label = str(source)
        data = read_structured_file(Path(source))
    elif isinstance(source, Mapping):
        label, data = None, source
    else:
        raise ConfigError(f"an optimizer/scheduler config must be a file path or a mapping, "
                          f"got {type(source).__name__}")
    problems: list[str] = []
    config = _parse(data, strict, problems)
    if problems:
        raise ConfigError(problems, label)
    return OptimSchedConfig(config.optimizers, config.schedulers, label)


# ----------------------------------------------------------------------------------------------- parsing


def _parse(data: Any, strict: bool, problems: list[str]) -> OptimSchedConfig:
    if not isinstance(data, Mapping):
        problems.append(f"the config must be a mapping at the top level, got {type(data).__name__}")
        return OptimSchedConfig()
    for key in data:
        if key in SECTIONS:
            continue
        hint = did_you_mean(key, SECTIONS, cutoff=0.75)
        if strict or hint:
            problems.append(f"{key} is not a section of an optimizer/scheduler config{hint}; "
                            f"sections: {', '.join(SECTIONS)}")
    if not any(s in data for s in SECTIONS):
        if not problems:
            problems.append(f"the config has none of the sections {', '.join(SECTIONS)}")
        return OptimSchedConfig()
    if "schedulers" in data and "scheduler_config" in data:
        problems.append("schedulers and scheduler_config are both given; they mean the same, use one")
    opt_entries = _components_of("optimizers", data.get("optimizers", {}), problems)
    optimizers = {}
    # Parents first, so that a sub-component without a type inherits its parent's.
    for name in sorted(opt_entries, key=lambda n: n in SUBCOMPONENTS):
        path, entry = opt_entries[name]
        parent_type = _optimizer_type(SUBCOMPONENTS[name][0], optimizers) if name in SUBCOMPONENTS else None
        default_type = parent_type or COMPONENT_OPTIMIZERS[name]["type"]
        checked = validate_optimizer_entry(path, entry, default_type, problems)
        if checked is not None:
            optimizers[name] = checked
    section = "scheduler_config" if "scheduler_config" in data else "schedulers"
    schedulers, sched_paths = {}, {}
    for name, (path, spec) in _components_of(section, data.get(section, {}), problems).items():
        sched_paths[name] = path
        checked = validate_scheduler_spec(path, spec, problems)
        if checked is not None:
            schedulers[name] = checked
    config = OptimSchedConfig(optimizers, schedulers)
    for name in optimizers:
        check_optimizer_consistency(opt_entries[name][0], config.optimizer_config(name), problems)
    _check_schedule_free(config, sched_paths, problems)
    return config


def _check_schedule_free(config: OptimSchedConfig, paths: Mapping[str, str], problems: list[str]) -> None:
    """A schedule-free optimizer carries its own schedule: its scheduler may only be a constant one."""
    for name in COMPONENTS:
        type_, owner = config.optimizer_type(name), config.scheduler_entry_of(name)
        if owner is None or not is_schedule_free(type_) or is_constant_schedule(config.schedulers[owner]):
            continue
        if owner != name and is_schedule_free(config.optimizer_type(owner)):
            continue  # reported at the parent, whose entry it is
        spec = config.schedulers[owner]
        got = " -> ".join(e["type"] for e in spec) if isinstance(spec, tuple) else spec["type"]
        used = "" if owner == name else f" (the scheduler of {owner}, which {name} uses)"
        where = paths.get(owner, f"schedulers.{owner}")
        problems.append(f"{where}{used}: {name} runs {type_}, a schedule-free optimizer that carries its "
                        f"own schedule, so its scheduler can only be ConstantLR with factor 1 (or none), got "
                        f"{got}; put a warm-up in optimizers.{name}.warmup_steps")


def _optimizer_type(name: str, optimizers: Mapping[str, Mapping[str, Any]]) -> str:
    return optimizers.get(name, {}).get("type", COMPONENT_OPTIMIZERS[name]["type"])


def _components_of(section: str, value: Any, problems: list[str]) -> dict[str, tuple[str, Any]]:
    """canonical component name -> (key path as the user wrote it, entry)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        problems.append(f"{section} must be a mapping of component name -> settings, "
                        f"got {type(value).__name__}")
        return {}
    out: dict[str, tuple[str, Any]] = {}
    for key, entry in value.items():
        path = f"{section}.{key}"
        name = canonical(key) if isinstance(key, str) else key
        if name not in COMPONENTS:
            hint = did_you_mean(key, [*COMPONENTS, *ALIASES])
            problems.append(f"{path}: {key!r} is not a component{hint}; components: {component_list()}")
        elif name in out:
            problems.append(f"{path} and {out[name][0]} name the same component; keep one")
        else:
            out[name] = (path, entry)
    return out
