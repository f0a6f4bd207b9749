"""diffusers' SD3 noise-level densities and loss weightings (``--weighting_scheme``) side by side.

    python benchmarks/weighting_schemes.py [--steps 600] [--vae PATH] [--out outputs/weighting_schemes]
                                           [--schemes logit_normal mode cosmap sigma_sqrt none] [--seed 0]
                                           [--threads 1] [--quick]

The shapes demo's flow stage (``examples/pipelines/shapes_demo.yaml``: small preset, 32 px, batch 16, GELU,
the default optimizer at lr 5e-4, EMA 0.995, 24 tokens, cached latents) trains ``--steps`` optimizer
steps once per scheme, with the same seed, data order and VAE, on the demo's 2,000 training images; each run
validates on the 64 held-out images (``--validation_data_path``) halfway and at the end.

Compared at the end (EMA weights, as validation always uses them):

* ``val/flow/loss``: the velocity MSE of the held-out images at the centres of 4 noise-level bins with fixed
  noise. It is **unweighted** and at fixed levels whatever the training scheme, so it compares the schemes on
  one scale (a training ``loss/flow`` of ``sigma_sqrt`` or ``cosmap`` is weighted and is not comparable);
  per bin too, to show where a scheme spends its capacity.
* ``val/judge/accuracy``: the shapes judge on one image per held-out prompt (64; 20 Euler steps, the run's
  sampling settings): colour, shape, 3x3 position and background all right. One binomial standard error is
  about 0.06 at 64 images.

The VAE: ``--vae`` (a VAE run's ``checkpoint.safetensors`` or ``vae/`` folder); by default the demo's
``outputs/demo/stages/1-vae/checkpoint.safetensors`` when it exists, else the demo's VAE recipe trained here
for ``--vae_steps`` (about 10 minutes on 2 cores for 1,000). A finished run in ``--out`` is reused, so an
interrupted benchmark continues. One seed is one seed: differences within the seed spread (the default's
held-out loss differed by 2.5% between seeds 0 and 1, docs/BENCHMARKS.md) are noise.

Full (600 steps, 5 schemes): 13 minutes on the 2-core VM with the demo's VAE and one thread (793 s measured
2026-12-02, load average 2-3 from other work; results in docs/BENCHMARKS.md); ``--quick``: a smoke run of
half a minute on an idle machine, 2-3 under load (numbers meaningless).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tokenizer's offline fallback, without network retries
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import SIZE, bundled_tokenizer, machine, table, train_run, write_results  # noqa: E402

SCHEMES = ("logit_normal", "mode", "cosmap", "sigma_sqrt", "none")
DEFAULT = "logit_normal"
DEMO_VAE = Path("outputs/demo/stages/1-vae/checkpoint.safetensors")
FULL = {"n_train": 2000, "n_test": 64, "steps": 600, "vae_steps": 1000, "judge": 64, "sample_steps": 20,
        "log_every": 25}
QUICK = {"n_train": 64, "n_test": 16, "steps": 6, "vae_steps": 4, "judge": 4, "sample_steps": 2,
         "log_every": 1}


def common_flags(data: Path, seed: int, plan: dict) -> list[str]:
    """The shapes demo's top-level settings (examples/pipelines/shapes_demo.yaml)."""
    return ["--img_size", str(SIZE), "--model_preset", "small", "--batch_size", "16", "--seed", str(seed),
            "--workers", "0", "--log_interval", str(plan["log_every"]), "--no_samples", "--data_path",
            str(data / "train"), "--tokenizer_name", bundled_tokenizer()]


