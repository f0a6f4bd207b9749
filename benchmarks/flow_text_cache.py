"""Flow-training step time with and without ``--cache_text_embeddings`` (frozen all-MiniLM-L6-v2).

    python benchmarks/flow_text_cache.py [--steps 40] [--img_size 32] [--batch_size 16]

Runs ``fluxflow-train --train_diff_full`` twice on the same generated shapes data and VAE (small preset),
reads ``step_time`` from each run's metrics (the first logged window is dropped: it fills the cache) and
prints the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from fluxflow.cli.train import main as train
from fluxflow.datasets.shapes import write_shapes_dataset
from fluxflow.training.metrics import read_metrics


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--img_size", type=int, default=32)
    parser.add_argument("--batch_size", type=int, default=16)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = write_shapes_dataset(root / "data", 64, size=args.img_size, second_object_prob=0.0) / "train"
        common = ["--data_path", str(data), "--img_size", str(args.img_size), "--model_preset", "small",
                  "--batch_size", str(args.batch_size), "--workers", "0", "--seed", "0", "--no_samples",
                  "--log_interval", "10"]
        assert train([*common, "--train_vae", "--max_train_steps", "1", "--output_path", str(root / "vae")]) == 0
        flow = [*common, "--train_diff_full", "--model_checkpoint", str(root / "vae" / "checkpoint.safetensors"),
                "--max_train_steps", str(args.steps), "--checkpoint_save_interval", str(10 * args.steps)]
        times = {}
        for name, extra in (("encoder every step", []), ("cached embeddings", ["--cache_text_embeddings"])):
            assert train([*flow, *extra, "--output_path", str(root / name)]) == 0
            rows = read_metrics(root / name / "logs" / "metrics.jsonl")[1:]
            times[name] = statistics.median(r["step_time"] for r in rows)
    base = times["encoder every step"]
    print(f"\nflow step, small preset, {args.img_size} px, batch {args.batch_size}, 64 distinct captions")
    print("| text encoder | s/step | speed-up |\n|---|---:|---:|")
    for name, seconds in times.items():
        print(f"| {name} | {seconds:.3f} | {base / seconds:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
