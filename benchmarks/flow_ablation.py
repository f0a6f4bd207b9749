"""Bezier vs SiLU vs GELU in the flow processor, and prompt adherence as a function of training time.

    python benchmarks/flow_ablation.py [--quick] [--out outputs/flow_ablation] [--vae PATH] [--steps N]
                                       [--seeds 0] [--models bezier gelu silu gelu-r2] [--threads 1]
                                       [--device cpu] [--dtype fp32]
    flock /tmp/fluxflow-bench.lock env HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/flow_ablation.py   # full

The second half of the ablation the earlier release never ran (``benchmarks/ablation.py`` does the VAE), on
the shapes data set of ``examples/shapes_demo.py`` (2,000 captioned 32-px images; 64 held-out prompts):

1. **One VAE for all**: ``--vae`` (a VAE folder or a ``checkpoint.safetensors``), else the demo's VAE recipe is
   trained first for 1,000 steps (the length of the measured run's VAE; the demo now uses 2,000; about 10
   minutes on one core), so every flow processor sees the same latents.
2. **Flow processors at equal parameters** (the ``small`` preset: width 256, 8 blocks, 16 tokens). A Bezier
   MLP is ``Linear(d, 5h) -> curve -> Linear(h, d)``, three times the weights of a GELU/SiLU MLP of the same
   ``h``, so GELU and SiLU get ``--flow_mlp_ratio 6`` against Bezier's 2: 14.24 M parameters each, within
   0.1%. ``gelu-r2`` is the demo's own flow processor (GELU at ratio 2, 10.04 M): is it the parameters or
   the curve?
3. **Training** through the real CLI, the demo's flow recipe (``--train_diff_full``, frozen all-MiniLM-L6-v2
   with cached embeddings, Lion lr 5e-4, batch 16, CFG dropout 0.1, EMA 0.995), except that the learning
   rate is **constant** (``ConstantLR``, factor 1): then the checkpoint at step k is what a k-step run gives,
   and the checkpoints trace quality against training time. Train time is the sum of the logged
   ``step_time`` (data, text cache, forward, backward, optimizer, saves; no start-up).
4. **Quality at each checkpoint** (the EMA weights, as the exported pipeline uses them):

   * prompt adherence: ``FluxFlowPipeline`` draws each held-out prompt with ``judge_seeds`` starting noises
     (16 Euler steps, guidance 4: ``benchmarks/sampling.py`` found 16 enough), scored by the analytic shapes
     judge (colour, shape, 3x3 position, background; all four right = accurate);
   * held-out flow loss: the training objective (velocity MSE at logit-normal noise levels) on the held-out
     images and their captions, with the same noise and levels for every model and checkpoint (paired), so
     differences are not sampling noise. Less noisy than the judge (one binomial standard error is about 0.04
     at 128 images).
5. **Equal training compute = equal wall-clock**: each model at its latest checkpoint within the fastest
   model's total train time.

Full: 48 minutes on the 2-core VM with one thread and a given VAE (2867 s, the other core busy; each model
6-10 minutes of training and 2.5-3.5 of evaluation; results in benchmarks/results/flow_ablation.md), about
10 more without ``--vae``; ``--quick``: under a minute (a smoke run, numbers meaningless). On a GPU:
``--device cuda --dtype bf16`` with larger ``--steps``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import (DTYPES, SIZE, autocast, bundled_tokenizer, judge_pipeline, machine,  # noqa: E402
                          table, train_run, write_results)

# name -> (activation, --flow_mlp_ratio): equal parameters except gelu-r2, the demo's flow processor
MODELS = {"bezier": ("bezier", 2.0), "gelu": ("gelu", 6.0), "silu": ("silu", 6.0), "gelu-r2": ("gelu", 2.0)}
FULL = {"n_train": 2000, "n_test": 64, "vae_steps": 1000, "steps": 1200, "evals": 8, "seeds": (0,),
        "judge_seeds": 2, "sample_steps": 16, "guidance": 4.0, "val_repeats": 4, "log_every": 25}
QUICK = {"n_train": 48, "n_test": 8, "vae_steps": 6, "steps": 6, "evals": 2, "seeds": (0,),
         "judge_seeds": 1, "sample_steps": 2, "guidance": 4.0, "val_repeats": 1, "log_every": 1}
CONSTANT_LR = "schedulers:\n  flow:\n    type: ConstantLR\n    factor: 1.0\n"


def flow_params(activation: str, mlp_ratio: float, latent_channels: int = 16) -> int:
    """Parameters of the ``small`` flow processor with this activation and MLP ratio."""
    from fluxflow.models import FluxFlowTransformer

    model = FluxFlowTransformer.from_preset("small", activation=activation, mlp_ratio=mlp_ratio,
                                            in_channels=latent_channels)
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------------------------------------ training

def common_flags(data: Path, seed: int, log_every: int) -> list[str]:
    return ["--img_size", str(SIZE), "--model_preset", "small", "--batch_size", "16", "--seed", str(seed),
            "--workers", "0", "--log_interval", str(log_every), "--no_samples", "--data_path", str(data),
            "--tokenizer_name", bundled_tokenizer()]


def train_vae(out: Path, data: Path, steps: int, device: str, dtype: str) -> Path:
    """The demo's VAE stage (``examples/shapes_demo.py``): 3 stages 32/64/128, SPADE, lr 1e-3."""
    flags = [*common_flags(data, 0, 25 if steps >= 100 else 1), "--train_vae", "--train_spade",
             "--vae_block_out_channels", "32", "64", "128", "--max_train_steps", str(steps), "--lr", "1e-3",
             "--kl_warmup_steps", str(max(1, steps // 5)), "--checkpoint_save_interval", str(steps)]
    train_run(out, flags + precision(dtype), device, name="flow_ablation")
    return out / "checkpoint.safetensors"


def train_flow(out: Path, data: Path, vae: Path, activation: str, mlp_ratio: float, plan: dict, seed: int,
               device: str, dtype: str) -> dict:
    """One flow processor, the demo's recipe at a constant learning rate, a state folder every
    ``steps / evals`` steps."""
    schedule = out.parent / "constant_lr.yaml"
    schedule.parent.mkdir(parents=True, exist_ok=True)
    schedule.write_text(CONSTANT_LR)
    every = plan["steps"] // plan["evals"]
    flags = [*common_flags(data, seed, plan["log_every"]), "--train_diff_full", "--model_checkpoint", str(vae),
             "--activation", activation, "--flow_mlp_ratio", str(mlp_ratio), "--optim_sched_config",
             str(schedule), "--max_train_steps", str(plan["steps"]), "--lr", "5e-4", "--use_ema",
             "--ema_decay", "0.995", "--max_sequence_length", "24", "--cache_text_embeddings",
             "--checkpoint_save_interval", str(every)]
    return train_run(out, flags + precision(dtype), device, name="flow_ablation")


def precision(dtype: str) -> list[str]:
    return [] if dtype == "fp32" else ["--mixed_precision", dtype]


# ------------------------------------------------------------------------------------------------ evaluation

def checkpoints_with_ema(run: Path, device: str, dtype: torch.dtype):
    """``(step, pipeline)`` for every ``state/checkpoint-<step>`` of a flow run: the run's exported pipeline
    with the flow processor's EMA weights of that step (read from ``run_state.pt``, never unpickled code)."""
    from diffusers.training_utils import EMAModel

    from fluxflow import FluxFlowPipeline
    from fluxflow.training.checkpoint import RUN_STATE_FILE, state_folders

    pipe = FluxFlowPipeline.from_pretrained(run / "pipeline", dtype=dtype).to(device)
    pipe.set_progress_bar_config(disable=True)
    for folder in state_folders(run):
        saved = torch.load(folder / RUN_STATE_FILE, map_location="cpu", weights_only=True)
        ema = EMAModel(pipe.transformer.parameters())
        ema.load_state_dict(saved["ema"])
        ema.copy_to(pipe.transformer.parameters())
        yield int(folder.name.split("-")[1]), pipe


@torch.no_grad()
def held_out_batch(pipe, data: Path, repeats: int, device: str):
    """Held-out latents (posterior samples, normalized as in training) and text embeddings, ``repeats``
    times over, with fixed noise: the same inputs for every model."""
    from fluxflow.datasets.shapes import read_split

    images, captions = read_split(data)
    vae, gen = pipe.vae, torch.Generator("cpu").manual_seed(1234)
    x = torch.stack([torch.from_numpy(np.asarray(im, dtype=np.float32)) for im in images]).permute(0, 3, 1, 2)
    x = x.to(device, vae.dtype) / 127.5 - 1
    z = vae.encode(x).latent_dist.sample(generator=gen)
    x0 = ((z - vae.config.shift_factor) * vae.config.scaling_factor).repeat(repeats, 1, 1, 1)
    embeds, _, pooled, _, mask, _ = pipe.encode_prompt(captions, do_classifier_free_guidance=False)
    return x0, tuple(t.repeat(repeats, *([1] * (t.dim() - 1))) for t in (embeds, pooled, mask))


@torch.no_grad()
def held_out_loss(pipe, x0, text, device: str, dtype: torch.dtype, batch: int = 64) -> float:
    """The flow-matching loss of ``pipe.transformer`` on the held-out batch (noise and levels seeded: paired
    across models and checkpoints)."""
    from fluxflow.training.config import TrainConfig
    from fluxflow.training.flow_objective import FlowObjective

    objective, gen = FlowObjective(TrainConfig()), torch.Generator("cpu").manual_seed(4321)
    pipe.transformer.eval()
    losses = []
    for i in range(0, len(x0), batch):
        with autocast(device, dtype):
            loss, _ = objective.loss(pipe.transformer, x0[i:i + batch], tuple(t[i:i + batch] for t in text), gen)
        losses.append(float(loss) * len(x0[i:i + batch]))
    return sum(losses) / len(x0)


def evaluate_run(run: Path, data: Path, plan: dict, device: str, dtype: torch.dtype) -> dict[int, dict]:
    """Judge accuracy and held-out loss at every checkpoint: ``{step: {accuracy, colour, ..., loss}}``."""
    cached = run / "quality.json"
    if cached.exists():
        return {int(k): v for k, v in json.loads(cached.read_text()).items()}
    from fluxflow.datasets.shapes import read_split

    prompts = read_split(data)[1]
    result, inputs = {}, None
    for step, pipe in checkpoints_with_ema(run, device, dtype):
        if inputs is None:
            inputs = held_out_batch(pipe, data, plan["val_repeats"], device)
        judged = judge_pipeline(pipe, prompts, plan["sample_steps"], plan["guidance"], plan["judge_seeds"],
                                device)
        result[step] = {**judged, "loss": held_out_loss(pipe, *inputs, device, dtype)}
    cached.write_text(json.dumps(result))
    return result


def vae_ceiling(vae, data: Path) -> dict[str, dict]:
    """The judge on the held-out images themselves and on their VAE reconstructions (posterior mode): no flow
    processor can score above what the VAE it decodes through preserves."""
    from fluxflow.datasets.shapes import judge_accuracy, judge_reconstructions, read_split

    images, captions = read_split(data)
    return {"held-out images": judge_accuracy(zip(images, captions)),
            "their VAE reconstructions": judge_reconstructions(vae, images, captions)}


# ------------------------------------------------------------------------------------------------ report

def at_budget(run: dict, budget: float) -> int:
    """The latest evaluated step whose train time fits ``budget`` seconds (2% slack for timer noise)."""
    fitting = [s for s in run["quality"] if run["train_s"][s] <= budget * 1.02]
    return max(fitting) if fitting else min(run["quality"])


def mean_spread(values, digits: int = 3) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.fmean(values):.{digits}f} ± {(max(values) - min(values)) / 2:.{digits}f}"


def report(runs: dict, models: dict, params: dict, seeds, plan: dict, ceiling: dict) -> str:
    """The tables: the VAE's ceiling, models, quality vs training time, and equal wall-clock."""
    rows = [[name, f"{q['accuracy']:.3f}", f"{q['colour']:.3f}", f"{q['shape']:.3f}", f"{q['position']:.3f}",
             f"{q['background']:.3f}"] for name, q in ceiling.items()]
    lines = ["## The judge's ceiling: held-out images and their reconstructions by the VAE every model uses\n",
             table(["judged", "all four", "colour", "shape", "position", "background"], rows), ""]
    rows = [[name, act, f"{ratio:g}", f"{params[name]:,}", f"{params[name] / params['bezier'] - 1:+.1%}"
             if "bezier" in params else "",
             mean_spread([runs[(name, s)]["train_s"][plan["steps"]] / plan["steps"] * 1000 for s in seeds], 0)]
            for name, (act, ratio) in models.items()]
    lines += ["## Models (small preset flow processor: width 256, 8 blocks, 16 tokens)\n",
              table(["model", "activation", "mlp ratio", "params", "vs bezier", "train ms/step"], rows), ""]
    steps = sorted(runs[next(iter(runs))]["quality"])
    rows = []
    for name in models:
        for step in steps:
            rs = [runs[(name, s)] for s in seeds]
            q = [r["quality"][step] for r in rs]
            rows.append([name, step, mean_spread([r["train_s"][step] for r in rs], 0),
                         mean_spread([x["accuracy"] for x in q]), mean_spread([x["colour"] for x in q]),
                         mean_spread([x["shape"] for x in q]), mean_spread([x["position"] for x in q]),
                         mean_spread([x["loss"] for x in q], 4)])
    n = runs[next(iter(runs))]["quality"][steps[-1]]["n"]
    lines += [f"## Quality vs training time (EMA weights; judge on {n} images: held-out prompts x "
              f"{plan['judge_seeds']} noises, {plan['sample_steps']} Euler steps, guidance {plan['guidance']:g})"
              "\n", table(["model", "step", "train s", "all four", "colour", "shape", "position",
                           "held-out loss"], rows), ""]
    budget = min(statistics.fmean(runs[(name, s)]["train_s"][plan["steps"]] for s in seeds) for name in models)
    rows = []
    for name in models:
        rs = [runs[(name, s)] for s in seeds]
        chosen = [at_budget(r, budget) for r in rs]
        q = [r["quality"][c] for r, c in zip(rs, chosen)]
        rows.append([name, " / ".join(map(str, chosen)),
                     mean_spread([r["train_s"][c] for r, c in zip(rs, chosen)], 0),
                     mean_spread([x["accuracy"] for x in q]), mean_spread([x["loss"] for x in q], 4)])
    lines += [f"## Equal wall-clock: the latest checkpoint within {budget:.0f} s (the fastest model's train "
              "time)\n", table(["model", "step", "train s", "all four", "held-out loss"], rows)]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ main

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run of about a minute (numbers meaningless)")
    parser.add_argument("--out", default=None, help="working folder (default outputs/flow_ablation[_quick])")
    parser.add_argument("--vae", default=None, help="a trained shapes VAE (folder or checkpoint.safetensors); "
                                                    "default: train the demo's VAE stage first")
    parser.add_argument("--steps", type=int, default=None, help="flow training steps per model")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="training seeds (default 0)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: timings stay comparable while another process uses "
                             "the other core)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (training: Accelerate's device)")
    parser.add_argument("--dtype", default="fp32", choices=sorted(DTYPES))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    plan = dict(QUICK if args.quick else FULL)
    plan.update({k: v for k, v in {"steps": args.steps, "seeds": args.seeds}.items() if v is not None})
    if plan["steps"] % plan["evals"]:
        parser.error(f"--steps must be a multiple of {plan['evals']} (the evaluated checkpoints)")
    out = Path(args.out or ("outputs/flow_ablation_quick" if args.quick else "outputs/flow_ablation"))
    dtype, seeds = DTYPES[args.dtype], tuple(plan["seeds"])
    logging.basicConfig(level=logging.WARNING)  # before the CLI's basicConfig: keeps the runs quiet
    begin = time.perf_counter()
    print(f"# Flow-processor ablation, {'quick' if args.quick else 'full'} run, {time.strftime('%Y-%m-%d %H:%M')}"
          f"\nmachine: {machine()}; device {args.device}, {args.dtype}\n", flush=True)

    from fluxflow.datasets.shapes import write_shapes_dataset

    data = out / "data"
    if not (data / "test" / "metadata.jsonl").exists():
        write_shapes_dataset(data, plan["n_train"], size=SIZE, seed=0, n_test=plan["n_test"],
                             second_object_prob=0.0)
    vae = Path(args.vae) if args.vae else train_vae(out / "vae", data / "train", plan["vae_steps"], args.device,
                                                     args.dtype)
    print(f"VAE: {vae}", flush=True)
    models = {name: MODELS[name] for name in args.models}
    params = {name: flow_params(*models[name]) for name in models}

    runs = {}
    for seed in seeds:
        for name, (act, ratio) in models.items():
            start = time.perf_counter()
            run_dir = out / "runs" / f"{name}-s{seed}"
            run = train_flow(run_dir, data / "train", vae, act, ratio, plan, seed, args.device, args.dtype)
            run["quality"] = evaluate_run(run_dir, data / "test", plan, args.device, dtype)
            last = run["quality"][plan["steps"]]
            runs[(name, seed)] = run
            print(f"  {name} seed {seed}: train {run['train_s'][plan['steps']]:.0f} s, accuracy "
                  f"{last['accuracy']:.3f}, held-out loss {last['loss']:.4f} "
                  f"({time.perf_counter() - start:.0f} s with start-up and evaluation)", flush=True)

    from fluxflow.models import FluxFlowVAE

    first_run = out / "runs" / f"{next(iter(models))}-s{seeds[0]}"
    vae_model = FluxFlowVAE.from_pretrained(first_run / "pipeline" / "vae", dtype=dtype).to(args.device).eval()
    ceiling = vae_ceiling(vae_model, data / "test")
    print("\n" + report(runs, models, params, seeds, plan, ceiling))
    summary = {"plan": {k: list(v) if isinstance(v, tuple) else v for k, v in plan.items()},
               "machine": machine(), "vae": str(vae), "params": params, "ceiling": ceiling,
               "runs": {f"{n}-s{s}": r for (n, s), r in runs.items()}}
    write_results(out, "flow_ablation", summary, begin)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
