"""``write_report`` and ``fluxflow-report``: what the page holds, that it references nothing outside itself,
that text from the run's files cannot inject HTML, and how missing files and bad arguments are handled."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys

import pytest
from report_helpers import GRID_STEPS, INJECTION, LOSSES, LRS, SERIES, VALIDATION, make_run

from fluxflow.cli.report import main
from fluxflow.report import chart_groups, write_report


@pytest.fixture
def run(tmp_path):
    return make_run(tmp_path / "run")


def script_json(page: str, block: str):
    match = re.search(rf'<script type="application/json" id="{block}">(.*?)</script>', page, re.S)
    return json.loads(match[1])


def attrs(page: str, tag: str, cls: str) -> list[dict[str, str]]:
    """The attributes of each ``<tag ... class="cls" ...>`` in the page (the report writes double quotes)."""
    tags = re.findall(rf'<{tag}\b[^>]*\bclass="{cls}"[^>]*>', page)
    return [dict(re.findall(r'([\w-]+)="([^"]*)"', t)) for t in tags]


def test_the_page_is_self_contained(run):
    path = write_report(run)
    assert path == run / "report.html" and sorted(p.name for p in run.iterdir()) == [
        "logs", "pipeline", "report.html", "samples"]  # no temporary file left over
    page = path.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href|action)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert not re.search(r"url\(|@import|<link|<iframe|<script[^>]*\ssrc", page, re.I)
    assert "default-src 'none'; img-src data:" in page  # the browser refuses any request besides
    assert {m for m in re.findall(r'src="([a-z]+):', page)} == {"data"}


def test_every_grid_is_embedded_with_a_slider_over_its_steps(run):
    page = write_report(run).read_text(encoding="utf-8")
    grids = script_json(page, "grid-data")
    assert {kind: [g["step"] for g in steps] for kind, steps in grids.items()} == GRID_STEPS
    for kind, steps in GRID_STEPS.items():
        for i, step in enumerate(steps):
            data = base64.b64encode((run / "samples" / f"{kind}_grid_{step:04d}.webp").read_bytes()).decode()
            assert grids[kind][i]["src"] == f"data:image/webp;base64,{data}"
    assert "samples_epoch_0010" not in page and "caption_0-0032" not in page  # only the grids
    sliders = {s["data-kind"]: s for s in attrs(page, "input", "grid-slider")}
    images = {i["data-kind"]: i for i in attrs(page, "img", "grid-image")}
    for kind, steps in GRID_STEPS.items():  # the last step is shown first
        assert sliders[kind]["max"] == sliders[kind]["value"] == str(len(steps) - 1)
        assert sliders[kind]["data-steps"] == ",".join(map(str, steps))
        assert images[kind]["data-step"] == str(steps[-1]) and images[kind]["src"] == grids[kind][-1]["src"]


def test_one_chart_per_group_with_every_series_and_the_metrics_as_json(run):
    page = write_report(run).read_text(encoding="utf-8")
    charts = {c["data-group"]: c for c in attrs(page, "figure", "chart")}
    assert list(charts) == ["loss", "lr", *VALIDATION]
    assert charts["loss"]["data-series"].split(",") == LOSSES
    assert charts["lr"]["data-series"].split(",") == LRS
    for group, names in VALIDATION.items():
        assert charts[group]["data-series"].split(",") == names
    assert charts["loss"]["data-log"] == "1" and charts["lr"]["data-log"] == "0"  # log scale: losses only
    series = script_json(page, "metrics-data")
    assert sorted(series) == sorted(SERIES)
    assert [15, None] in series["loss/vae"] and len(series["loss/vae"]) == 30  # the null, kept as a gap
    assert [p[0] for p in series["val/vae/psnr"]] == [10, 20, 30]
    assert "kl_weight" not in series and "samples_per_s" not in series
    assert '<span class="last-step">step 30</span>' in page
    assert re.findall(r'<span class="mode">(\w+)</span>', page) == ["train_vae", "train_diff_full"]


def test_chart_groups():
    names = ["loss/vae", "epoch", "val/seconds", "val/vae/psnr", "lr/flow", "kl_weight", "grad_norm/vae",
             "val/flow/loss", "loss", "val/flow/loss_sigma_0.00-0.25"]
    groups = chart_groups(names)
    assert groups == {"loss": ["loss/vae"], "lr": ["lr/flow"], "grad_norm": ["grad_norm/vae"],
                      "val/flow": ["val/flow/loss", "val/flow/loss_sigma_0.00-0.25"],
                      "val/vae": ["val/vae/psnr"], "val": ["val/seconds"]}
    assert list(groups) == ["loss", "lr", "grad_norm", "val/flow", "val/vae", "val"]


def test_text_from_the_files_is_escaped(run):
    config = json.loads((run / "logs" / "train_config.json").read_text())
    config[INJECTION] = "</td></table><img src=x onerror=alert(1)>"
    (run / "logs" / "train_config.json").write_text(json.dumps(config))
    with open(run / "logs" / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 31, "loss/</script><script>alert(1)//": 1.0}) + "\n")
    page = write_report(run).read_text(encoding="utf-8")
    assert page.count("<script") == page.count("</script>") == 4  # error recorder, 2 JSON blocks, script
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "&lt;script&gt;document.title=&quot;pwned&quot;&lt;/script&gt;" in page  # config key and card
    assert "loss/\\u003c/script\\u003e\\u003cscript\\u003ealert(1)//" in page  # in the JSON (same name)
    assert "loss/&lt;/script&gt;&lt;script&gt;alert(1)//" in page  # in data-series


def test_the_model_card(run):
    page = write_report(run).read_text(encoding="utf-8")
    card = page[page.index("<h2>Model card</h2>"):]
    assert "<th>library_name</th><td>diffusers</td>" in card and "<td>fluxflow, text-to-image</td>" in card
    assert "<h3>my-run</h3>" in card and "second line of the paragraph." in card
    code = "image = pipe(&quot;&lt;b&gt;a red circle&lt;/b&gt;&quot;).images[0]"
    assert f"<pre><code>{code}</code></pre>" in card
    preview = base64.b64encode((run / "pipeline" / "preview.png").read_bytes()).decode()
    assert f'alt="preview" src="data:image/png;base64,{preview}"' in card
    assert "[image: remote]" in card and "[image: outside]" in card  # not fetched, not read outside pipeline/
    assert "<li>see the docs <span class=\"url\">(https://example.com/docs)</span></li>" in card
    assert "<li><code>inline &lt;code&gt;</code></li>" in card


def test_missing_files_are_named_on_the_page(tmp_path):
    folder = make_run(tmp_path / "run", metrics=False, train_config=False, grids=None, card=False)
    page = write_report(folder).read_text(encoding="utf-8")
    for why in ("logs/metrics.jsonl is missing", "logs/train_config.json is missing",
                "no sample grids in samples/", "no pipeline/README.md"):
        assert why in page
    assert not attrs(page, "figure", "chart") and not attrs(page, "input", "grid-slider")
    assert "no step logged" in page
    assert script_json(page, "metrics-data") == {} and script_json(page, "grid-data") == {}


def test_a_line_being_written_is_left_out_and_a_bad_file_is_named(run):
    metrics = run / "logs" / "metrics.jsonl"
    with open(metrics, "a") as f:
        f.write('{"step": 31, "loss/va')
    assert '<span class="last-step">step 30</span>' in write_report(run).read_text(encoding="utf-8")
    metrics.write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    (run / "logs" / "train_config.json").write_text("[1, 2]")
    page = write_report(run).read_text(encoding="utf-8")
    assert "logs/metrics.jsonl could not be read: Expecting value: line 1 column 1" in page
    assert "logs/train_config.json is not a JSON object" in page and attrs(page, "input", "grid-slider")


def test_cli_writes_the_page_and_prints_its_path(run, tmp_path, capsys):
    assert main([str(run)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {run / 'report.html'}"
    out = tmp_path / "elsewhere" / "r.html"
    assert main([str(run), "--out", str(out)]) == 0 and out.read_text().startswith("<!DOCTYPE html>")


def test_cli_errors_name_the_path(tmp_path, capsys):
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    for path, why in ((tmp_path / "nope", "is not a folder"), (tmp_path / "file.txt", "is not a folder"),
                      (tmp_path / "empty", "holds none of logs/metrics.jsonl, samples/, pipeline/")):
        assert main([str(path)]) == 2
        err = capsys.readouterr().err
        assert f"fluxflow-report: {path} {why}" in err
    assert not list((tmp_path / "empty").iterdir())
    with pytest.raises(SystemExit) as exit_:
        main([])
    assert exit_.value.code == 2


def test_the_report_imports_neither_torch_nor_diffusers():
    code = ("import sys, fluxflow.cli.report, fluxflow.report\n"
            "print(sorted({'torch', 'diffusers'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
