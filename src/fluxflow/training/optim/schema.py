"""What an optimizer/scheduler config may contain: components, types, keys, ranges and defaults.

The tables here are the single source of truth for validation, for the builder in ``build.py`` and for
``docs/SCHEDULERS.md``. Validation collects every problem with its key path instead of stopping at the
first, so one run of a bad config shows everything that needs fixing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import did_you_mean
from ..schema import BETAS, BOOL, COUNT, INVALID, NON_NEGATIVE, POSITIVE, STEPS, UNIT, Field, check_value, fmt
from .imported import check_imported_entry, is_import_path

# ---------------------------------------------------------------------------------------------- components

COMPONENTS = ("flow", "vae", "vae_encoder", "vae_decoder", "text_encoder", "discriminator")
ALIASES = {"flow_processor": "flow"}
# sub-component -> (parent component, attribute of the parent module that holds its parameters)
SUBCOMPONENTS = {"vae_encoder": ("vae", "compressor"), "vae_decoder": ("vae", "expander")}

DEFAULT_LR = 1e-4  # used when neither the config nor --lr gives one

# Per-component optimizer defaults (the earlier release's, except flow's decoupled_weight_decay: see
# docs/SCHEDULERS.md, "Lion and decoupled weight decay"). Sub-components start from their parent's.
COMPONENT_OPTIMIZERS: dict[str, dict[str, Any]] = {
    "flow": {"type": "Lion", "betas": (0.9, 0.95), "weight_decay": 0.01, "decoupled_weight_decay": False},
    "vae": {"type": "AdamW", "betas": (0.9, 0.95), "weight_decay": 0.01, "eps": 1e-8},
    "text_encoder": {"type": "AdamW", "betas": (0.9, 0.99), "weight_decay": 0.01, "eps": 1e-8},
    "discriminator": {"type": "AdamW", "betas": (0.0, 0.9), "weight_decay": 0.001, "amsgrad": True},
}
LR_SCALE = {"text_encoder": 0.1}  # a component without its own lr gets --lr times this

# The scheduler of a component that has no scheduler entry (a sub-component takes its parent's).
COMPONENT_SCHEDULERS: dict[str, dict[str, Any]] = {
    "text_encoder": {"type": "CosineAnnealingLR", "eta_min_factor": 0.001},
}
DEFAULT_SCHEDULER: dict[str, Any] = {"type": "CosineAnnealingLR", "eta_min_factor": 0.1}

# ------------------------------------------------------------------------------------------------ fields

_COMMON_OPT = {"lr": POSITIVE, "weight_decay": NON_NEGATIVE, "decay_bias_and_norm": BOOL}
_ADAM = {**_COMMON_OPT, "betas": BETAS, "eps": POSITIVE, "amsgrad": BOOL}
OPTIMIZER_FIELDS: dict[str, dict[str, Field]] = {
    "AdamW": _ADAM,
    "Adam": _ADAM,
    "SGD": {**_COMMON_OPT, "momentum": Field("float", 0, 1, high_open=True), "dampening": UNIT,
            "nesterov": BOOL},
    "RMSprop": {**_COMMON_OPT, "alpha": Field("float", 0, 1, low_open=True), "eps": POSITIVE,
                "momentum": Field("float", 0, 1, high_open=True), "centered": BOOL},
    "Lion": {**_COMMON_OPT, "betas": BETAS, "decoupled_weight_decay": BOOL},
}

SCHEDULER_FIELDS: dict[str, dict[str, Field]] = {
    "CosineAnnealingLR": {"T_max": STEPS, "eta_min_factor": UNIT},
    "LinearLR": {"start_factor": Field("float", 0, 1, low_open=True), "end_factor": UNIT,
                 "total_iters": STEPS},
    "ExponentialLR": {"gamma": Field("float", 0, 1, low_open=True)},
    "ConstantLR": {"factor": UNIT, "total_iters": STEPS},
    "StepLR": {"step_size": STEPS, "gamma": Field("float", 0, 1, low_open=True)},
    "ReduceLROnPlateau": {
        "mode": Field("choice", choices=("min", "max")),
        "factor": Field("float", 0, 1, low_open=True, high_open=True),
        "patience": COUNT,
        "threshold": NON_NEGATIVE,
        "threshold_mode": Field("choice", choices=("rel", "abs")),
        "cooldown": COUNT,
        "monitor": Field("str"),
    },
}
# Defaults of the keys that have a fixed default; "auto" keys (below) are derived from total steps.
SCHEDULER_DEFAULTS: dict[str, dict[str, Any]] = {
    "CosineAnnealingLR": {"eta_min_factor": 0.1},
    "LinearLR": {"start_factor": 1.0, "end_factor": 0.1},
    "ExponentialLR": {"gamma": 0.95},
    "ConstantLR": {"factor": 1.0},
    "StepLR": {"gamma": 0.1},
    "ReduceLROnPlateau": {"mode": "min", "factor": 0.1, "patience": 10, "threshold": 1e-4,
                          "threshold_mode": "rel", "cooldown": 0, "monitor": "loss"},
}


def auto_step_size(total_steps: int) -> int:
    """StepLR's derived ``step_size``: three equal stages (lr, lr*gamma, lr*gamma^2), the classic recipe."""
    return max(1, total_steps // 3)


def chain_length(entry: Mapping[str, Any]) -> int | None:
    """Steps a scheduler runs inside a chain: its ``total_iters``, or ``T_max`` for a cosine, if given."""
    if "total_iters" in entry:
        return entry["total_iters"]
    if entry.get("type") == "CosineAnnealingLR":
        return entry.get("T_max")
    return None


def is_constant_schedule(spec: Mapping[str, Any] | tuple) -> bool:
    """Whether a validated scheduler spec keeps the LR as it is (what a schedule-free optimizer allows)."""
    return isinstance(spec, Mapping) and spec["type"] == "ConstantLR" and spec.get("factor", 1.0) == 1.0


def canonical(name: str) -> str:
    return ALIASES.get(name, name)


def component_list() -> str:
    return ", ".join(f"{c} (alias {a})" if (a := _alias_of(c)) else c for c in COMPONENTS)


def _alias_of(component: str) -> str | None:
    return next((a for a, c in ALIASES.items() if c == component), None)


# --------------------------------------------------------------------------------------------- checking


def _unknown_key(path: str, key: Any, type_: str, allowed: Mapping[str, Field],
                 table: Mapping[str, Mapping[str, Field]]) -> str:
    owners = [t for t, fields in table.items() if key in fields]
    if owners:
        msg = f"{path}.{key} is not a setting of {type_} (it belongs to {', '.join(owners)})"
    else:
        msg = f"{path}.{key} is not a known key{did_you_mean(key, ['type', *allowed])}"
    return f"{msg}; allowed: {', '.join(['type', *allowed])}"


def _type_of(path: str, entry: Mapping[str, Any], table: Mapping[str, Any], what: str,
             default: str | None, problems: list[str]) -> str | None:
    type_ = entry.get("type", default)
    if type_ is None:
        problems.append(f"{path}.type is missing; one of: {', '.join(table)}")
        return None
    if not isinstance(type_, str) or type_ not in table:
        problems.append(f"{path}.type {fmt(type_)} is not {what}{did_you_mean(type_, table)}; "
                        f"allowed: {', '.join(table)}")
        return None
    return type_


def _check_fields(path: str, entry: Mapping[str, Any], type_: str, fields: Mapping[str, Field],
                  table: Mapping[str, Mapping[str, Field]], problems: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"type": type_} if "type" in entry else {}
    for key, value in entry.items():
        if key == "type":
            continue
        if key not in fields:
            problems.append(_unknown_key(path, key, type_, fields, table))
            continue
        checked = check_value(f"{path}.{key}", value, fields[key], problems)
        if checked is not INVALID:
            out[key] = checked
    return out


def _is_mapping(path: str, entry: Any, what: str, problems: list[str]) -> bool:
    if not isinstance(entry, Mapping):
        problems.append(f"{path} must be a mapping of {what}, got {type(entry).__name__} {fmt(entry)}")
        return False
    return True


def validate_optimizer_entry(path: str, entry: Any, default_type: str,
                             problems: list[str]) -> dict[str, Any] | None:
    """Check one optimizer entry; ``type`` may be omitted (the component's default type then applies).

    ``type`` is one of ``OPTIMIZER_FIELDS`` or the import path of any ``torch.optim.Optimizer`` subclass,
    whose keys are then checked against its signature (``imported.py``)."""
    if not _is_mapping(path, entry, "optimizer settings", problems):
        return None
    type_ = entry.get("type", default_type)
    if is_import_path(type_):
        return check_imported_entry(path, entry, type_.strip(), problems)
    if isinstance(type_, str) and type_ not in OPTIMIZER_FIELDS:
        problems.append(_unknown_optimizer(path, type_))
        return None
    type_ = _type_of(path, entry, OPTIMIZER_FIELDS, "an optimizer", default_type, problems)
    if type_ is None:
        return None
    return _check_fields(path, entry, type_, OPTIMIZER_FIELDS[type_], OPTIMIZER_FIELDS, problems)


def _unknown_optimizer(path: str, type_: str) -> str:
    """A bare name that is not ours: the closest of ours, or its ``torch.optim`` import path if it is one."""
    import torch

    hint = did_you_mean(type_, OPTIMIZER_FIELDS)
    if not hint and isinstance(getattr(torch.optim, type_, None), type):
        hint = f" (did you mean 'torch.optim.{type_}'?)"
    return (f"{path}.type {fmt(type_)} is not an optimizer{hint}; allowed: {', '.join(OPTIMIZER_FIELDS)}, "
            f"or the import path of a torch.optim.Optimizer subclass (torch.optim.Adagrad, "
            f"prodigyopt.Prodigy, ...)")


def check_optimizer_consistency(path: str, settings: Mapping[str, Any], problems: list[str]) -> None:
    """Rules between keys, checked on the complete settings (a sub-component's include its parent's)."""
    momentum, dampening = settings.get("momentum", 0.0), settings.get("dampening", 0.0)
    if settings.get("nesterov") and (momentum <= 0 or dampening != 0):
        problems.append(f"{path}.nesterov needs momentum > 0 and dampening 0, got momentum {momentum}, "
                        f"dampening {dampening}")


def validate_scheduler_entry(path: str, entry: Any, problems: list[str], position: tuple[int, int] = (0, 1)
                             ) -> dict[str, Any] | None:
    """Check one scheduler; ``position`` is (index, length) of the chain it belongs to."""
    if not _is_mapping(path, entry, "scheduler settings with a 'type'", problems):
        return None
    type_ = _type_of(path, entry, SCHEDULER_FIELDS, "a scheduler", None, problems)
    if type_ is None:
        return None
    index, length = position
    fields = SCHEDULER_FIELDS[type_]
    if length > 1:
        if type_ == "ReduceLROnPlateau":
            problems.append(f"{path}: ReduceLROnPlateau cannot be chained (it steps on a metric, not on a "
                            f"count); use it alone")
            return None
        fields = {"total_iters": STEPS, **fields}  # every chained entry may state its length
    out = _check_fields(path, entry, type_, fields, SCHEDULER_FIELDS, problems)
    if length > 1 and index < length - 1 and chain_length(out) is None and not _has_invalid_length(entry):
        problems.append(f"{path}.total_iters is missing: every scheduler of a chain but the last needs the "
                        f"number of steps it runs before the next one starts")
    return out


def _has_invalid_length(entry: Mapping[str, Any]) -> bool:
    return "total_iters" in entry or (entry.get("type") == "CosineAnnealingLR" and "T_max" in entry)


def validate_scheduler_spec(path: str, spec: Any, problems: list[str]) -> dict | tuple | None:
    """A scheduler entry, or a list of them to chain with SequentialLR (returned as a tuple)."""
    if isinstance(spec, (list, tuple)):
        if not spec:
            problems.append(f"{path} is an empty list; give one scheduler or several to chain")
            return None
        entries = tuple(validate_scheduler_entry(f"{path}[{i}]", e, problems, (i, len(spec)))
                        for i, e in enumerate(spec))
        return entries if len(entries) > 1 else entries[0]
    if not isinstance(spec, Mapping):
        problems.append(f"{path} must be a mapping with a 'type' (or a list of them to chain), "
                        f"got {type(spec).__name__} {fmt(spec)}")
        return None
    return validate_scheduler_entry(path, spec, problems)
