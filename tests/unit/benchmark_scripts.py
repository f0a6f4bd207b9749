"""Load a script of benchmarks/ as a module for its tests (the scripts are not a package)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load_benchmark(name: str):
    """``benchmarks/<name>.py`` as the module ``benchmark_<name>`` (registered in ``sys.modules``: dataclasses
    look their module up there); ``benchmarks/`` stays on ``sys.path`` only while the script imports its
    helpers."""
    saved = list(sys.path)
    try:
        spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path[:] = saved
