"""What ``--torch_compile`` (regional compilation of the repeated blocks) costs and gains on the shapes demo.

    python benchmarks/compile_cost.py [--steps 100] [--stages flow vae] [--device cpu|cuda]
                                      [--dtype fp32|bf16]

The stages of examples/pipelines/shapes_demo.yaml (small preset, 32 px, batch 16): ``flow`` trains the flow
processor (GELU, EMA, cached latents, the bundled MiniLM text encoder) on a VAE trained for one step first;
``vae`` trains the VAE (Bezier, SPADE, 3 levels). Each stage runs ``fluxflow-train`` for ``--steps`` steps
twice, eager and with ``--torch_compile``, each in its own process with an empty inductor cache (a cold
compile, as a first run on a machine), one after the other. From each run's metrics (``--log_interval 1``):

* first step: the first training step's seconds, where the compiled run compiles its blocks (forward and
  backward);
* steady s/step: the median step time over the last half of the steps;
* slowest later step: the slowest step after the first (a recompile, or another process on the CPUs, shows
  here);
* run wall: the whole process (start-up, latent cache, training, checkpoint and export);
* break-even: the steps after which the compiled run has caught up its first-step cost (when it gains).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))
from bench_common import machine, table  # noqa: E402

# the shapes demo (examples/pipelines/shapes_demo.yaml) and its per-stage flags
DEMO = ["--img_size", "32", "--model_preset", "small", "--batch_size", "16", "--seed", "0", "--workers", "0",
        "--no_samples", "--log_interval", "1", "--checkpoint_save_interval", "100000"]
VAE = ["--train_vae", "--train_spade", "--vae_block_out_channels", "32", "64", "128", "--lr", "1e-3",
       "--kl_warmup_steps", "200"]
FLOW = ["--train_diff_full", "--lr", "5e-4", "--use_ema", "--ema_decay", "0.995", "--max_sequence_length",
        "24", "--activation", "gelu", "--cache_latents"]


def train(out: Path, flags: list[str], device: str, cache: Path) -> float:
    """``fluxflow-train flags --output_path out`` in a fresh process (inductor cache in ``cache``); its wall
    seconds. The log goes to ``out.log``."""
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache), "TOKENIZERS_PARALLELISM": "false"}
    if device == "cpu":
        env["ACCELERATE_USE_CPU"] = "true"
    start = time.perf_counter()
    with open(f"{out}.log", "w", encoding="utf-8") as log:
        rc = subprocess.call([sys.executable, "-m", "fluxflow.cli.train", *flags, "--output_path", str(out)],
                             env=env, stdout=log, stderr=subprocess.STDOUT)
    if rc != 0:
        raise SystemExit(f"training {out} failed ({rc}); see {out}.log")
    return time.perf_counter() - start


def step_times(out: Path) -> list[float]:
    """Seconds of each training step, from ``metrics.jsonl`` (one row per step with ``--log_interval 1``)."""
    lines = (out / "logs" / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    return [r["step_time"] for r in rows if "step_time" in r]


def measure(root: Path, stage: str, flags: list[str], args) -> dict:
    """Eager and compiled runs of one stage: ``{mode: {first, steady, slowest, wall}}``."""
    result = {}
    for mode, extra in (("eager", []), ("compiled", ["--torch_compile"])):
        out = root / f"{stage}-{mode}"
        if "--cache_latents" in flags:  # each run builds its own cache (the default folder is shared)
            extra = [*extra, "--cache_dir", str(root / f"latents-{stage}-{mode}")]
        wall = train(out, [*flags, *extra], args.device, root / f"inductor-{stage}-{mode}")
        times = step_times(out)
        result[mode] = {"first": times[0], "steady": statistics.median(times[len(times) // 2:]),
                        "slowest": max(times[1:], default=0.0), "wall": wall}
        print(f"{stage} {mode}: first step {times[0]:.2f} s, steady {result[mode]['steady']:.3f} s/step, "
              f"wall {wall:.0f} s; {machine().split('; ')[-1]}", flush=True)
    return result


def rows(stage: str, result: dict) -> list[list]:
    """Table rows: eager, compiled, and compiled/eager."""
    eager, compiled = result["eager"], result["compiled"]
    gain = eager["steady"] - compiled["steady"]
    extra = compiled["first"] - eager["first"]
    even = f"{max(extra, 0) / gain:.0f}" if gain > 0 else "never"
    out = [[stage, mode, f"{r['first']:.2f}", f"{r['steady']:.3f}", f"{r['slowest']:.2f}",
            f"{r['wall']:.0f}", ""] for mode, r in result.items()]
    ratios = [f"{compiled[k] / eager[k]:{fmt}}x" for k, fmt in (("first", ".1f"), ("steady", ".2f"),
                                                                  ("wall", ".2f"))]
    out.append([stage, "compiled / eager", *ratios[:2], "", ratios[2], even])
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100, help="training steps per run")
    parser.add_argument("--stages", nargs="+", choices=("flow", "vae"), default=["flow", "vae"])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32",
                        help="bf16: --mixed_precision bf16 (autocast)")
    args = parser.parse_args(argv)
    common = list(DEMO)
    if args.dtype == "bf16":
        common += ["--mixed_precision", "bf16"]
    if args.device == "cuda":
        common += ["--allow_tf32"]
    print(machine(), flush=True)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        from fluxflow.datasets.shapes import write_shapes_dataset

        data = write_shapes_dataset(root / "data", 256, size=32, seed=0) / "train"
        common += ["--data_path", str(data)]
        if "flow" in args.stages:
            vae = root / "vae"
            train(vae, [*common, *VAE, "--max_train_steps", "1"], args.device, root / "inductor-vae")
            flow = [*common, *FLOW, "--model_checkpoint", str(vae / "checkpoint.safetensors"),
                    "--max_train_steps", str(args.steps)]
            results += rows("flow", measure(root, "flow", flow, args))
        if "vae" in args.stages:
            results += rows("vae", measure(root, "vae", [*common, *VAE, "--max_train_steps", str(args.steps)],
                                         args))
    print(f"\n--torch_compile on the shapes demo, {args.steps} steps per run, {args.device} {args.dtype}, "
          "cold inductor cache")
    header = ["stage", "run", "first step s", "steady s/step", "slowest later step s", "run wall s",
              "break-even steps"]
    print(table(header, results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
