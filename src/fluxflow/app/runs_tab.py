"""The Runs tab: a table of the runs under ``--runs`` (stage, status, step, latest losses and validation),
and for the chosen run two charts of its curves and its sample grids with a slider over checkpoints. A timer
re-reads the files while runs train; a slider left at the latest grid follows new ones."""

from __future__ import annotations

import logging

import gradio as gr
import pandas as pd

from ..report.run_data import GRID_TITLES
from .config import AppConfig
from .runs import (SUMMARY_COLUMNS, curve_groups, curve_points, grid_steps, latest_run, latest_values,
                   load_grid, metric_rows, run_entries, stage_text, status, summary_rows)

logger = logging.getLogger("fluxflow.app")
CHARTS = 2  # side by side: losses, and validation (or learning rates)


def build_runs_tab(demo: gr.Blocks, app: AppConfig) -> None:
    """Lay out the tab inside ``demo`` and wire it (API names ``/runs``, ``/run``, ``/curve``, ``/grid``)."""
    entries = run_entries(app.access)
    labels = [e.label for e in entries]
    table = gr.Dataframe(pd.DataFrame(summary_rows(entries), columns=SUMMARY_COLUMNS),
                         label=f"Runs under {app.access.runs}" if app.access.runs else "Runs (give --runs)",
                         interactive=False, wrap=True, max_height=220, elem_id="runs-table",
                         column_widths=["20%", "15%", "12%", "7%", "20%", "26%"])
    with gr.Row():
        run = gr.Dropdown(labels, value=latest_run(entries), label="Run", scale=6, elem_id="run")
        refresh = gr.Button("Refresh", scale=1, size="sm", min_width=100)
    about = gr.Markdown(elem_id="run-about")
    groups, plots, sliders, images, counts = [], [], {}, {}, {}
    with gr.Row():
        with gr.Column():  # the curves
            for i in range(CHARTS):
                groups.append(gr.Dropdown([], show_label=False, container=False, interactive=True))
                plots.append(gr.LinePlot(x="step", y="value", color="series", height=240, show_label=False,
                                         elem_id=f"curve-{i}"))
        with gr.Column():  # the sample grids
            for kind, title in GRID_TITLES.items():
                sliders[kind] = gr.Slider(0, 1, value=0, step=1, label=f"{title}: checkpoint")
                images[kind] = gr.Image(show_label=False, interactive=False, format="png", height=190,
                                        buttons=["download"], elem_id=f"grid-{kind}")
                counts[kind] = gr.State(0)  # grids at the last refresh: a slider at the end follows new ones
    with gr.Accordion("Latest values", open=False):
        values = gr.Markdown(elem_id="run-values")

    def entry_named(label):
        """The run of that label (the browser names a run; paths are never built from its text)."""
        return next((e for e in run_entries(app.access) if e.label == label), None)

    def on_runs():
        entries = run_entries(app.access)
        frame = pd.DataFrame(summary_rows(entries), columns=SUMMARY_COLUMNS)
        return frame, gr.Dropdown(choices=[e.label for e in entries])

    def on_curve(label, group):
        entry = entry_named(label)
        return pd.DataFrame(curve_points(metric_rows(entry.folder), group) if entry else [],
                            columns=["step", "value", "series"])

    def on_grid(label, kind, index):
        entry = entry_named(label)
        steps = grid_steps(entry.folder).get(kind, []) if entry else []
        return _grid_outputs(kind, steps, int(index))[:2]

    def on_run(label, *state):
        """Everything about one run: summary, chart choices and curves, grid sliders and images. ``state``:
        each chart's group, then each grid kind's slider position and the number of grids it showed."""
        picked, positions = list(state[:CHARTS]), zip(state[CHARTS::2], state[CHARTS + 1::2])
        entry = entry_named(label)
        if entry is None:
            message = f"No run named {label!r} under --runs." if label else "No runs under --runs yet."
            empty = pd.DataFrame([], columns=["step", "value", "series"])
            return ([message, ""] + [gr.Dropdown(choices=[]), empty] * CHARTS
                    + [gr.skip()] * (3 * len(GRID_TITLES)))
        rows = metric_rows(entry.folder)
        titles = curve_groups(rows)
        outputs = [_about(entry, rows), _values(rows)]
        for group in _default_groups(titles, picked):
            points = curve_points(rows, group) if group else []
            outputs += [gr.Dropdown(choices=[(t, g) for g, t in titles.items()], value=group),
                        pd.DataFrame(points, columns=["step", "value", "series"])]
        grids = grid_steps(entry.folder)
        for kind, (index, count) in zip(GRID_TITLES, positions):
            steps = grids.get(kind, [])
            follow = index is None or int(index) >= int(count or 0) - 1  # at the latest: show the new latest
            outputs += _grid_outputs(kind, steps, len(steps) - 1 if follow else int(index))
        return outputs

    run_outputs = [about, values]
    for group, plot in zip(groups, plots):
        run_outputs += [group, plot]
    for kind in GRID_TITLES:
        run_outputs += [sliders[kind], images[kind], counts[kind]]
    run_inputs = [run, *groups] + [c for kind in GRID_TITLES for c in (sliders[kind], counts[kind])]

    def on_pick(label):  # another run: its default charts, its latest grids
        return on_run(label, *([None] * CHARTS), *([None, 0] * len(GRID_TITLES)))

    run.change(on_pick, run, run_outputs, api_name="run")
    for group, plot in zip(groups, plots):
        group.input(on_curve, [run, group], plot, api_name="curve")
    for kind in GRID_TITLES:
        sliders[kind].release(lambda label, index, kind=kind: on_grid(label, kind, index),
                              [run, sliders[kind]], [sliders[kind], images[kind]], api_name=f"grid_{kind}")
    timer = gr.Timer(app.refresh_seconds)
    for trigger, show in ((refresh.click, "minimal"), (timer.tick, "hidden"), (demo.load, "hidden")):
        trigger(_quietly(on_runs, 2), None, [table, run], show_progress=show,
                api_name="runs" if show == "minimal" else None,
                api_visibility="public" if show == "minimal" else "undocumented")
        trigger(_quietly(on_run, len(run_outputs)), run_inputs, run_outputs, show_progress=show,
                api_visibility="undocumented")


