"""``benchmarks/fashion.py --tiny`` end to end on the real Fashion-MNIST files: data -> judge -> VAE -> flow in two
segments -> scored images, and the files it writes (numbers present, never judged: this is a smoke run)."""

from __future__ import annotations

import json
import math

import pytest
from benchmark_scripts import load_benchmark
from PIL import Image

from fluxflow.datasets import fashion_mnist as fm

FOLDER = fm.data_dir()
pytestmark = pytest.mark.skipif(
    not all((FOLDER / f"{stem}.gz").is_file() for pair in fm.FILES.values() for stem in pair),
    reason=f"Fashion-MNIST is not installed in {FOLDER} (sudo apt-get install dataset-fashion-mnist, "
           f"or set ${fm.ENV_VAR})")


def finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def test_tiny_fashion_benchmark_writes_its_table_figures_and_grid(tmp_path, capsys):
    fashion = load_benchmark("fashion")
    assert fashion.main(["--tiny", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    results = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    steps = [str(s) for s in fashion.TINY["flow_steps"]]

    assert 0.0 <= results["judge"]["test_accuracy"] <= 1.0 and results["judge"]["test_images"] == 10000
    assert finite(results["vae"]["quality"]["psnr"]) and 0 < results["vae"]["cpu_s"]
    assert set(results["references"]) == {"real", "recon", "blurred"}
    for row in [*results["references"].values(), *(p["quality"] for p in results["points"].values())]:
        assert 0.0 <= row["accuracy"] <= 1.0 and len(row["per_class"]) == 10 and finite(row["fd"]) and row["fd"] >= 0
    assert list(results["points"]) == steps
    first, last = (results["points"][s] for s in (steps[0], steps[-1]))
    assert 0 < first["cpu_s"] and 0 < first["wall_s"] and finite(last["val_flow_loss"])
    assert last["train_cpu_s"] > first["train_cpu_s"] > results["vae"]["cpu_s"]  # cumulative: VAE + segments
    assert last["train_wall_s"] > first["train_wall_s"]

    table = (tmp_path / "results.md").read_text(encoding="utf-8")
    assert table.strip() in printed
    assert "| flow steps | train CPU min | train wall min |" in table and "Ankle boot" in table
    grid = Image.open(tmp_path / "fashion_grid.png")
    assert grid.size[1] == 20 + 10 * 70 and grid.size[0] > 70 * (fashion.TINY["per_class"] + 1)
    assert (tmp_path / "judge.pt").is_file()
    assert (tmp_path / "flow" / "state" / f"checkpoint-{steps[-1]}").is_dir()  # the second segment resumed

    # a rerun reuses every stage: the cached judge, the trained runs and the scored points
    assert fashion.main(["--tiny", "--out", str(tmp_path)]) == 0
    again = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert again["judge"] == results["judge"] and again["points"] == results["points"]