def demo_vae(out: Path, data: Path, plan: dict) -> Path:
    """The demo's VAE stage (reconstruction + KL, SPADE, 3 stages 32/64/128, lr 1e-3), ``vae_steps`` long."""
    steps = plan["vae_steps"]
    flags = [*common_flags(data, 0, plan), "--train_vae", "--train_spade", "--vae_block_out_channels", "32",
             "64", "128", "--lr", "1e-3", "--kl_warmup_steps", str(max(1, steps // 10)), "--max_train_steps",
             str(steps), "--checkpoint_save_interval", str(steps)]
    train_run(out, flags, name="weighting_schemes")
    return out / "checkpoint.safetensors"


def flow_flags(data: Path, vae: Path, cache: Path, scheme: str, seed: int, plan: dict) -> list[str]:
    """The demo's flow stage with ``--weighting_scheme scheme``, validating halfway and at the end."""
    steps = plan["steps"]
    return [*common_flags(data, seed, plan), "--train_diff_full", "--model_checkpoint", str(vae),
            "--weighting_scheme", scheme, "--lr", "5e-4", "--use_ema", "--ema_decay", "0.995",
            "--max_sequence_length", "24", "--activation", "gelu", "--cache_latents", "--cache_dir",
            str(cache), "--sample_steps", str(plan["sample_steps"]), "--max_train_steps", str(steps),
            "--checkpoint_save_interval", str(steps), "--validation_data_path", str(data / "test"),
            "--validation_interval", str(max(1, steps // 2)), "--max_validation_samples", str(plan["n_test"]),
            "--validation_judge_prompts", str(plan["judge"])]


def final_validation(run: Path) -> dict:
    """The last validation row of a run's ``logs/metrics.jsonl``."""
    from fluxflow.training.metrics import read_metrics

    rows = [r for r in read_metrics(run / "logs" / "metrics.jsonl") if "val/flow/loss" in r]
    return rows[-1]


def results_table(results: dict[str, dict], judged: int) -> str:
    """Held-out loss (and per noise-level bin), judge accuracy (and the count of ``judged`` images right),
    each with its ratio to logit_normal."""
    base = results[DEFAULT]["val"]
    bins = sorted(k for k in base if k.startswith("val/flow/loss_sigma_"))
    rows = []
    for scheme, r in results.items():
        val = r["val"]
        loss, acc = val["val/flow/loss"], val.get("val/judge/accuracy")
        base_acc = base.get("val/judge/accuracy")
        judge = "-" if acc is None else f"{acc:.3f} ({round(acc * judged)}/{judged})"
        acc_ratio = f"{acc / base_acc:.2f}" if acc is not None and base_acc else "-"
        rows.append([scheme, f"{loss:.4f}", f"{loss / base['val/flow/loss']:.3f}",
                     *(f"{val[b]:.4f}" for b in bins), judge, acc_ratio, f"{r['train_s']:.0f}"])
    header = ["scheme", "val/flow/loss", "ratio", *(b.removeprefix("val/flow/loss_") for b in bins),
              "val/judge/accuracy", "ratio", "train s"]
    return table(header, rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=None,
                        help=f"flow optimizer steps per scheme (default {FULL['steps']})")
    parser.add_argument("--vae", type=Path, default=None,
                        help="a VAE run's checkpoint.safetensors or vae/ folder (default: the demo's)")
    parser.add_argument("--vae_steps", type=int, default=None, help="steps of the VAE trained without --vae")
    parser.add_argument("--out", type=Path, default=Path("outputs/weighting_schemes"))
    parser.add_argument("--schemes", nargs="+", default=list(SCHEMES), choices=SCHEMES)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (on a shared 2-core VM 1: see bench_common.add_device_args)")
    parser.add_argument("--quick", action="store_true", help="a smoke run (numbers meaningless)")
    args = parser.parse_args(argv)
    plan = dict(QUICK if args.quick else FULL)
    plan.update({k: v for k, v in (("steps", args.steps), ("vae_steps", args.vae_steps)) if v is not None})
    torch.set_num_threads(args.threads)
    from fluxflow.datasets.shapes import write_shapes_dataset

    began, out = time.perf_counter(), args.out
    data = out / "data"
    if not (data / "test" / "metadata.jsonl").is_file():  # the demo's data set (same seed: the same images)
        write_shapes_dataset(data, plan["n_train"], size=SIZE, seed=0, n_test=plan["n_test"],
                             second_object_prob=0.0)
    demo = DEMO_VAE.is_file() and not args.quick
    vae = args.vae or (DEMO_VAE if demo else demo_vae(out / "vae", data, plan))
    schemes = [DEFAULT, *(s for s in args.schemes if s != DEFAULT)]  # the ratios need the default
    results = {}
    for scheme in schemes:
        run = out / f"flow-{scheme}-seed{args.seed}-{plan['steps']}"
        flags = flow_flags(data, vae, out / "cache", scheme, args.seed, plan)
        timing = train_run(run, flags, name="weighting_schemes")
        results[scheme] = {"val": final_validation(run), "train_s": max(timing["train_s"].values()),
                           "wall_s": timing["wall_s"]}
        print(f"{scheme}: val/flow/loss {results[scheme]['val']['val/flow/loss']:.4f} "
              f"({timing['wall_s']:.0f} s)", flush=True)
    print(f"\n{machine()}\n\nflow processor, {plan['steps']} steps per scheme, seed {args.seed}, VAE {vae}; "
          f"held-out: {plan['n_test']} images, judge on {plan['judge']} prompts\n")
    print(results_table(results, plan["judge"]))
    summary = {"plan": plan, "vae": str(vae), "seed": args.seed, "results": results}
    write_results(out, "weighting_schemes", summary, began)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