def _quietly(fn, outputs: int):
    """``fn`` for a refresh: an unexpected error (a folder that vanished, a permission) is logged and leaves
    the page as it is, instead of a message every few seconds."""
    def refresh(*args):
        try:
            return fn(*args)
        except Exception:  # noqa: BLE001 (whatever the files do, the page keeps its last good state)
            logger.exception("reading the runs failed")
            return [gr.skip()] * outputs
    refresh.__name__ = fn.__name__  # gradio names the API endpoint after it
    return refresh


def _about(entry, rows) -> str:
    """The run's header: its name, stage, status and last step."""
    return (f"**{entry.label}** · {stage_text(entry)} · {status(entry.folder)} · "
            f"step {rows[-1]['step'] if rows else '-'}")


def _values(rows) -> str:
    """The latest value of every loss and validation metric, as a table."""
    values = {**latest_values(rows, "loss/"), **latest_values(rows, "val/")}
    lines = ["| metric | latest |", "|---|---|"] + [f"| {k} | {v:.5g} |" for k, v in values.items()]
    return "\n".join(lines) if values else "no values logged yet"


def _default_groups(titles: dict[str, str], picked: list) -> list[str | None]:
    """Keep each chart's group while the run has it; else losses, then validation (or learning rates)."""
    wanted = [next((g for g in titles if g.startswith(p)), None) for p in ("loss", "val", "lr")]
    defaults = [g for g in wanted if g] + [g for g in titles if g not in wanted]
    chosen = []
    for i in range(CHARTS):
        keep = picked[i] if i < len(picked) and picked[i] in titles else None
        chosen.append(keep or next((g for g in defaults if g not in chosen), None))
    return chosen


def _grid_outputs(kind: str, steps: list, index: int) -> list:
    """Slider (range, position, label naming the step), image, and the count for the next refresh."""
    title = GRID_TITLES[kind]
    if not steps:
        return [gr.Slider(0, 1, value=0, label=f"{title}: no grids yet", interactive=False), None, 0]
    index = max(0, min(index, len(steps) - 1))
    shown, step, image = load_grid(steps, index)  # the value stays: a slider at the end keeps following
    label = f"{title}: step {step} ({shown + 1} of {len(steps)})" if image is not None \
        else f"{title}: not readable yet"
    return [gr.Slider(0, max(1, len(steps) - 1), value=index, label=label, interactive=len(steps) > 1), image,
            len(steps)]
