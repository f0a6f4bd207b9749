"""``fluxflow-lr-plot``: the table it prints, the PNG it writes, and how it fails."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fluxflow.cli.lr_plot import main

CONFIGS = Path(__file__).resolve().parents[2] / "examples" / "configs"


def table(out: str) -> dict[int, dict[str, float]]:
    lines = [line.split() for line in out.splitlines() if line.strip() and not line.startswith("wrote")]
    names = lines[0][1:]
    return {int(row[0]): dict(zip(names, map(float, row[1:]), strict=True)) for row in lines[1:]}


def test_writes_a_png_and_prints_the_lrs_at_chosen_steps(tmp_path, capsys):
    out = tmp_path / "curve.png"
    code = main([str(CONFIGS / "optim_sched_vae_gan.json"), "--steps", "1000", "--out", str(out),
                 "--at", "0,500,1000"])
    assert code == 0
    png = out.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and 5_000 < len(png) < 100_000
    rows = table(capsys.readouterr().out)
    assert list(rows) == [0, 500, 1000] and list(rows[0]) == ["vae", "discriminator"]
    assert rows[0]["vae"] == 2e-5 and rows[1000]["discriminator"] == pytest.approx(2e-6, rel=1e-4)
    assert rows[500]["vae"] == pytest.approx(1.1e-5, rel=1e-4)  # cosine half-way: (2e-5 + 2e-6) / 2


def test_default_steps_lr_and_output_name(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "mine.yaml"
    config.write_text("schedulers:\n  flow:\n    type: StepLR\n    step_size: 10\n    gamma: 0.5\n")
    assert main([str(config), "--steps", "40", "--lr", "0.2", "--linear"]) == 0
    rows = table(capsys.readouterr().out)
    assert list(rows) == [0, 10, 20, 30, 40]
    assert [rows[s]["flow"] for s in rows] == pytest.approx([0.2, 0.1, 0.05, 0.025, 0.0125])
    assert (tmp_path / "mine_lr.png").is_file()


def test_no_plot_and_an_empty_config_shows_the_defaults(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "c.json"
    config.write_text('{"optimizers": {}}')
    assert main([str(config), "--steps", "100", "--no-plot", "--at", "100"]) == 0
    rows = table(capsys.readouterr().out)
    defaults = {"flow": 1e-5, "vae": 1e-5, "text_encoder": 1e-8, "discriminator": 1e-5}  # cosine ends
    assert rows[100] == pytest.approx(defaults)
    assert not list(tmp_path.glob("*.png"))


def test_bad_config_exits_2_with_the_key_path(tmp_path, capsys):
    config = tmp_path / "bad.json"
    config.write_text('{"schedulers": {"vae": {"type": "CosineAnnealingLR", "eta_min_factor": -1}}}')
    assert main([str(config), "--steps", "10", "--no-plot"]) == 2
    assert "schedulers.vae.eta_min_factor must be >= 0, got -1" in capsys.readouterr().err


def test_bad_arguments(tmp_path, capsys):
    config = str(CONFIGS / "optim_sched_sgd_step.json")
    assert main([config, "--steps", "10", "--at", "5,11", "--no-plot"]) == 2
    assert "--at step 11 is past --steps 10" in capsys.readouterr().err
    for argv in (["--steps", "0"], ["--steps", "5", "--lr", "-1"], ["--steps", "5", "--at", "a,b"]):
        with pytest.raises(SystemExit) as err:
            main([config, *argv])
        assert err.value.code == 2


def test_warnings_are_shown(capsys, tmp_path):
    assert main([str(CONFIGS / "optim_sched_flow_lion.json"), "--steps", "500", "--no-plot"]) == 0
    assert "warning: optimizers.flow: Lion with decoupled_weight_decay" in capsys.readouterr().err


def test_importing_the_command_does_not_import_matplotlib():
    code = "import sys, fluxflow.cli.lr_plot; print('matplotlib' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert result.stdout.strip() == "False"


def test_reads_the_sections_of_a_larger_training_config(tmp_path, capsys):
    config = tmp_path / "train.yaml"
    config.write_text("training:\n  n_epochs: 3\nscheduler_config:\n  vae:\n    type: ConstantLR\n"
                      "    factor: 0.5\n    total_iters: 5\n")
    assert main([str(config), "--steps", "10", "--no-plot", "--at", "4,5"]) == 0
    rows = table(capsys.readouterr().out)
    assert rows[4] == {"vae": 5e-5} and rows[5] == {"vae": 1e-4}
