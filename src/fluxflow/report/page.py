"""The report page of a training run: one self-contained HTML file with its curves, sample grids, config and
model card. It opens offline in any browser and can be attached to an issue as it is: images are embedded as
``data:`` URIs, the metrics as JSON that a small inline script draws; nothing is fetched from anywhere.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

from ..atomic import write_text_atomically
from ..training.metrics import read_metrics
from .markdown import data_uri, markdown
from .run_data import (GRID_TITLES, chart_groups, chart_title, grid_files, numeric_names, rows_by_step,
                       series, training_modes)

__all__ = ["chart_groups", "grid_files", "report_html", "write_report"]
# the browser itself refuses any request the page would make: only inline script and style, data: images
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"
GRID_WIDTH = 512  # small grids are shown enlarged (pixelated) up to about this width
esc = html.escape
ASSETS = Path(__file__).parent / "assets"


def _asset(name: str) -> str:
    """``assets/page.html`` (the template), ``page.css``, ``page.js`` (draws the SVG charts, wires the grid
    sliders; ``#grid=flow:0`` in the URL picks a step) and ``errors.js`` (records script errors on
    ``<body data-errors>``: a script of its own, first in ``<body>``, so it catches a syntax error in the main
    one; success is ``<body data-rendered="ok">``, read by the browser tests)."""
    return (ASSETS / name).read_text(encoding="utf-8")


def write_report(output_path: str | Path, destination: str | Path | None = None) -> Path:
    """Write the run's page to ``destination`` (default: ``<output_path>/report.html``), atomically."""
    folder = Path(output_path)
    return write_text_atomically(destination or folder / "report.html", report_html(folder))


def report_html(folder: Path) -> str:
    rows, metrics_note = _load(folder / "logs" / "metrics.jsonl", read_metrics)
    config, config_note = _load(folder / "logs" / "train_config.json",
                                lambda p: json.loads(Path(p).read_text(encoding="utf-8")))
    rows = rows_by_step(rows)
    config = config if isinstance(config, dict) else None
    groups = chart_groups(numeric_names(rows))
    values = series(rows, groups)
    grids = grid_files(folder / "samples")
    grid_data = {kind: [{"step": step, "src": data_uri(path)} for step, path in steps]
                 for kind, steps in grids.items()}
    curves = _curves(groups, values) if rows else _missing(metrics_note or "no metrics were logged")
    body = "\n".join([
        _header(folder, rows, config),
        _section("Curves", curves),
        _section("Sample grids", _grids(grids, grid_data) or _missing("no sample grids in samples/")),
        _section("Configuration", _config(config) if config is not None else
                 _missing(config_note or "logs/train_config.json is not a JSON object")),
        _model_card(folder / "pipeline"),
    ])
    return _asset("page.html").format(
        title=esc(f"fluxflow report: {folder.resolve().name}"), csp=CSP, style=_asset("page.css"), body=body,
        metrics=_script_json(values), grids=_script_json(grid_data), errors=_asset("errors.js"),
        script=_asset("page.js"))


def _load(path: Path, read):
    """``(read(path), None)``, or ``(None, why)`` when the file is missing or unreadable."""
    if not path.is_file():
        return None, f"{path.parent.name}/{path.name} is missing"
    try:
        return read(path), None
    except (OSError, ValueError) as err:
        return None, f"{path.parent.name}/{path.name} could not be read: {err}"


