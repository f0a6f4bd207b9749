"""What validation costs next to training, in the shapes demo's two stages, at the default settings.

    python benchmarks/validation_cost.py [--steps 40] [--threads 1]

Each stage trains ``--steps`` optimizer steps with the demo's flags (small preset, 32 px, batch 16) and
validates on the held-out test split every ``--steps / 2`` steps (the defaults: at most 32 samples; the
flow stage also generates 8 judged images). Printed side by side: seconds per optimizer step (from the
logged ``step_time``), seconds per validation (``val/seconds``), and the share of training time validation
takes at the demo's interval (every checkpoint: 200 VAE steps, 500 flow steps) and at every 50 steps.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tokenizer's offline fallback, without network retries
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import machine, table  # noqa: E402

DEMO_INTERVAL = {"VAE": 200, "flow": 500}  # examples/shapes_demo.py's --checkpoint_save_interval per stage


def stage_flags(stage: str, data: Path, out: Path, steps: int) -> list[str]:
    """The demo's flags of ``stage`` (examples/shapes_demo.py), ``steps`` long, validating twice."""
    common = ["--img_size", "32", "--model_preset", "small", "--batch_size", "16", "--seed", "0", "--workers", "0",
              "--log_interval", "5", "--no_samples", "--max_train_steps", str(steps),
              "--checkpoint_save_interval", str(steps), "--validation_data_path", str(data / "test"),
              "--validation_interval", str(max(1, steps // 2)), "--data_path", str(data / "train")]
    if stage == "VAE":
        return [*common, "--train_vae", "--train_spade", "--vae_block_out_channels", "32", "64", "128",
                "--lr", "1e-3", "--kl_warmup_steps", "200", "--output_path", str(out / "vae")]
    return [*common, "--train_diff_full", "--model_checkpoint", str(out / "vae" / "checkpoint.safetensors"),
            "--lr", "5e-4", "--use_ema", "--ema_decay", "0.995", "--max_sequence_length", "24", "--activation",
            "gelu", "--sample_steps", "20", "--cache_latents", "--cache_dir", str(out / "cache"),
            "--output_path", str(out / "flow")]


def measure(stage: str, data: Path, out: Path, steps: int) -> dict:
    from fluxflow.cli.train import main as train
    from fluxflow.training.metrics import read_metrics

    if train(stage_flags(stage, data, out, steps)) != 0:
        raise SystemExit(f"validation_cost: the {stage} stage failed")
    rows = read_metrics(out / ("vae" if stage == "VAE" else "flow") / "logs" / "metrics.jsonl")
    step_s = statistics.median(r["step_time"] for r in rows if "step_time" in r)
    val_s = statistics.median(r["val/seconds"] for r in rows if "val/seconds" in r)
    return {"step_s": step_s, "val_s": val_s, "keys": sum(k.startswith("val/") for r in rows[-1:] for k in r)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from fluxflow.datasets.shapes import write_shapes_dataset

    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fluxflow-validation-cost-") as tmp:
        data = write_shapes_dataset(Path(tmp) / "data", 256, size=32, seed=0, n_test=64, second_object_prob=0.0)
        results = {stage: measure(stage, data, Path(tmp), args.steps) for stage in ("VAE", "flow")}
    print(f"\n{machine()}\n")
    rows = []
    for stage, r in results.items():
        share = lambda every: f"{100 * r['val_s'] / (every * r['step_s'] + r['val_s']):.1f}%"  # noqa: E731
        rows.append([stage, f"{r['step_s']:.3f}", f"{r['val_s']:.2f}", f"{r['val_s'] / r['step_s']:.1f}",
                     f"{share(DEMO_INTERVAL[stage])} (every {DEMO_INTERVAL[stage]})", share(50)])
    print(table(["stage", "s / optimizer step", "s / validation", "validation / step",
                 "share of time at the demo's interval", "share every 50 steps"], rows))
    print(f"\nvalidation_cost: done in {time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
