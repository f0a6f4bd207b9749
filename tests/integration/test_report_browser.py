"""The report page in a real browser: headless Chromium loads it from a file, runs its script, and dumps the
DOM it drew (charts, sliders, the grid picked by the URL fragment) and a screenshot."""

from __future__ import annotations

import json
import re

import pytest
from PIL import Image
from browser import CHROMIUM, NO_CHROMIUM, assert_rendered, chromium
from report_helpers import GRID_STEPS, SERIES, make_run

from fluxflow.report import data_uri, write_report

if CHROMIUM is None:
    pytest.skip(NO_CHROMIUM, allow_module_level=True)
pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    return write_report(make_run(tmp_path_factory.mktemp("report") / "run"))


def test_every_chart_and_grid_is_drawn(report, tmp_path):
    shot = tmp_path / "shot.png"
    body = assert_rendered(chromium(report.as_uri(), tmp_path / "profile", f"--screenshot={shot}",
                                    "--window-size=1200,2000"))
    drawn = []
    for chart in body.find_all("figure", "chart"):
        names = chart.attrs["data-series"].split(",")
        (svg,) = chart.find_all("svg")
        paths = {p.attrs["data-name"]: p.attrs["d"] for p in svg.find_all("path", "series")}
        assert list(paths) == names and all(d.startswith("M") and len(d) > 8 for d in paths.values()), paths
        assert len(svg.find_all("text")) >= 6  # tick labels on both axes
        assert [li.text for li in chart.find_all("li")] == names  # the legend
        drawn += names
    assert sorted(drawn) == sorted(SERIES)
    gap = [p for p in body.find_all("path", "series") if p.attrs["data-name"] == "loss/vae"][0].attrs["d"]
    assert gap.count("M") == 2  # the null at step 15 breaks the line
    for kind, steps in GRID_STEPS.items():
        (grid,) = [g for g in body.find_all("div", "grid") if g.attrs["data-kind"] == kind]
        (slider,) = grid.find_all("input", "grid-slider")
        assert (slider.attrs["max"], slider.attrs["value"]) == (str(len(steps) - 1), str(len(steps) - 1))
        assert grid.find_all("img", "grid-image")[0].attrs["data-step"] == str(steps[-1])

    with Image.open(shot) as image:
        assert image.size == (1200, 2000)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert len(colours) > 50  # text, lines and the grid images, not a blank page


def test_the_url_fragment_picks_a_grid_step(report, tmp_path):
    body = assert_rendered(chromium(report.as_uri() + "#grid=flow:0", tmp_path / "profile"))
    grids = {g.attrs["data-kind"]: g for g in body.find_all("div", "grid")}
    flow, vae = grids["flow"], grids["vae"]
    assert flow.find_all("input", "grid-slider")[0].attrs["value"] == "0"
    assert flow.find_all("output", "grid-step")[0].text == str(GRID_STEPS["flow"][0])
    assert flow.find_all("span", "grid-count")[0].text == f"(1 of {len(GRID_STEPS['flow'])})"
    image = flow.find_all("img", "grid-image")[0].attrs
    assert image["data-step"] == "10"
    assert image["src"] == data_uri(report.parent / "samples" / "flow_grid_0010.webp")
    assert vae.find_all("img", "grid-image")[0].attrs["data-step"] == str(GRID_STEPS["vae"][-1])  # untouched


def test_a_run_with_missing_files_renders_without_errors(tmp_path):
    folder = make_run(tmp_path / "run", metrics=False, train_config=False, grids={"vae": [5]}, card=False)
    body = assert_rendered(chromium(write_report(folder).as_uri(), tmp_path / "profile"))
    assert not body.find_all("figure", "chart") and not body.find_all("svg")
    (slider,) = body.find_all("input", "grid-slider")
    assert slider.attrs["max"] == "0" and "disabled" in slider.attrs


def test_moving_a_slider_switches_the_image(report, tmp_path):
    """The page's own input handler, driven by a script added to a copy (``--dump-dom`` cannot interact)."""
    moved = tmp_path / "moved.html"
    move = ('<script>const s = document.querySelector(\'.grid-slider[data-kind="vae"]\'); s.value = 0;'
            ' s.dispatchEvent(new Event("input"));</script></body>')
    moved.write_text(report.read_text(encoding="utf-8").replace("</body>", move), encoding="utf-8")
    body = assert_rendered(chromium(moved.as_uri(), tmp_path / "profile"))
    (vae,) = [g for g in body.find_all("div", "grid") if g.attrs["data-kind"] == "vae"]
    image = vae.find_all("img", "grid-image")[0].attrs
    assert image["data-step"] == str(GRID_STEPS["vae"][0])
    assert image["src"] == data_uri(report.parent / "samples" / f"vae_grid_{GRID_STEPS['vae'][0]:04d}.webp")
    assert vae.find_all("output", "grid-step")[0].text == str(GRID_STEPS["vae"][0])


def test_a_long_run_is_thinned_to_the_pixels_and_keeps_its_spikes(tmp_path):
    folder = make_run(tmp_path / "run", grids=None, card=False)
    rows = [{"step": s, "loss/flow": 100.0 if s == 2345 else 1.0 + (s % 7) / 10} for s in range(1, 6001)]
    (folder / "logs" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    body = assert_rendered(chromium(write_report(folder).as_uri(), tmp_path / "profile"))
    (path,) = body.find_all("path", "series")
    points = [tuple(map(float, p.split())) for p in re.split("[ML]", path.attrs["d"]) if p]
    assert 500 < len(points) < 2500  # a few points per pixel column, not 6000
    heights = [y for _, y in points]
    assert min(heights) < 30 and sorted(heights)[1] > 150  # the one spike (at the top of the plot) is kept
