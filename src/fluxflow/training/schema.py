"""The one checking engine of fluxflow's configs: a ``Field`` (kind, range, choices) and ``check_value``.

The training flags (``TrainConfig``: a ``Field`` in each dataclass field's metadata) and the
optimizer/scheduler config (the tables of ``optim.schema``) are both checked here, so a range reads and is
reported the same way everywhere: ``<path> must be >= 1, got 0``. Checks collect every problem with its
path instead of stopping at the first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .errors import did_you_mean


@dataclass(frozen=True)
class Field:
    """One setting: its kind and the closed/open range or choices it must lie in."""

    kind: str  # "float" | "int" | "bool" | "betas" | "choice" | "str"
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # True: must be > low (else >= low)
    high_open: bool = False  # True: must be < high (else <= high)
    choices: tuple = ()


POSITIVE = Field("float", low=0, low_open=True)
NON_NEGATIVE = Field("float", low=0)
UNIT = Field("float", low=0, high=1)  # [0, 1]
STEPS = Field("int", low=1)
COUNT = Field("int", low=0)
BOOL = Field("bool")
BETAS = Field("betas")

INVALID = object()  # returned by check_value for a value that was reported as a problem


def fmt(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _range_problem(value: float, f: Field) -> str | None:
    if f.low is not None and (value <= f.low if f.low_open else value < f.low):
        return f"must be {'>' if f.low_open else '>='} {f.low:g}"
    if f.high is not None and (value >= f.high if f.high_open else value > f.high):
        return f"must be {'<' if f.high_open else '<='} {f.high:g}"
    return None


def _number(path: str, value: Any, f: Field, problems: list[str]) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        hint = "; write numbers without quotes" if isinstance(value, str) else ""
        problems.append(f"{path} must be a number, got {type(value).__name__} {fmt(value)}{hint}")
        return INVALID
    if not math.isfinite(value):
        problems.append(f"{path} must be a finite number, got {value}")
        return INVALID
    if f.kind == "int" and value != int(value):
        problems.append(f"{path} must be a whole number of steps, got {value}")
        return INVALID
    if (why := _range_problem(value, f)) is not None:
        problems.append(f"{path} {why}, got {fmt(value)}")
        return INVALID
    return int(value) if f.kind == "int" else float(value)


def check_value(path: str, value: Any, f: Field, problems: list[str]) -> Any:
    """The normalized value (ints for steps, floats, a betas tuple), or INVALID after recording why."""
    if f.kind in ("float", "int"):
        return _number(path, value, f, problems)
    if f.kind == "bool":
        if not isinstance(value, bool):
            problems.append(f"{path} must be true or false, got {fmt(value)}")
            return INVALID
        return value
    if f.kind == "choice":
        if value not in f.choices:
            allowed = ", ".join(fmt(c) for c in f.choices)
            hint = did_you_mean(value, [str(c) for c in f.choices])
            problems.append(f"{path} must be one of {allowed}, got {fmt(value)}{hint}")
            return INVALID
        return value
    if f.kind == "str":
        if not isinstance(value, str) or not value.strip():
            problems.append(f"{path} must be a non-empty string, got {fmt(value)}")
            return INVALID
        return value
    # betas: two numbers in [0, 1)
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        problems.append(f"{path} must be a list of two numbers in [0, 1), got {fmt(value)}")
        return INVALID
    beta = Field("float", 0, 1, high_open=True)
    out = tuple(_number(f"{path}[{i}]", b, beta, problems) for i, b in enumerate(value))
    return INVALID if INVALID in out else out


def flag(default, help: str, check: Field | None = None, aliases: tuple[str, ...] = ()):
    """A dataclass field that is a command-line flag: its help, the ``Field`` its value must fit (choices of a
    ``choice`` field become argparse's choices) and any other names it is known by."""
    return field(default=default, metadata={"help": help, "check": check, "aliases": aliases})


def list_flag(default: list, help: str):
    """A list-valued flag (``nargs="*"``); each run gets its own copy of ``default``."""
    return field(default_factory=lambda: list(default), metadata={"help": help})
