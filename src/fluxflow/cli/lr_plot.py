"""``fluxflow-lr-plot``: draw the LR curve of every component of an optimizer/scheduler config.

Prints a table of the LRs at chosen optimizer steps and writes a PNG (matplotlib, Agg backend), using
the same builder as training, so what it draws is what a run of ``--steps`` optimizer steps would use.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from fluxflow.training.errors import ConfigError
from fluxflow.training.optim import DEFAULT_LR, lr_curves


def _steps_list(text: str) -> list[int]:
    try:
        steps = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--at takes comma-separated step numbers, got {text!r}") from None
    if not steps or min(steps) < 0:
        raise argparse.ArgumentTypeError(f"--at takes non-negative step numbers, got {text!r}")
    return steps


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fluxflow-lr-plot",
        description="Plot the learning-rate curve of every component of an optimizer/scheduler config "
                    "(JSON or YAML) over N optimizer steps, and print the LRs at chosen steps.")
    parser.add_argument("config", help="optimizer/scheduler config (.json, .yaml, .yml), or a training "
                                       "config with such sections")
    parser.add_argument("--steps", type=_positive_int, required=True,
                        help="total optimizer steps of the run (after gradient accumulation)")
    parser.add_argument("--lr", type=_positive_float, default=DEFAULT_LR,
                        help=f"--lr of the run: the LR of entries without one (default {DEFAULT_LR:g})")
    parser.add_argument("--out", default=None,
                        help="PNG to write (default: <config name>_lr.png in the current directory)")
    parser.add_argument("--at", type=_steps_list, default=None,
                        help="comma-separated steps for the table (default: 0, 1/4, 1/2, 3/4 and the end)")
    parser.add_argument("--linear", action="store_true", help="linear LR axis instead of logarithmic")
    parser.add_argument("--no-plot", action="store_true", help="print the table only")
    return parser


def format_table(curves: dict[str, list[float]], at: Sequence[int]) -> str:
    """A plain-text table: one row per step, one column per component."""
    names = list(curves)
    width = max(12, *(len(n) for n in names))
    lines = ["step".rjust(10) + "".join(n.rjust(width + 2) for n in names)]
    for step in at:
        lines.append(f"{step:>10d}" + "".join(f"{curves[n][step]:>{width + 2}.4e}" for n in names))
    return "\n".join(lines)


def plot(curves: dict[str, list[float]], out: Path, title: str, log: bool = True) -> None:
    """Write the curves to ``out`` as a small PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=90)
    styles = ("-", "--", "-.", ":")  # components on the same curve stay visible
    for i, (name, values) in enumerate(curves.items()):
        ax.plot(range(len(values)), values, label=name, linewidth=1.6, linestyle=styles[i % len(styles)])
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("learning rate")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    at = args.at if args.at is not None else sorted({0, args.steps // 4, args.steps // 2,
                                                     3 * args.steps // 4, args.steps})
    if max(at) > args.steps:
        print(f"fluxflow-lr-plot: --at step {max(at)} is past --steps {args.steps}", file=sys.stderr)
        return 2
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            curves = lr_curves(args.config, args.steps, lr=args.lr, strict=False)
    except ConfigError as err:
        print(f"fluxflow-lr-plot: {err}", file=sys.stderr)
        return 2
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    print(format_table(curves, at))
    if args.no_plot:
        return 0
    out = Path(args.out) if args.out else Path(f"{Path(args.config).stem}_lr.png")
    try:
        title = f"{Path(args.config).name}: {args.steps} steps, --lr {args.lr:g}"
        plot(curves, out, title, log=not args.linear)
    except ImportError:
        print("fluxflow-lr-plot: matplotlib is needed for the PNG (pip install 'fluxflow[plot]'); "
              "use --no-plot for the table only", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
