"""``fluxflow-plot-metrics``: draw a training run's ``logs/metrics.jsonl`` into PNG graphs.

    fluxflow-plot-metrics out/my_run                 # reads out/my_run/logs/metrics.jsonl
    fluxflow-plot-metrics out/my_run/logs/metrics.jsonl --out graphs

Writes losses.png, learning_rates.png, kl.png, speed.png (each only when the run logged such values)
and overview.png. Each PNG is replaced atomically, so it can be rerun while the run is training.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

PROG = "fluxflow-plot-metrics"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", help="the run's output_path, or a metrics.jsonl file")
    p.add_argument("--out", default=None, help="folder for the PNGs (default: <output_path>/logs/graphs/)")
    return p


def metrics_file(path: Path) -> Path:
    """The metrics file named by ``path``: the file itself, or ``logs/metrics.jsonl`` under a run folder."""
    if path.is_file() or (not path.exists() and path.suffix == ".jsonl"):
        return path
    if not (path / "logs" / "metrics.jsonl").exists() and (path / "metrics.jsonl").exists():
        return path / "metrics.jsonl"  # the logs folder itself
    return path / "logs" / "metrics.jsonl"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    metrics = metrics_file(Path(args.path))
    if not metrics.is_file():
        print(f"{PROG}: no metrics file at {metrics}", file=sys.stderr)
        return 2
    if not metrics.read_text(encoding="utf-8").strip():
        print(f"{PROG}: {metrics} is empty (no step was logged yet)", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else metrics.parent / "graphs"
    try:
        from fluxflow.training.graphs import plot_metrics

        written = plot_metrics(metrics, out)
    except ImportError:
        print(f"{PROG}: matplotlib is needed (pip install 'fluxflow[plot]')", file=sys.stderr)
        return 1
    except ValueError as err:  # json.JSONDecodeError: a line that is not JSON
        print(f"{PROG}: {metrics} is not valid JSON lines: {err}", file=sys.stderr)
        return 2
    if not written:
        print(f"{PROG}: {metrics} has no numeric values to plot", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
