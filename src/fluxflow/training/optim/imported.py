"""Optimizers named by import path (``prodigyopt.Prodigy``, ``torch.optim.Adagrad``, ...) in a config entry.

The class is imported and each key of the entry is checked against its ``__init__`` signature when the config
is loaded, before any model exists, so a typo or a missing package fails with its key path up front. Values of
a known key are passed as given, after a sanity check of their kind against the argument's default.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import math
import warnings
from collections.abc import Mapping
from typing import Any

from ..errors import did_you_mean
from ..schema import BOOL, INVALID, NON_NEGATIVE, POSITIVE, Field, check_value, fmt

# Import name -> pip name, where they differ or where the package is one of fluxflow's extras.
PIP_NAMES = {"lion_pytorch": "lion-pytorch", "prodigyopt": "prodigyopt", "schedulefree": "schedulefree"}
EXTRA_PACKAGES = ("prodigyopt", "schedulefree")  # in `pip install 'fluxflow[optimizers]'`
# Optimizers that estimate their step size: lr is a multiplier of the estimate, 1.0 as their authors document.
ESTIMATED_LR = {"prodigyopt.Prodigy": 1.0}
# fluxflow's own keys (never passed to the class) and keys checked with fluxflow's stricter ranges.
OWN_FIELDS: dict[str, Field] = {"decay_bias_and_norm": BOOL}
KNOWN_FIELDS: dict[str, Field] = {"lr": POSITIVE, "weight_decay": NON_NEGATIVE}


class OptimizerImportError(ValueError):
    """An import path that does not give an optimizer class; the message says why, without the key path."""


def is_import_path(type_: Any) -> bool:
    """Whether an optimizer ``type`` is a dotted import path rather than one of the built-in names."""
    return isinstance(type_, str) and "." in type_.strip(".")


# ------------------------------------------------------------------------------------------------ importing


def resolve_optimizer(type_path: str) -> type:
    """The ``torch.optim.Optimizer`` subclass at ``type_path``; ``OptimizerImportError`` saying why not."""
    import torch

    obj = _import_object(type_path)
    if not inspect.isclass(obj) or not issubclass(obj, torch.optim.Optimizer):
        kind = f"the class {obj.__module__}.{obj.__qualname__}" if inspect.isclass(obj) \
            else f"a {type(obj).__name__}"
        raise OptimizerImportError(f"is not a torch.optim.Optimizer subclass (it is {kind})")
    return obj


def _import_object(type_path: str) -> Any:
    """Import the package, then walk the path: attributes first, submodules where no attribute exists."""
    parts = type_path.split(".")
    obj = _import_module(parts[0], parts[0])
    for i, part in enumerate(parts[1:], start=1):
        if hasattr(obj, part):
            obj = getattr(obj, part)
            continue
        if not inspect.ismodule(obj):
            raise OptimizerImportError(f"does not exist: {'.'.join(parts[:i])} has no attribute {part!r}")
        obj = _import_module(".".join(parts[: i + 1]), parts[0])
    return obj


def _import_module(name: str, package: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name == package:
            raise OptimizerImportError(f"needs the package {package!r}, which is not installed: "
                                       f"{install_hint(package)}") from None
        if err.name == name:
            parent = name.rpartition(".")[0]
            raise OptimizerImportError(f"does not exist: {parent} has no attribute or module "
                                       f"{name.rpartition('.')[2]!r}") from None
        raise OptimizerImportError(f"could not be imported: {err}") from None
    except Exception as err:  # a package that fails on import (say, without the hardware it is built for)
        raise OptimizerImportError(f"could not be imported: importing {name} raised "
                                   f"{type(err).__name__}: {err}") from None


def install_hint(package: str) -> str:
    """The pip command that installs ``package`` (and fluxflow's extra, where it has one)."""
    hint = f"pip install {PIP_NAMES.get(package, package)}"
    if package in EXTRA_PACKAGES:
        hint += " (or pip install 'fluxflow[optimizers]')"
    return hint


def is_schedule_free(type_: Any) -> bool:
    """Whether the optimizer class of ``type_`` has ``train()``/``eval()`` modes (schedule-free optimizers):
    it then carries its own schedule and needs those calls around evaluation."""
    if not is_import_path(type_):
        return False
    try:
        cls = resolve_optimizer(type_)
    except OptimizerImportError:
        return False
    return callable(getattr(cls, "train", None)) and callable(getattr(cls, "eval", None))


# ----------------------------------------------------------------------------------------------- checking


def _arguments(cls: type) -> tuple[dict[str, inspect.Parameter], bool]:
    """``__init__``'s keyword arguments (without ``self`` and the parameters argument), and whether it also
    takes ``**kwargs`` (then any key is passed on unchecked)."""
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    first = positional[0].name if positional else None  # the parameters (or param groups) argument
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    named = {p.name: p for p in params if p.kind in keyword and p.name != first}
    return named, any(p.kind is p.VAR_KEYWORD for p in params)


def check_imported_entry(path: str, entry: Mapping[str, Any], type_path: str,
                         problems: list[str]) -> dict[str, Any] | None:
    """Check an entry whose ``type`` is an import path; the entry as it will be passed on, or ``None``."""
    try:
        cls = resolve_optimizer(type_path)
    except OptimizerImportError as err:
        problems.append(f"{path}.type {fmt(type_path)} {err}")
        return None
    arguments, any_key = _arguments(cls)
    if "lr" not in arguments and not any_key:
        problems.append(f"{path}.type {fmt(type_path)} takes no lr argument; fluxflow's LR schedulers need "
                        f"one")
        return None
    before = len(problems)
    out: dict[str, Any] = {"type": type_path} if "type" in entry else {}
    for key, value in entry.items():
        if key == "type":
            continue
        checked = _check_key(path, key, value, arguments, any_key, type_path, problems)
        if checked is not INVALID:
            out[key] = checked
    _check_required(path, out, arguments, type_path, problems)
    if len(problems) == before:
        _probe(path, cls, type_path, out, problems)
    return out


def _check_key(path: str, key: Any, value: Any, arguments: Mapping[str, inspect.Parameter], any_key: bool,
               type_path: str, problems: list[str]) -> Any:
    if key in OWN_FIELDS:
        return check_value(f"{path}.{key}", value, OWN_FIELDS[key], problems)
    if key not in arguments and not any_key:
        accepted = ["type", *arguments, *OWN_FIELDS]
        problems.append(f"{path}.{key} is not an argument of {type_path}{did_you_mean(key, accepted)}; "
                        f"accepted: {', '.join(accepted)}")
        return INVALID
    if key in KNOWN_FIELDS:
        return check_value(f"{path}.{key}", value, KNOWN_FIELDS[key], problems)
    default = arguments[key].default if key in arguments else inspect.Parameter.empty
    return _check_like_default(f"{path}.{key}", value, default, type_path, problems)


def _check_like_default(path: str, value: Any, default: Any, type_path: str, problems: list[str]) -> Any:
    """``value`` when it is of the kind of ``default`` (a bool, a number, a list of the same length, a
    string), a tuple for a tuple default; anything goes where the default says nothing (``None``, none)."""
    where = f"({type_path}'s default is {fmt(default)})"
    if isinstance(default, bool):
        if not isinstance(value, bool):
            problems.append(f"{path} must be true or false {where}, got {fmt(value)}")
            return INVALID
    elif isinstance(default, (int, float)):
        if not _is_number(value):
            problems.append(f"{path} must be a number {where}, got {type(value).__name__} {fmt(value)}")
            return INVALID
    elif isinstance(default, (tuple, list)):
        return _check_sequence(path, value, default, where, problems)
    elif isinstance(default, str) and not isinstance(value, str):
        problems.append(f"{path} must be a string {where}, got {fmt(value)}")
        return INVALID
    return value


def _check_sequence(path: str, value: Any, default: tuple | list, where: str, problems: list[str]) -> Any:
    numbers = all(_is_number(d) for d in default)
    if not isinstance(value, (list, tuple)) or len(value) != len(default) \
            or (numbers and not all(_is_number(v) for v in value)):
        kind = f"{len(default)} numbers" if numbers else f"{len(default)} values"
        problems.append(f"{path} must be a list of {kind} {where}, got {fmt(value)}")
        return INVALID
    return tuple(value) if isinstance(default, tuple) else list(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def _check_required(path: str, entry: Mapping[str, Any], arguments: Mapping[str, inspect.Parameter],
                    type_path: str, problems: list[str]) -> None:
    for name, p in arguments.items():
        if p.default is p.empty and name != "lr" and name not in entry:
            problems.append(f"{path}.{name} is missing: {type_path} requires it (it has no default)")


def _probe(path: str, cls: type, type_path: str, entry: Mapping[str, Any], problems: list[str]) -> None:
    """Build the optimizer once on a 2x2 stand-in tensor, to report the class's own argument checks (a
    negative lr_decay, Adafactor's lr with relative_step) now. Failures other than ValueError/TypeError
    (hardware the class needs, say) are left to the real build."""
    import torch

    kwargs = {k: v for k, v in entry.items() if k != "type" and k not in OWN_FIELDS}
    kwargs.setdefault("lr", ESTIMATED_LR.get(type_path, 1e-4))
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # Prodigy prints
            warnings.simplefilter("ignore")
            cls([torch.zeros(2, 2, requires_grad=True)], **kwargs)
    except (ValueError, TypeError) as err:
        given = ", ".join(f"{k}={fmt(v)}" for k, v in kwargs.items())
        problems.append(f"{path}: {type_path} refuses these settings ({given}; fluxflow always passes an lr: "
                        f"the entry's, else --lr): {err}")
    except Exception:  # noqa: BLE001 - not an argument problem: the real build reports it
        pass
