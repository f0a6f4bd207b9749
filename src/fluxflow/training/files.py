"""Reading a YAML or JSON config file, every way it can be unreadable turned into a ``ConfigError``.

Used for ``--config``, ``--optim_sched_config`` and ``lr_sav.json`` alike.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

# PyYAML follows YAML 1.1, where `1e-4` is a string; accept it as the float every user means.
_FLOAT_RE = re.compile(r"^[-+]?(?:\d[\d_]*)?(?:\.\d*)?[eE][-+]?\d+$")


class _Loader(yaml.SafeLoader):
    """Safe YAML with `1e-4` read as a float and duplicate keys reported instead of overwritten."""

    def construct_mapping(self, node, deep=False):  # noqa: ANN001
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:  # `? [a, b]` or `{a: 1}: 2`: a YAML error, not a Python one
                raise yaml.constructor.ConstructorError(
                    None, None, f"a {type(key).__name__} cannot be a key", key_node.start_mark) from None
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_RE, list("-+0123456789."))


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def read_structured_file(path: Path) -> Any:
    """Parse a JSON or YAML file, turning every way it can be unreadable into a ``ConfigError``."""
    if path.suffix.lower() not in (".json", ".yaml", ".yml"):
        raise ConfigError(f"unsupported file type {path.suffix!r}; use .json, .yaml or .yml", str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", str(path)) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read the file: {err}", str(path)) from None
    if not text.strip():
        raise ConfigError("the file is empty", str(path))
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text, object_pairs_hook=_no_duplicates)
        except json.JSONDecodeError as err:
            where = f"line {err.lineno} column {err.colno}"
            raise ConfigError(f"invalid JSON at {where}: {err.msg}", str(path)) from None
        except ValueError as err:
            raise ConfigError(f"invalid JSON: {err}", str(path)) from None
    else:
        try:
            data = yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
        except yaml.YAMLError as err:
            raise ConfigError(f"invalid YAML: {' '.join(str(err).split())}", str(path)) from None
    if data is None:
        raise ConfigError("the file is empty (only comments)", str(path))
    return data
