"""benchmarks/vae_peer.py keeps working: one quick round in fresh processes prints the table with both ratios,
the ratio statistics are those of the rounds, and the per-module profile attributes saved bytes and time."""

from __future__ import annotations

import re

import pytest
import torch
from benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def vae_peer():
    return load_benchmark("vae_peer")


def test_one_quick_round_prints_time_and_memory_ratios(vae_peer, capsys):
    assert vae_peer.main(["--quick", "--rounds", "1", "--img_size", "16", "--batch_size", "1"]) == 0
    out = capsys.readouterr().out
    for label in ("s/step", "peak MiB"):
        row = next(line for line in out.splitlines() if line.startswith(f"| {label} |"))
        ratio, low_high, iqr = row.strip("| ").split(" | ")[3:]
        assert re.fullmatch(r"\d+\.\d\dx", ratio) and float(ratio[:-1]) > 0, row
        assert low_high == iqr == f"{ratio[:-1]}-{ratio[:-1]}", row  # one round: no spread
    assert "AutoencoderKL block_out_channels=" in out and "activation=" in out


def test_ratios_are_taken_per_round(vae_peer):
    def row(ours_s, peer_s):
        return {"ours": {"step_s": ours_s, "peak_mib": 2.0, "params": 10, "mem_method": "m"},
                "peer": {"step_s": peer_s, "peak_mib": 4.0, "params": 10, "mem_method": "m"}}

    # a slow second round slows both models: the per-round ratio stays 0.5 while the medians move
    summary = vae_peer.summarize([row(1.0, 2.0), row(3.0, 6.0), row(1.0, 2.0)])
    assert summary["step_s"]["ratio"] == {"median": 0.5, "min": 0.5, "max": 0.5, "q1": 0.5, "q3": 0.5}
    assert summary["peak_mib"]["ratio"]["median"] == 0.5 and summary["step_s"]["ours"]["max"] == 3.0


def test_rounds_alternate_the_order(vae_peer):
    order = []

    def fake(spec):
        order.append(spec["who"])
        return {"step_s": 1.0, "peak_mib": 1.0, "params": 1, "mem_method": "m"}

    vae_peer.run_rounds({"ours": {"who": "ours"}, "peer": {"who": "diffusers"}}, 3, measure=fake, log=lambda m: None)
    assert order == ["ours", "diffusers", "diffusers", "ours", "ours", "diffusers"]


def test_profile_attributes_saved_bytes_and_time_to_modules(vae_peer):
    args = vae_peer.parse_args(["--quick", "--img_size", "16", "--batch_size", "1", "--activation", "silu"])
    spec = vae_peer.specs(args)["ours"]
    model = vae_peer.peers.build_model("vae", "ours", spec["config"]).train()
    gen = torch.Generator().manual_seed(0)
    result = vae_peer.profile_step(model, torch.rand(1, 3, 16, 16) * 2 - 1, gen)
    assert result["saved"]["expander.conv_out"] > 0 and result["bwd"]["expander.conv_out"] > 0
    assert sum(result["fwd"].values()) == pytest.approx(result["fwd_s"])
    assert all(v >= 0 for v in result["saved"].values())
    text = vae_peer.profile_tables(result, top=5)
    assert "expander.up_blocks.norm1 (LeanSPADE)" in text and "most saved bytes" in text
