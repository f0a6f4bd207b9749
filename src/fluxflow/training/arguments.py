"""`fluxflow-train`'s command line and ``--config`` files, both generated from the :class:`TrainConfig` schema.

Precedence: built-in default < ``--config FILE`` (YAML or JSON) < command line. A config file uses the field
names (or their aliases) as keys, flat or grouped under ``data:``, ``model:``, ``training:``, ``output:``, and
may hold the optimizer/scheduler sections (``optimizers:``, ``schedulers:``, ``scheduler_config:``). Unknown
keys are errors with the closest name. :func:`load_config` parses and validates, once. A file with a
``stages:`` list is a multi-stage pipeline, read by ``stages.py`` with the helpers here.
"""

from __future__ import annotations

import argparse
import math
import os
import typing
from dataclasses import MISSING, fields
from pathlib import Path

from .config import TrainConfig
from .errors import ConfigError, did_you_mean
from .files import read_structured_file
from .optim import SECTIONS, OptimSchedConfig, load_optim_sched_config

GROUPS = ("data", "model", "training", "output")
PIPELINE_KEYS = ("stages", "defaults")  # a multi-stage pipeline file (stages.py)


def _field_types() -> dict[str, object]:
    return typing.get_type_hints(TrainConfig)


def _default(f):
    return f.default_factory() if f.default is MISSING else f.default


def _choices(f) -> tuple | None:
    check = f.metadata.get("check")
    return check.choices if check is not None and check.kind == "choice" else f.metadata.get("choices")


def _aliases() -> dict[str, str]:
    """``{alias: field name}`` (``gradient_accumulation_steps`` -> ``training_steps``, as diffusers calls it)."""
    return {alias: f.name for f in fields(TrainConfig) for alias in f.metadata.get("aliases", ())}


def build_parser() -> argparse.ArgumentParser:
    """The `fluxflow-train` parser, one flag per :class:`TrainConfig` field (plus its aliases) and ``--config``.

    Only flags given on the command line appear in the parsed namespace (so a ``--config`` file can fill the
    others); ``--help`` shows every flag's default all the same."""
    parser = argparse.ArgumentParser(prog="fluxflow-train", description="Train fluxflow models (docs/TRAINING.md).",
                                     argument_default=argparse.SUPPRESS)
    parser.add_argument("--config", help="YAML or JSON file with any of these options (the command line wins)")
    types = _field_types()
    for f in fields(TrainConfig):
        kind = types[f.name]
        names = [f"--{f.name}", *(f"--{alias}" for alias in f.metadata.get("aliases", ()))]
        kwargs = {"help": f"{f.metadata.get('help', '')} (default: {_default(f)})", "dest": f.name}
        if kind is bool:
            parser.add_argument(*names, action="store_true", **kwargs)
            continue
        base = _base_type(kind)
        if base is list:
            kwargs["nargs"] = "*"
            base = typing.get_args(kind)[0] if typing.get_args(kind) else str
        if _choices(f):
            kwargs["choices"] = _choices(f)
        parser.add_argument(*names, type=base, **kwargs)
    return parser


def _base_type(kind) -> type:
    """``int | None`` -> ``int``; ``list[str]`` -> ``list``."""
    if typing.get_origin(kind) is list:
        return list
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    return args[0] if args else kind


def read_config_mapping(path: str | os.PathLike) -> dict:
    """The parsed ``--config`` file, which must be a mapping (else a :class:`ConfigError` naming the file)."""
    data = read_structured_file(Path(path))
    if not isinstance(data, dict):
        raise ConfigError(f"the top level must be a mapping of option names, got {type(data).__name__}",
                          source=str(path))
    return data


def read_options(data: dict, problems: list[str], *, where: str = "", extra: tuple[str, ...] = ()
                 ) -> tuple[dict, dict]:
    """``(training values by field name, optimizer/scheduler sections as written)`` of one mapping of options,
    flat or grouped under ``data:``/``model:``/``training:``/``output:``.

    Every problem (unknown key, value of the wrong type: ``null`` only where a flag's default is ``None``) is
    appended to ``problems`` with its key path, after ``where`` (``"defaults."``); a value with a problem is
    left out. Keys in ``extra`` belong to the caller: skipped here, offered as suggestions."""
    names, types, aliases = {f.name for f in fields(TrainConfig)}, _field_types(), _aliases()
    values, sections = {}, {}

    def take(key_path: str, key: str, value) -> None:
        name = aliases.get(key, key)
        wrong = _type_problems(key_path, types[name], value)
        problems.extend(wrong)
        if not wrong:
            values[name] = value

    for key, value in data.items():
        if key in extra:
            continue
        if key in SECTIONS:
            sections[key] = value
        elif key in GROUPS:
            if not isinstance(value, dict):
                problems.append(f"{where}{key} must be a mapping of option names, got {type(value).__name__}")
                continue
            for sub, v in value.items():
                if sub in names or sub in aliases:
                    take(f"{where}{key}.{sub}", sub, v)
                elif sub in SECTIONS:
                    problems.append(f"{where}{key}.{sub}: the {sub} section belongs at the top level, not in "
                                    f"{key}")
                else:
                    problems.append(f"{where}{key}.{sub} is not an option{did_you_mean(sub, names)}")
        elif key in names or key in aliases:
            take(f"{where}{key}", key, value)
        else:
            candidates = [*names, *SECTIONS, *GROUPS, *extra]
            problems.append(f"{where}{key} is not an option{did_you_mean(key, candidates)}")
    return values, sections