def _script_json(value) -> str:
    """JSON safe inside ``<script>``: ``<``, ``>`` and ``&`` (only ever in strings) as ``\\u`` escapes."""
    text = json.dumps(value, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _section(title: str, content: str) -> str:
    return f'<section><h2>{esc(title)}</h2>\n{content}\n</section>'


def _missing(why: str) -> str:
    return f'<p class="missing">{esc(why)}</p>'


def _header(folder: Path, rows: list[dict], config: dict | None) -> str:
    last = f"step {rows[-1]['step']}" if rows else "no step logged"
    modes = training_modes(config)
    badges = "".join(f'<span class="mode">{esc(m)}</span>' for m in modes) or \
        ('<span class="missing">no training mode in the config</span>' if config else "")
    return (f'<header><h1>{esc(folder.resolve().name)}</h1>'
            f'<p class="path">{esc(str(folder.resolve()))}</p>'
            f'<p><span class="last-step">{esc(last)}</span> {badges}</p></header>')


def _curves(groups: dict[str, list[str]], points: dict[str, list]) -> str:
    """One ``figure.chart`` per group, naming its series; the script draws them. Losses are log-scaled when
    every value is positive (they fall over decades)."""
    charts = []
    for group, names in groups.items():
        values = [v for n in names for _, v in points[n] if v is not None]
        log = group == "loss" and bool(values) and min(values) > 0
        title = chart_title(group)
        charts.append(f'<figure class="chart" data-group="{esc(group)}" data-series="{esc(",".join(names))}" '
                      f'data-log="{int(log)}"><figcaption>{esc(title)}{" (log scale)" if log else ""}'
                      f'</figcaption><div class="plot"></div><ul class="legend"></ul></figure>')
    return f'<div class="charts">{"".join(charts)}</div>' if charts else _missing("no loss, lr or val values")


def _grids(grids: dict[str, list[tuple[int, Path]]], data: dict[str, list[dict]]) -> str:
    """Per kind: a slider over the steps and the image of the chosen one (the last by default)."""
    parts = []
    for kind, steps in grids.items():
        last, n = steps[-1][0], len(steps)
        parts.append(
            f'<div class="grid" data-kind="{kind}"><h3>{esc(GRID_TITLES[kind])}</h3>'
            f'<label>step <output class="grid-step">{last}</output> '
            f'<span class="grid-count">({n} of {n})</span> '
            f'<input type="range" class="grid-slider" data-kind="{kind}" min="0" max="{n - 1}" '
            f'value="{n - 1}" step="1" data-steps="{",".join(str(s) for s, _ in steps)}"'
            f'{" disabled" if n == 1 else ""}></label>'
            f'<img class="grid-image" data-kind="{kind}" data-step="{last}" alt="{kind} grid"'
            f' style="width:{_display_width(steps[-1][1])}px" src="{data[kind][-1]["src"]}"></div>')
    return f'<div class="grids">{"".join(parts)}</div>' if parts else ""


def _display_width(path: Path) -> int:
    """Small grids are enlarged by a whole factor (pixels stay sharp) to about :data:`GRID_WIDTH`."""
    try:
        from PIL import Image

        with Image.open(path) as image:
            width = image.width
    except (OSError, ValueError):
        return GRID_WIDTH
    return width * max(1, min(8, GRID_WIDTH // max(width, 1)))


def _config(config: dict) -> str:
    def value(v) -> str:
        if isinstance(v, (dict, list)) and v:
            return f"<pre>{esc(json.dumps(v, indent=2))}</pre>"
        return esc(v if isinstance(v, str) else json.dumps(v))

    rows = [f"<tr><th>{esc(str(k))}</th><td>{value(v)}</td></tr>" for k, v in config.items()]
    half = (len(rows) + 1) // 2  # two tables side by side: a full config is about a hundred keys
    tables = [f'<table class="config-table">{"".join(part)}</table>' for part in (rows[:half], rows[half:])
              if part]
    return f'<div class="config">{"".join(tables)}</div>'


def _model_card(pipeline: Path) -> str:
    card = pipeline / "README.md"
    if not card.is_file():
        return _section("Model card", _missing("no pipeline/README.md (written at the end of a flow run)"))
    try:
        text = card.read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        return _section("Model card", _missing(f"pipeline/README.md could not be read: {err}"))
    match = re.match(r"---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|$)", text, re.S)
    front, body = (match[1], text[match.end():]) if match else ("", text)
    return _section("Model card", (_front_matter(front) if front.strip() else "") +
                    f'<div class="card">{markdown(body, pipeline)}</div>')


def _front_matter(text: str) -> str:
    """The YAML front matter as a table of its top-level keys (as text when it is not a mapping)."""
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        data = None
    if not isinstance(data, dict):
        return f'<pre class="front-matter">{esc(text)}</pre>'
    shown = {k: ", ".join(map(str, v)) if isinstance(v, list) else str(v) for k, v in data.items()}
    rows = "".join(f"<tr><th>{esc(str(k))}</th><td>{esc(v)}</td></tr>" for k, v in shown.items())
    return f'<table class="front-matter">{rows}</table>'
