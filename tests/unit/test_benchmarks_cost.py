"""benchmarks/bezier_cost.py and benchmarks/mfu.py keep working: their measurement functions on tiny sizes
(eager only: compiling would take longer than this file may) return finite, positive numbers, and the
Bezier custom autograd function keeps for backward two output-sized tensors: less than its input (what the
previous version kept) and than autograd of the formula."""

from __future__ import annotations

import math

import pytest
import torch
from benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def bezier_cost():
    return load_benchmark("bezier_cost")


@pytest.fixture(scope="module")
def mfu():
    return load_benchmark("mfu")


def _positive(value) -> bool:
    return math.isfinite(value) and value > 0


def test_bezier_cost_tiny_eager(bezier_cost):
    results = bezier_cost.measure(rows=16, channels=8, modes=("eager",), repeats=1)
    by = {r["name"]: r for r in results}
    assert "Bezier, compiled kernels" not in by  # needs torch.compile: skipped in an eager-only run
    assert {"GELU", "SiLU", "GELU, 5x input", "Bezier, eager kernels", "Bezier, plain autograd"} <= set(by)
    for r in results:
        assert r["mode"] == "eager"
        for key in ("ms", "saved", "peak", "out_bytes"):
            assert _positive(r[key]), (r["name"], key, r[key])
    custom, plain = by["Bezier, eager kernels"], by["Bezier, plain autograd"]
    previous = by["Bezier, previous custom function"]
    # the custom function keeps two output-sized tensors (t and dB/dt), less than its 5-chunk input ...
    assert (custom["saved"], custom["saved_count"]) == (2 * custom["out_bytes"], 2)
    assert custom["saved"] < custom["x_bytes"] == previous["saved"]
    # ... and far less than what autograd keeps for the formula's intermediates
    assert custom["saved"] < plain["saved"] and plain["saved_count"] > 2
    assert by["GELU"]["saved"] == by["GELU"]["out_bytes"]  # GELU keeps its input, the size of its output
    table = bezier_cost.format_table(results)
    assert table.count("\n") == len(results) + 1 and "x GELU eager" in table
    assert "saves" in bezier_cost.summary(results)


def test_bezier_cost_size_sweep_tiny_eager(bezier_cost, capsys):
    points = bezier_cost.sweep([4, 16], channels=8, modes=("eager",), repeats=1, ref_rows=16)
    assert [(p["rows"], p["channels"], p["repeats"]) for p in points] == [(4, 8, 4), (16, 8, 1)]
    for p in points:
        by = {(r["name"], r["mode"]): r for r in p["results"]}
        # eager only: GELU eager and the eager kernels; the compiled forms are skipped, not failed
        assert set(by) == {("GELU", "eager"), ("Bezier, eager kernels", "eager")}
        assert all(_positive(r["ms"]) for r in p["results"])
        assert all(r["peak"] == 0 for r in p["results"])  # the sweep does not profile memory
    table = bezier_cost.format_sweep(points)
    lines = table.splitlines()
    assert len(lines) == 2 + len(points) and lines[2].startswith("| [4, 8] | ")
    assert "Bezier compiled kernels / GELU compiled" in lines[0] and lines[2].endswith("| - | - | - |")
    # the command line runs the sweep instead of the tables
    assert bezier_cost.main(["--no_compile", "--sweep_rows", "4", "--channels", "8", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "size sweep" in out and "| [4, 8] |" in out and "saved MB" not in out


def test_bezier_cost_kernel_choice_is_restored(bezier_cost):
    from fluxflow.models import bezier

    before = bezier._kernels
    x = torch.randn(4, 10, requires_grad=True)
    bezier_cost.with_kernels("eager")(x).sum().backward()
    assert bezier._kernels == before and torch.isfinite(x.grad).all()


def test_mfu_tiny(mfu):
    peak = mfu.matmul_peak([32, 64], torch.float32, "cpu", repeats=1)
    assert [r["n"] for r in peak] == [32, 64] and all(_positive(r["tflops"]) for r in peak)
    row = mfu.train_step_cost("tiny", batch_size=1, tokens=16, text_len=4, steps=1)
    for key in ("params", "flops", "six_nd", "fb_s", "step_s"):
        assert _positive(row[key]), (key, row[key])
    assert row["fb_s"] <= row["step_s"]
    # counted forward+backward FLOPs are at least the 6ND estimate's order of magnitude
    assert 0.2 < row["flops"] / row["six_nd"] < 5
    table = mfu.format_steps([row], max(r["tflops"] for r in peak))
    assert "| tiny |" in table and "%" in table
    with pytest.raises(ValueError, match="square number"):
        mfu.latent_side(15, 2)
