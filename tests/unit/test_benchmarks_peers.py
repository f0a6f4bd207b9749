"""benchmarks/peers.py keeps working: its own measurement path on a tiny config, ours vs diffusers only
(no legacy venv, no subprocesses), with finite positive ratios and parameter counts matched within 10%."""

from __future__ import annotations

import math

import pytest
from benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def peers():
    return load_benchmark("peers")


def test_peers_tiny_ours_vs_diffusers(peers):
    args = peers.parse_args(["--quick", "--no_legacy", "--img_size", "16", "--batch_size", "1",
                             "--steps", "1", "--warmup", "1", "--text_tokens", "4"])
    result = peers.compare(args, isolate=False, legacy_python=None, log=lambda msg: None)
    assert {(r["part"], r["who"]) for r in result["rows"]} == {
        ("vae", "ours"), ("vae", "diffusers"), ("flow", "ours"), ("flow", "diffusers")}
    assert all(r["error"] is None for r in result["rows"]), [r["error"] for r in result["rows"]]
    assert len(result["ratios"]) == 2
    for q in result["ratios"]:
        for key in ("params", "step_s", "samples_per_s"):
            assert q[key] is not None and math.isfinite(q[key]) and q[key] > 0, (q["peer"], key, q[key])
        assert abs(q["params"] - 1) <= peers.TOLERANCE, q
    assert "skipped" in result["notes"]["legacy"]
    assert "| vae | ours / diffusers AutoencoderKL |" in peers.report(result)
