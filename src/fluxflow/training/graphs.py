"""PNG graphs of a run's ``logs/metrics.jsonl``: losses, learning rates, KL, speed and a 2x2 overview.

matplotlib is imported lazily (it is the optional ``plot`` extra) and drawn through the Agg canvas
directly, so plotting never changes the pyplot backend of the process that calls it.
"""

from __future__ import annotations

from pathlib import Path

from fluxflow.atomic import atomic_path
from fluxflow.training.metrics import read_metrics

Series = dict[str, tuple[list[int], list[float]]]
KL_VALUE_KEYS = ("loss/kl", "kl/raw_nats")
DPI, FIGSIZE, OVERVIEW_FIGSIZE = 100, (8, 4.5), (12, 7)
# validation.Validator's metrics, a graph per part: reconstruction quality, KL per channel, flow loss, judge
VALIDATION_GROUPS = {"vae": ("val/vae/psnr", "val/vae/ssim", "val/vae/ms_ssim"), "kl": ("val/vae/kl",),
                     "flow": ("val/flow/",), "judge": ("val/judge",)}


def _series(rows: list[dict]) -> Series:
    """``{key: (steps, values)}`` sorted by step; null, non-numeric and step-less entries are skipped."""
    out: Series = {}
    for row in sorted((r for r in rows if isinstance(r.get("step"), int)), key=lambda r: r["step"]):
        for key, value in row.items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                steps, values = out.setdefault(key, ([], []))
                steps.append(row["step"])
                values.append(float(value))
    return out


def _groups(series: Series) -> dict[str, Series]:
    """The series of each graph, by file stem; a group without data is left out."""
    def pick(keys):
        return {k: series[k] for k in keys if k in series}

    kl = pick(["kl_weight", *KL_VALUE_KEYS, *sorted(k for k in series if k.startswith("kl/"))])
    groups = {
        "losses": pick(sorted(k for k in series if k.startswith("loss/"))),
        "learning_rates": pick(sorted(k for k in series if k.startswith("lr/"))),
        "kl": kl,
        "speed": pick(["step_time", "samples_per_s"]),
        **{f"validation_{part}": pick(sorted(k for k in series if k.startswith(prefix)))
           for part, prefix in VALIDATION_GROUPS.items()},
    }
    return {name: g for name, g in groups.items() if g}


def _lines(ax, series: Series, log_if_positive: bool, first_color: int = 0) -> list:
    """Draw each series on ``ax`` (log y when asked and every value is > 0); returns the line handles."""
    handles = []
    for i, (name, (steps, values)) in enumerate(series.items()):
        handles += ax.plot(steps, values, label=name, linewidth=1.3, color=f"C{(first_color + i) % 10}",
                           marker="." if len(steps) < 3 else None)
    if log_if_positive and all(v > 0 for _, vals in series.values() for v in vals):
        ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    return handles


def _twin(ax, left: Series, right: Series, left_label: str, right_label: str, log: bool) -> None:
    """Left series on ``ax`` and right series on a second y-axis, with one shared legend."""
    handles = _lines(ax, left, log) if left else []
    ax.set_ylabel(left_label if left else right_label)
    if left and right:
        other = ax.twinx()
        handles += _lines(other, right, log, first_color=len(left))  # a twin axis restarts the colors
        for line in handles[len(left):]:
            line.set_linestyle("--")
        other.set_ylabel(right_label)
        other.grid(False)
    elif right:
        handles = _lines(ax, right, log)
    ax.legend(handles=handles, labels=[h.get_label() for h in handles], fontsize=7)


def _draw(ax, name: str, series: Series) -> None:
    """One group's graph on ``ax``, with its title and axis labels."""
    ax.set_xlabel("optimizer step")
    if name == "losses":
        _lines(ax, series, True)
        ax.set(title="Losses", ylabel="loss")
        ax.legend(fontsize=7)
    elif name == "learning_rates":
        _lines(ax, series, True)
        ax.set(title="Learning rates", ylabel="learning rate")
        ax.legend(fontsize=7)
    elif name == "kl":
        weight = {k: v for k, v in series.items() if k == "kl_weight"}
        values = {k: v for k, v in series.items() if k != "kl_weight"}
        _twin(ax, weight, values, "KL weight", "KL", log=False)
        ax.set_title("KL weight and KL")
    elif name == "validation_vae":  # PSNR in dB on the left, (MS-)SSIM in [0, 1] on the right
        psnr = {k: v for k, v in series.items() if "/psnr" in k}
        _twin(ax, psnr, {k: v for k, v in series.items() if k not in psnr}, "PSNR (dB)", "SSIM, MS-SSIM", log=False)
        ax.set_title("Validation: reconstructions of held-out images")
    elif name.startswith("validation_"):
        _lines(ax, series, name == "validation_flow")
        ax.set(title=f"Validation: {name.removeprefix('validation_')}", ylabel="value")
        ax.legend(fontsize=7)
    else:
        times = {k: v for k, v in series.items() if k == "step_time"}
        rates = {k: v for k, v in series.items() if k != "step_time"}
        _twin(ax, times, rates, "seconds per step", "samples per second", log=False)
        ax.set_title("Speed")


def _save(fig, path: Path) -> None:
    """Write ``fig`` as PNG atomically (``fluxflow.atomic``: its leftovers are cleaned, its mode follows the umask)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)


def plot_metrics(metrics_path: str | Path, out_dir: str | Path) -> list[Path]:
    """Draw ``metrics_path`` into PNGs under ``out_dir`` (one per group with data, plus overview.png).

    Returns the files written, in order; an empty list when no line has a plottable value.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    groups = _groups(_series(read_metrics(metrics_path)))
    if not groups:
        return []
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, series in groups.items():
        fig = Figure(figsize=FIGSIZE, dpi=DPI)
        FigureCanvasAgg(fig)
        _draw(fig.add_subplot(), name, series)
        fig.tight_layout()
        _save(fig, out_dir / f"{name}.png")
        written.append(out_dir / f"{name}.png")
    fig = Figure(figsize=OVERVIEW_FIGSIZE, dpi=DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 2).flat
    for ax, name in zip(axes, ("losses", "learning_rates", "kl", "speed")):
        if name in groups:
            _draw(ax, name, groups[name])
        else:
            ax.set_axis_off()
            ax.text(0.5, 0.5, f"no {name.replace('_', ' ')} logged", ha="center", va="center", color="gray")
    fig.suptitle(f"Training metrics: {Path(metrics_path)}", fontsize=9)
    fig.tight_layout()
    _save(fig, out_dir / "overview.png")
    written.append(out_dir / "overview.png")
    return written
