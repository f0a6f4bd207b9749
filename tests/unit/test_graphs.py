"""``plot_metrics`` and ``fluxflow-plot-metrics``: the PNGs a run's metrics.jsonl gives, and how it fails."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from PIL import Image

from fluxflow.cli.plot_metrics import main
from fluxflow.training.graphs import _groups, _series, plot_metrics

ALL = ["losses.png", "learning_rates.png", "kl.png", "speed.png", "overview.png"]


def write_metrics(folder, rows):
    path = folder / "logs" / "metrics.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def vae_rows(n=30):
    """A VAE+GAN run: the discriminator starts at step 20, one loss is non-finite (null), no flow keys."""
    rows = []
    for i in range(1, n + 1):
        step = 10 * i
        row = {"step": step, "loss/vae": 1.0 / i, "loss/reconstruction": 0.6 / i, "loss/kl": 7.4 + 0.1 * i,
               "kl_weight": min(1e-4, 2e-6 * step), "lr/vae": 1.5e-4, "grad_norm/vae": 0.7, "epoch": i // 10,
               "step_time": 1.2, "samples_per_s": 6.6, "samples_per_s_per_process": 6.6}
        if step >= 20:
            row["loss/discriminator"] = 1.8 - 0.01 * i
            row["lr/discriminator"] = 1e-4
        if step == 50:
            row["loss/vae"] = None
        rows.append(row)
    return rows


def flow_rows(n=20):
    """A flow run: no VAE, no KL keys."""
    return [{"step": i, "loss/flow": 0.9 - 0.01 * i, "lr/flow": 1e-4, "epoch": 0, "step_time": 0.8,
             "samples_per_s": 10.0} for i in range(1, n + 1)]


def assert_pngs(folder, names):
    assert sorted(p.name for p in folder.iterdir()) == sorted(names)  # no temporary files left over
    for name in names:
        path = folder / name
        assert path.stat().st_size > 0
        with Image.open(path) as img:
            assert img.format == "PNG" and img.width > 100 and img.height > 100
            img.verify()


def test_plot_metrics_writes_every_graph_of_a_vae_run(tmp_path):
    metrics = write_metrics(tmp_path, vae_rows())
    written = plot_metrics(metrics, tmp_path / "graphs")
    assert written == [tmp_path / "graphs" / name for name in ALL]
    assert_pngs(tmp_path / "graphs", ALL)
    with Image.open(tmp_path / "graphs" / "losses.png") as img:
        assert img.size == (800, 450)  # figsize (8, 4.5) at dpi 100


def test_series_skip_nulls_and_keys_missing_from_some_lines():
    series = _series(vae_rows())
    steps, values = series["loss/vae"]
    assert 50 not in steps and len(steps) == len(values) == 29 and None not in values
    assert series["loss/discriminator"][0][0] == 20
    groups = _groups(series)
    assert list(groups["losses"]) == ["loss/discriminator", "loss/kl", "loss/reconstruction", "loss/vae"]
    assert list(groups["learning_rates"]) == ["lr/discriminator", "lr/vae"]
    assert list(groups["kl"]) == ["kl_weight", "loss/kl"]
    assert list(groups["speed"]) == ["step_time", "samples_per_s"]
    assert "kl" not in _groups(_series(flow_rows()))


def test_main_on_a_flow_run_writes_logs_graphs_without_kl(tmp_path, capsys):
    write_metrics(tmp_path, flow_rows())
    assert main([str(tmp_path)]) == 0
    names = ["losses.png", "learning_rates.png", "speed.png", "overview.png"]
    assert_pngs(tmp_path / "logs" / "graphs", names)
    graphs = tmp_path / "logs" / "graphs"
    assert capsys.readouterr().out.splitlines() == [f"wrote {graphs / n}" for n in names]


def test_main_finds_the_metrics_file_and_the_out_folder(tmp_path, monkeypatch):
    calls = []
    fake = lambda m, o: calls.append((m, o)) or [o / "x.png"]  # noqa: E731
    monkeypatch.setattr("fluxflow.training.graphs.plot_metrics", fake)
    metrics = write_metrics(tmp_path, flow_rows(3))
    assert main([str(metrics), "--out", str(tmp_path / "here")]) == 0
    assert main([str(metrics.parent)]) == 0  # the logs folder itself
    assert calls == [(metrics, tmp_path / "here"), (metrics, metrics.parent / "graphs")]


def test_missing_empty_and_unplottable_files_exit_2(tmp_path, capsys):
    assert main([str(tmp_path / "nowhere")]) == 2
    assert str(tmp_path / "nowhere" / "logs" / "metrics.jsonl") in capsys.readouterr().err
    missing = tmp_path / "gone.jsonl"
    assert main([str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err
    empty = write_metrics(tmp_path / "empty", [])
    assert main([str(empty)]) == 2
    assert "empty" in capsys.readouterr().err
    nulls = write_metrics(tmp_path / "nulls", [{"step": 1, "loss/vae": None}])
    assert main([str(nulls)]) == 2
    assert "no numeric values" in capsys.readouterr().err
    assert not (tmp_path / "nulls" / "logs" / "graphs").exists()


def test_importing_the_command_does_not_import_matplotlib():
    code = "import sys, fluxflow.cli.plot_metrics; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_a_half_written_last_line_is_skipped(tmp_path):
    from fluxflow.training.metrics import read_metrics

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss/vae": 0.5}\n{"step": 2, "loss/v', encoding="utf-8")
    assert read_metrics(path) == [{"step": 1, "loss/vae": 0.5}]
    path.write_text('{"step": 1, "loss/v\n{"step": 2, "loss/vae": 0.5}\n', encoding="utf-8")
    with pytest.raises(ValueError):
        read_metrics(path)
