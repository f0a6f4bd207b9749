"""benchmarks/flow_ablation.py at a tiny size: the models it compares, the per-checkpoint EMA weights it
judges, the paired held-out loss, and the equal wall-clock pick (no numbers about quality asserted)."""

from __future__ import annotations

import math

import pytest
import torch
from benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def flow_ablation():
    return load_benchmark("flow_ablation")


def test_equal_parameter_models_are_within_a_tenth_of_a_percent(flow_ablation):
    params = {name: flow_ablation.flow_params(*spec) for name, spec in flow_ablation.MODELS.items()}
    for name in ("gelu", "silu"):
        assert abs(params[name] / params["bezier"] - 1) < 0.001
    assert params["gelu-r2"] < 0.75 * params["bezier"]  # the demo's flow processor: the smaller control


def test_checkpoints_carry_their_own_ema_weights(flow_ablation, tmp_path):
    from fluxflow import FluxFlowPipeline
    from fluxflow.datasets.shapes import write_shapes_dataset

    plan = dict(flow_ablation.QUICK, steps=2, evals=2, vae_steps=1)
    data = write_shapes_dataset(tmp_path / "data", 16, size=32, seed=0, n_test=4, second_object_prob=0.0)
    vae = flow_ablation.train_vae(tmp_path / "vae", data / "train", 1, "cpu", "fp32")
    run_dir = tmp_path / "runs" / "gelu-r2-s0"
    run = flow_ablation.train_flow(run_dir, data / "train", vae, "gelu", 2.0, plan, 0, "cpu", "fp32")
    assert sorted(run["train_s"]) == [1, 2]

    exported = FluxFlowPipeline.from_pretrained(run_dir / "pipeline").transformer.state_dict()
    weights = {}
    for step, pipe in flow_ablation.checkpoints_with_ema(run_dir, "cpu", torch.float32):
        weights[step] = {k: v.clone() for k, v in pipe.transformer.state_dict().items()}
    assert sorted(weights) == [1, 2]
    assert all(torch.equal(weights[2][k], exported[k]) for k in exported)  # the last one is what was exported
    assert not all(torch.equal(weights[1][k], weights[2][k]) for k in exported)

    pipe = FluxFlowPipeline.from_pretrained(run_dir / "pipeline")
    inputs = flow_ablation.held_out_batch(pipe, data / "test", 2, "cpu")
    assert inputs[0].shape[0] == 8  # 4 held-out images, twice
    first = flow_ablation.held_out_loss(pipe, *inputs, "cpu", torch.float32)
    assert math.isfinite(first) and first > 0
    assert flow_ablation.held_out_loss(pipe, *inputs, "cpu", torch.float32) == first  # paired: same noise


def test_equal_wall_clock_takes_the_latest_checkpoint_within_the_budget(flow_ablation):
    run = {"train_s": {100: 10.0, 200: 20.0, 300: 30.5}, "quality": {100: {}, 200: {}, 300: {}}}
    assert flow_ablation.at_budget(run, 30.0) == 300  # 2% slack for timer noise
    assert flow_ablation.at_budget(run, 25.0) == 200
    assert flow_ablation.at_budget(run, 5.0) == 100  # nothing fits: the first checkpoint, not a crash