def sections_config(sections: dict, problems: list[str], where: str = "") -> OptimSchedConfig | None:
    """The optimizer/scheduler config of ``sections`` (``None`` when there are none); its problems, after
    ``where``, go to ``problems``."""
    if not sections:
        return None
    try:
        return load_optim_sched_config(sections)
    except ConfigError as err:
        problems.extend(where + q for q in err.problems)
        return None


def read_train_config_file(path: str | os.PathLike) -> tuple[dict, OptimSchedConfig | None]:
    """``(training fields, optimizer/scheduler config or None)`` of a single run's YAML/JSON config.

    Every problem of the file is named at once, with its key path (``training.lr``): unknown keys, values of
    the wrong type, and the checks of the sections. A pipeline file (``stages:``) is refused: it is read by
    :func:`fluxflow.training.stages.load_pipeline`.
    """
    data = read_config_mapping(path)
    problems: list[str] = []
    values, sections = read_options(data, problems, extra=PIPELINE_KEYS)
    optim = sections_config(sections, problems)
    if "stages" in data:
        problems.append("stages: this file is a multi-stage pipeline; fluxflow-train runs it (through "
                        "fluxflow.training.stages.load_pipeline), a single run cannot")
    elif "defaults" in data:
        problems.append("defaults: is merged under every stage of a pipeline, and this file has no stages: "
                        "give the options at the top level")
    if problems:
        raise ConfigError(problems, source=str(path))
    return values, optim


def parse_command_line(argv: list[str] | None = None) -> tuple[dict, str | None]:
    """``({field: value} of the flags given, the --config file or None)``; argparse's usage error
    (``SystemExit(2)``) for a bad flag value."""
    given = vars(build_parser().parse_args(argv))
    return given, given.pop("config", None)


def parse_config(argv: list[str] | None = None) -> tuple[TrainConfig, OptimSchedConfig | None]:
    """Command line (+ ``--config`` file) -> ``(TrainConfig, the file's optimizer/scheduler config)``, not yet
    validated (:func:`load_config` does both).

    Bad flag values end in argparse's usage error (``SystemExit(2)``); a bad file in a :class:`ConfigError`.
    """
    given, config_file = parse_command_line(argv)
    values, optim = {}, None
    if config_file:
        values, optim = read_train_config_file(config_file)
    values.update(given)
    if values.get("optim_sched_config") and optim is not None:
        raise ConfigError("give the optimizer/scheduler config either with --optim_sched_config or in the "
                          "--config file, not both", source=config_file)
    return TrainConfig(**values), optim


def load_config(argv: list[str] | None = None) -> tuple[TrainConfig, OptimSchedConfig]:
    """What `fluxflow-train` runs with: the parsed config, validated once, and its optimizer/scheduler config,
    loaded once. Raises :class:`ConfigError` naming every problem."""
    cfg, optim = parse_config(argv)
    return cfg, cfg.validate(optim)


def _type_problems(path: str, kind, value) -> list[str]:
    """``[]`` when ``value`` fits the field type ``kind``, else the one problem naming ``path``."""
    if value is None:
        return [] if type(None) in typing.get_args(kind) else [f"{path} must be {_describe(kind)}, got null"]
    if not _matches(kind, value):
        return [f"{path} must be {_describe(kind)}, got {value!r}"]
    if isinstance(value, float) and not math.isfinite(value):
        return [f"{path} must be a finite number, got {value}"]
    return []


def _matches(kind, value) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    base = _base_type(kind)
    if base is list:
        item = (typing.get_args(kind) or (str,))[0]
        return isinstance(value, list) and all(isinstance(v, item) and not isinstance(v, bool) for v in value)
    if base is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, base) and not (base is int and isinstance(value, bool))


def _describe(kind) -> str:
    base = _base_type(kind)
    if base is list:
        item = (typing.get_args(kind) or (str,))[0]
        return {int: "a list of integers"}.get(item, "a list of strings")
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(base, str(base))


def flags_markdown() -> str:
    """The flag table of docs/TRAINING.md, generated from the schema (a test keeps the two identical)."""
    types = _field_types()
    rows = ["| flag | type | default | meaning |", "|---|---|---|---|"]
    for f in fields(TrainConfig):
        kind = types[f.name]
        type_name = "flag" if kind is bool else _describe(kind).removeprefix("a ").removeprefix("an ")
        choices = _choices(f)
        aliases = "".join(f" (alias `--{a}`)" for a in f.metadata.get("aliases", ()))
        meaning = f.metadata.get("help", "") + (f" ({', '.join(map(str, choices))})" if choices else "") + aliases
        rows.append(f"| `--{f.name}` | {type_name} | `{_default(f)!r}` | {meaning.replace('|', '/')} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":  # python -m fluxflow.training.arguments: print the flag table for docs/TRAINING.md
    print(flags_markdown(), end="")
