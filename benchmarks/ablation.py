"""Bezier vs SiLU vs GELU in the VAE, on the shapes benchmark: the ablation the earlier release never ran.

    python benchmarks/ablation.py [--quick] [--out outputs/ablation] [--device cpu] [--dtype fp32]
                                  [--threads 1] [--steps N] [--seeds 0 1] [--ref_widths 16 32 64]
    flock /tmp/fluxflow-bench.lock env HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/ablation.py   # full run

The earlier release claimed that Bezier activations make models "2-2.5x smaller at equal quality" and
"38% faster". This script measures both claims for the VAE on generated 32-px shapes images (the data set of
``examples/shapes_demo.py``; quality on held-out images never seen in training):

1. **Equal parameters.** A Bezier VAE at stage widths ``--ref_widths`` is the reference; SiLU and GELU VAEs
   get the stage widths (multiples of 8, close to the same 1:2:4 proportions) whose parameter count is within
   5% of it (``match_widths``). Note: in the VAE every Bezier non-linearity is a ``BezierGate`` (a 1x1
   convolution ``C -> 5C`` and the curve), and the presets use the same ``block_out_channels`` for every
   activation, so at equal widths the Bezier VAE is the larger one (+22% at 16/32/64).
2. **Equal training steps**, every model trained by the real CLI (``fluxflow.cli.train.main``:
   ``--train_vae --train_spade --activation A --vae_block_out_channels ...``, the demo's recipe: AdamW,
   lr 1e-3 with the default cosine schedule, batch 16), evaluated at four checkpoints: quality as a function
   of training time.
3. **Equal training compute, defined as equal wall-clock time** (FLOPs would not be a fair budget here: the
   Bezier curve is element-wise work that FLOP counters do not count). SiLU and GELU are
   trained again for ``steps x (Bezier's train time / their own train time)`` steps, so that each run takes
   what the Bezier run took. Train time is the sum of the CLI's logged ``step_time`` (data loading, forward,
   backward, optimizer, checkpoint saves; no start-up).
4. **Size sweep**: Bezier VAEs with widths w/2w/4w below the reference (``sweep_down``: w = 8, 9, 10, 12,
   1.6x to 3.1x fewer parameters than the GELU VAE) or, when the equal-size Bezier VAE does not reach GELU's
   PSNR, above it (``sweep_up``), same steps, first seed; the smallest that reaches the reference GELU VAE's
   mean PSNR gives the size ratio to set against "2-2.5x smaller". Below the reference, GELU VAEs of the same
   widths are the control: when a GELU VAE as small reaches that PSNR too, the saving is not Bezier's.
5. **Speed** of each model without data loading: forward + backward + AdamW of one batch (median), FLOPs of
   forward + backward (``torch.utils.flop_counter``: convolutions, matmuls, attention), and encode + decode.

Quality: PSNR (dB) and SSIM (Wang et al. 2004: Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03, valid
positions as in the authors' ``ssim.m`` and pytorch-msssim; torchmetrics reflect-pads the borders instead,
which at 32 px gives values about 0.001 apart, and identical ones when padded alike) of ``vae(x)`` (posterior
mode, decoded with SPADE context) against the held-out images, both in [0, 1], averaged per image.
``--seeds 0 1`` repeats the equal-step and equal-time runs with other seeds (initialisation and data order)
and reports the mean and the half-range; the sweep uses the first seed.

Full: about 20 minutes on the 2-core VM with one thread (measured: 1151 s; results in
benchmarks/results/ablation.md); ``--quick``: under a minute (a smoke run, numbers meaningless). On a GPU
(``--device cuda --dtype bf16``, with larger ``--ref_widths``/``--steps``) training runs on Accelerate's
device with ``--mixed_precision bf16`` and the evaluation and speed runs under bf16 autocast. The flow
transformer is not ablated here (it did not fit the ~25-minute budget; see the results file).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import math
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
import torch.nn.functional as F
from PIL import Image

from fluxflow.models import FluxFlowVAE
from fluxflow.models.layers import ACTIVATIONS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import (DTYPES, SIZE, autocast, bundled_tokenizer, machine, sync, table,  # noqa: E402
                          train_run, write_results)

RATIOS = (1, 2, 4)  # stage width proportions of the demo's VAE (32/64/128)

# sweep_down / sweep_up: first widths w of the Bezier VAEs w/2w/4w tried below / above the reference
FULL = {"n_train": 2000, "n_test": 256, "steps": 300, "ref_widths": (16, 32, 64), "seeds": (0, 1),
        "batch": 16, "sweep_down": (8, 9, 10, 12), "sweep_up": (20, 24), "speed_repeats": 5}
QUICK = {"n_train": 128, "n_test": 32, "steps": 20, "ref_widths": (8, 16, 32), "seeds": (0,),
         "batch": 16, "sweep_down": (4,), "sweep_up": (12,), "speed_repeats": 2}


# ------------------------------------------------------------------------------------------------ metrics

def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio per image, ``10 log10(L^2 / MSE)`` in dB (``inf`` for identical images).

    ``x``, ``y``: ``[B, C, H, W]`` in ``[0, data_range]``."""
    mse = (x.double() - y.double()).pow(2).mean(dim=(1, 2, 3))
    return 10 * torch.log10(data_range**2 / mse)


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """The normalised 1-D Gaussian of the SSIM paper (size 11, sigma 1.5)."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-x**2 / (2 * sigma**2))
    return g / g.sum()


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, size: int = 11, sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Mean structural similarity per image (Wang, Bovik, Sheikh, Simoncelli 2004, eq. 13):

    ``SSIM = (2 mu_x mu_y + C1)(2 sigma_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(sigma_x^2 + sigma_y^2 + C2))``,
    ``C1 = (K1 L)^2``, ``C2 = (K2 L)^2``, with the local means, variances and covariance weighted by an 11x11
    Gaussian (sigma 1.5), at the valid positions only (as the authors' ``ssim.m``), averaged over positions
    and channels. ``x``, ``y``: ``[B, C, H, W]`` in ``[0, data_range]``, at least ``size`` pixels a side."""
    x, y = x.double(), y.double()
    channels = x.shape[1]
    g = gaussian_window(size, sigma).to(x.device)
    window = (g[:, None] * g[None, :]).expand(channels, 1, size, size)

    def blur(t):
        return F.conv2d(t, window, groups=channels)

    mu_x, mu_y = blur(x), blur(y)
    var_x, var_y = blur(x * x) - mu_x**2, blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = (2 * mu_x * mu_y + c1) * (2 * cov + c2) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return s.mean(dim=(1, 2, 3))


# ------------------------------------------------------------------------------------------------ model sizes

def vae_params(activation: str, widths) -> int:
    """Parameters of the small-preset VAE (as ``fluxflow-train --model_preset small`` builds it)."""
    vae = FluxFlowVAE.from_preset("small", activation=activation, block_out_channels=tuple(widths))
    return sum(p.numel() for p in vae.parameters())


def _shape_deviation(widths, ratios) -> float:
    """How far ``widths`` are from the proportions ``ratios`` (max relative deviation from the best fit)."""
    s = sum(w * r for w, r in zip(widths, ratios)) / sum(r * r for r in ratios)
    return max(abs(w / (s * r) - 1) for w, r in zip(widths, ratios))


def match_widths(activation: str, target: int, ratios=RATIOS, multiple: int = 8, tol: float = 0.05,
                 count=vae_params) -> tuple[tuple[int, ...], int]:
    """Stage widths for ``activation`` whose VAE has ``target`` parameters within ``tol``.

    Widths are multiples of ``multiple`` (oneDNN's convolutions are measurably slower at odd channel counts)
    near the proportions ``ratios``: the proportional tuples around the target, each stage also one
    ``multiple`` narrower or wider. Among the candidates within ``tol / 2`` the most proportional wins, else
    the closest in parameters; ``ValueError`` when none is within ``tol``. Returns ``(widths, params)``."""
    cache: dict[tuple[int, ...], int] = {}

    def params(w):
        if w not in cache:
            cache[w] = count(activation, w)
        return cache[w]

    def proportional(s):
        return tuple(max(multiple, multiple * round(s * r / multiple)) for r in ratios)

    s, step = multiple / ratios[0] / 2, multiple / ratios[-1] / 2
    near = []
    while True:  # parameters grow with s: collect the proportional tuples from 0.6x to 1.6x the target
        w = proportional(s)
        p = params(w)
        if p > 0.6 * target and w not in near:
            near.append(w)
        if p > 1.6 * target:
            break
        s += step
    candidates = set()
    for w in near:
        for delta in np.ndindex(*(3,) * len(ratios)):
            v = tuple(x + (d - 1) * multiple for x, d in zip(w, delta))
            if min(v) >= multiple and all(a <= b for a, b in itertools.pairwise(v)):
                candidates.add(v)
    scored = [(abs(params(w) / target - 1), _shape_deviation(w, ratios), w) for w in sorted(candidates)]
    close = [c for c in scored if c[0] <= tol / 2]
    err, _, widths = min(close, key=lambda c: (c[1], c[0])) if close else min(scored)
    if err > tol:
        raise ValueError(f"no {activation} widths within {tol:.0%} of {target} parameters (best {widths}: "
                         f"{params(widths)}, {err:.1%} off)")
    return widths, params(widths)


# ------------------------------------------------------------------------------------------------ training

def train_vae(out: Path, data: Path, activation: str, widths, steps: int, seed: int, batch: int,
              dtype: str = "fp32", device: str = "cpu", checkpoints: int = 4) -> dict:
    """Train a VAE with ``fluxflow-train`` (in-process) and save ``checkpoints`` evenly spaced state folders.

    Returns ``{"train_s": {step: cumulative train seconds}, "wall_s": ...}``; an existing finished run in
    ``out`` (its ``run.json``) is reused, so an interrupted benchmark continues where it stopped."""
    log_every = 5 if steps >= 20 else 1
    every = max(log_every, log_every * math.ceil(steps / checkpoints / log_every))
    flags = ["--img_size", str(SIZE), "--model_preset", "small", "--batch_size", str(batch),
             "--seed", str(seed), "--workers", "0", "--log_interval", str(log_every), "--train_vae",
             "--train_spade", "--data_path", str(data), "--activation", activation,
             "--vae_block_out_channels", *map(str, widths), "--max_train_steps", str(steps), "--lr", "1e-3",
             "--kl_warmup_steps", str(max(1, steps // 3)), "--checkpoint_save_interval", str(every),
             "--no_samples", "--tokenizer_name", bundled_tokenizer()]
    if dtype != "fp32":
        flags += ["--mixed_precision", dtype]
    result = train_run(out, flags, device, name="ablation")
    return {"activation": activation, "widths": list(widths), "steps": steps, "seed": seed, **result}


def load_images(folder: Path) -> torch.Tensor:
    """The PNGs of an imagefolder split, in file order, as ``[N, 3, H, W]`` in [0, 1]."""
    files = sorted(folder.glob("*.png"))
    arrays = [np.asarray(Image.open(f).convert("RGB"), dtype=np.float32) / 255.0 for f in files]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


@torch.no_grad()
def reconstruction_quality(vae: FluxFlowVAE, images: torch.Tensor, device: str = "cpu",
                           dtype: torch.dtype = torch.float32, batch: int = 64) -> tuple[float, float]:
    """Mean PSNR and SSIM of ``vae(x)`` (posterior mode, SPADE context) against ``images`` in [0, 1]."""
    vae = vae.to(device).eval()
    p, s = [], []
    for i in range(0, len(images), batch):
        x = images[i:i + batch].to(device)
        with autocast(device, dtype):
            recon = vae(x * 2 - 1).sample
        recon = (recon.float().clamp(-1, 1) + 1) / 2
        p.append(psnr(recon, x))
        s.append(ssim(recon, x))
    return float(torch.cat(p).mean()), float(torch.cat(s).mean())


def evaluate_run(out: Path, images: torch.Tensor, device: str, dtype: torch.dtype) -> dict[int, tuple]:
    """PSNR/SSIM at every ``state/checkpoint-<step>`` of a run: ``{step: (psnr, ssim)}``."""
    from safetensors.torch import load_file

    from fluxflow.training.checkpoint import state_folders

    cached = out / "quality.json"
    if cached.exists():
        return {int(k): tuple(v) for k, v in json.loads(cached.read_text()).items()}
    config = json.loads((out / "vae" / "config.json").read_text())
    result = {}
    for folder in state_folders(out):
        state = load_file(folder / "model.safetensors")
        vae = FluxFlowVAE.from_config(config)
        vae.load_state_dict({k.removeprefix("vae."): v for k, v in state.items()})
        result[int(folder.name.split("-")[1])] = reconstruction_quality(vae, images, device, dtype)
    cached.write_text(json.dumps(result))
    return result


# ------------------------------------------------------------------------------------------------ speed

def speed(activation: str, widths, batch: int, device: str, dtype: torch.dtype, repeats: int) -> dict:
    """Cost of one training step without data loading (forward + backward + AdamW; median of ``repeats``
    after two warm-ups), its FLOPs, and encode + decode per image."""
    from torch.utils.flop_counter import FlopCounterMode

    from fluxflow.training.losses import kl_loss, reconstruction_loss
    from fluxflow.training.vae_objective import VAEForward

    torch.manual_seed(0)
    vae = FluxFlowVAE.from_preset("small", activation=activation, block_out_channels=tuple(widths)).to(device)
    model = VAEForward(vae)
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.01)
    x = torch.rand(batch, 3, SIZE, SIZE, device=device) * 2 - 1

    def step():
        with autocast(device, dtype):
            recon, mean, logvar, _ = model(x, use_context=True)
            loss = reconstruction_loss(recon.float(), x) + 1e-4 * kl_loss(mean, logvar)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def timed(fn):
        for _ in range(2):
            fn()
        runs = []
        for _ in range(repeats):
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            runs.append(time.perf_counter() - start)
        return statistics.median(runs)

    step_s = timed(step)
    with FlopCounterMode(display=False) as counter:
        with autocast(device, dtype):
            recon, mean, logvar, _ = model(x, use_context=True)
            loss = reconstruction_loss(recon.float(), x) + 1e-4 * kl_loss(mean, logvar)
        loss.backward()
    opt.zero_grad(set_to_none=True)
    vae.eval()

    @torch.no_grad()
    def infer():
        with autocast(device, dtype):
            vae(x)

    infer_s = timed(infer)
    return {"step_s": step_s, "gflop_step": counter.get_total_flops() / 1e9,
            "infer_ms_img": 1000 * infer_s / batch}


# ------------------------------------------------------------------------------------------------ report

def mean_spread(values) -> str:
    values = [v for v in values if v is not None]
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.fmean(values):.2f} ± {(max(values) - min(values)) / 2:.2f}"


def mean_spread4(values) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.fmean(values):.4f} ± {(max(values) - min(values)) / 2:.4f}"


def widths_str(w) -> str:
    return "/".join(map(str, w))


# ------------------------------------------------------------------------------------------------ main

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a 1-2 minute smoke run (numbers meaningless)")
    parser.add_argument("--out", default=None, help="working folder (default outputs/ablation[_quick])")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: timings stay stable while another process uses "
                             "the other core; with 2 threads such a process made training steps 10-80x "
                             "slower)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (training: Accelerate's device)")
    parser.add_argument("--dtype", default="fp32", choices=sorted(DTYPES))
    parser.add_argument("--steps", type=int, default=None, help="training steps of the equal-step runs")
    parser.add_argument("--ref_widths", type=int, nargs="+", default=None, help="the reference Bezier VAE")
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--no_sweep", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    plan = dict(QUICK if args.quick else FULL)
    given = {"steps": args.steps, "ref_widths": args.ref_widths, "seeds": args.seeds}
    plan.update({k: v for k, v in given.items() if v is not None})
    out = Path(args.out or ("outputs/ablation_quick" if args.quick else "outputs/ablation"))
    dtype = DTYPES[args.dtype]
    logging.basicConfig(level=logging.WARNING)  # before the CLI's basicConfig: keeps the runs quiet
    steps, batch, seeds = plan["steps"], plan["batch"], tuple(plan["seeds"])
    begin = time.perf_counter()
    print(f"# Bezier ablation (VAE), {'quick' if args.quick else 'full'} run, "
          f"{time.strftime('%Y-%m-%d %H:%M')}\nmachine: {machine()}; device {args.device}, {args.dtype}\n",
          flush=True)

    from fluxflow.datasets.shapes import write_shapes_dataset

    data = out / "data"
    if not (data / "test" / "metadata.jsonl").exists():
        write_shapes_dataset(data, plan["n_train"], size=SIZE, seed=0, n_test=plan["n_test"],
                             second_object_prob=0.0)
    held_out = load_images(data / "test")

    # models: the Bezier reference and SiLU/GELU at the same parameter count
    ref = tuple(plan["ref_widths"])
    models = {"bezier": (ref, vae_params("bezier", ref))}
    for act in ("silu", "gelu"):
        models[act] = match_widths(act, models["bezier"][1])
    rows = [[a, widths_str(w), f"{p:,}", f"{p / models['bezier'][1] - 1:+.1%}"]
            for a, (w, p) in models.items()]
    print(table(["activation", "stage widths", "params", "vs Bezier"], rows), flush=True)

    def run(name, act, widths, n_steps, seed):
        start = time.perf_counter()
        result = train_vae(out / "runs" / name, data / "train", act, widths, n_steps, seed, batch, args.dtype,
                           args.device)
        result["quality"] = evaluate_run(out / "runs" / name, held_out, args.device, dtype)
        print(f"  {name}: {n_steps} steps, train {result['train_s'][n_steps]:.0f} s, "
              f"PSNR {result['quality'][n_steps][0]:.2f} dB, SSIM {result['quality'][n_steps][1]:.4f} "
              f"({time.perf_counter() - start:.0f} s with start-up and evaluation)", flush=True)
        return result

    # 1-2. equal parameters, equal steps
    print(f"\n## training: equal parameters, {steps} steps each, seeds {list(seeds)}", flush=True)
    eq = {(act, seed): run(f"{act}-eqsteps-s{seed}", act, models[act][0], steps, seed)
          for seed in seeds for act in ACTIVATIONS}

    def t_at(result, step):
        return result["train_s"][step]

    # 3. equal wall-clock: SiLU/GELU get Bezier's train time
    print("\n## training: equal wall-clock (Bezier's train time)", flush=True)
    eqtime = {}
    for seed in seeds:
        budget = t_at(eq[("bezier", seed)], steps)
        for act in ("silu", "gelu"):
            n = max(1, round(steps * budget / t_at(eq[(act, seed)], steps)))
            eqtime[(act, seed)] = run(f"{act}-eqtime-s{seed}", act, models[act][0], n, seed)
        eqtime[("bezier", seed)] = eq[("bezier", seed)]

    def final(result):
        return result["quality"][result["steps"]]

    gelu_psnr = statistics.fmean(final(eq[("gelu", s)])[0] for s in seeds)
    bezier_psnr = statistics.fmean(final(eq[("bezier", s)])[0] for s in seeds)

    # 4. size sweep: Bezier VAEs of widths w/2w/4w and, below the reference, GELU VAEs of the same widths
    #    as the control (a GELU VAE as small that also reaches the reference PSNR: the saving is not Bezier's)
    sweep = {}  # (activation, w) -> (widths, params, result)
    if not args.no_sweep:
        down = bezier_psnr >= gelu_psnr
        firsts = plan["sweep_down"] if down else plan["sweep_up"]
        acts = ("bezier", "gelu") if down else ("bezier",)
        print(f"\n## training: size sweep, {' and '.join(acts)} widths w/2w/4w for w in {list(firsts)}, "
              f"{steps} steps, seed {seeds[0]}", flush=True)
        for first in firsts:
            widths = tuple(first * r for r in RATIOS)
            for act in acts:
                result = run(f"{act}-{widths_str(widths)}-s{seeds[0]}", act, widths, steps, seeds[0])
                sweep[(act, first)] = (widths, vae_params(act, widths), result)

    # 5. speed without data loading
    print("\n## speed (no data loading)", flush=True)
    speed_models = {f"{a} {widths_str(w)}": (a, w) for a, (w, _) in models.items()}
    speed_models[f"gelu {widths_str(ref)} (Bezier's widths)"] = ("gelu", ref)
    speed_models[f"silu {widths_str(ref)} (Bezier's widths)"] = ("silu", ref)
    for (act, _), (w, _, _) in sorted(sweep.items()):
        speed_models.setdefault(f"{act} {widths_str(w)}", (act, w))
    speeds = {name: speed(a, w, batch, args.device, dtype, plan["speed_repeats"]) for name, (a, w) in
              speed_models.items()}

    # ---------------------------------------------------------------- tables
    g_name = f"gelu {widths_str(models['gelu'][0])}"
    print(f"\n## Speed per training step, batch {batch}, {SIZE} px (forward + backward + AdamW, no data "
          f"loading; median of {plan['speed_repeats']})\n")
    rows = []
    for name, (a, w) in speed_models.items():
        sp, p = speeds[name], vae_params(a, w)
        rows.append([name, f"{p / 1e6:.3f}", f"{sp['gflop_step']:.2f}", f"{sp['step_s'] * 1000:.0f}",
                     f"{speeds[g_name]['step_s'] / sp['step_s']:.2f}x", f"{sp['infer_ms_img']:.2f}",
                     f"{speeds[g_name]['infer_ms_img'] / sp['infer_ms_img']:.2f}x"])
    print(table(["model (activation, widths)", "params (M)", "GFLOP fwd+bwd", "train ms/step",
                 f"speed-up vs {g_name}", "encode+decode ms/img", "speed-up vs GELU"], rows))
    print(f"\nspeed-up = the time of {g_name} (the equal-parameter GELU VAE) / this model's time: above "
          "1x is faster than GELU")

    def quality_rows(results: dict, label_steps=True):
        rows = []
        for act in ACTIVATIONS:
            runs = [results[(act, s)] for s in seeds]
            n = runs[0]["steps"]
            rows.append([act, widths_str(models[act][0]), f"{models[act][1] / 1e6:.3f}",
                         " / ".join(str(r["steps"]) for r in runs) if not label_steps else str(n),
                         mean_spread([t_at(r, r["steps"]) for r in runs]),
                         mean_spread([final(r)[0] for r in runs]), mean_spread4([final(r)[1] for r in runs])])
        return rows

    spread = f"seed {seeds[0]}"
    if len(seeds) > 1:
        spread = "mean ± half-range over seeds " + ", ".join(map(str, seeds))
    header = ["activation", "widths", "params (M)", "steps", "train s", "PSNR dB", "SSIM"]
    print(f"\n## (i) Equal parameters, equal steps: held-out PSNR/SSIM ({len(held_out)} images; {spread})\n")
    print(table(header, quality_rows(eq), "lllrrrrr"[:7]))
    print(f"\n## (ii) Equal training compute = equal wall-clock (each run gets the Bezier run's train time; "
          f"{spread})\n")
    print(table(header, quality_rows(eqtime, label_steps=False), "lllrrrrr"[:7]))

    print(f"\n## Quality vs training time (equal-step runs, {spread})\n")
    rows = []
    for act in ACTIVATIONS:
        for step in sorted(eq[(act, seeds[0])]["quality"]):
            runs = [eq[(act, s)] for s in seeds]
            rows.append([act, step, mean_spread([t_at(r, step) for r in runs]),
                         mean_spread([r["quality"][step][0] for r in runs]),
                         mean_spread4([r["quality"][step][1] for r in runs])])
    print(table(["activation", "step", "train s", "PSNR dB", "SSIM"], rows))

    verdicts = {}
    if sweep:
        g_ref = models["gelu"]
        print(f"\n## Size sweep ({steps} steps, seed {seeds[0]}) against the reference GELU VAE "
              f"{widths_str(g_ref[0])} ({g_ref[1] / 1e6:.3f} M, PSNR {gelu_psnr:.2f} dB at {steps} steps, "
              "mean over seeds)\n")
        rows = []
        for act in ACTIVATIONS:
            entries = [(w, p, r) for (a, _), (w, p, r) in sweep.items() if a == act]
            if not entries:
                continue
            entries.append((models[act][0], models[act][1], eq[(act, seeds[0])]))
            matching = []
            for w, p, r in sorted(entries, key=lambda e: e[1]):
                q = final(r)
                ok = q[0] >= gelu_psnr
                if ok:
                    matching.append((p, w))
                rows.append([act, widths_str(w), f"{p / 1e6:.3f}", f"{g_ref[1] / p:.2f}x",
                             f"{t_at(r, steps):.0f}", f"{q[0]:.2f}", f"{q[1]:.4f}", "yes" if ok else "no"])
            if matching:
                p, w = min(matching)
                verdicts[act] = (f"smallest {act} VAE reaching the reference GELU PSNR: {widths_str(w)} "
                                 f"({p / 1e6:.3f} M), {g_ref[1] / p:.2f}x fewer parameters than the "
                                 "reference")
                if p == min(e[1] for e in entries):
                    verdicts[act] += " (the smallest size tried: a smaller one may match too)"
            else:
                largest = max(e[1] for e in entries)
                verdicts[act] = f"no {act} VAE up to {largest / 1e6:.3f} M reached the reference GELU PSNR"
        print(table(["activation", "widths", "params (M)", "reference GELU params / these", "train s",
                     "PSNR dB", "SSIM", ">= reference PSNR"], rows))
        print("\n" + "\n".join(verdicts.values()))

    summary = {"plan": {k: list(v) if isinstance(v, tuple) else v for k, v in plan.items()},
               "machine": machine(), "models": {a: [list(w), p] for a, (w, p) in models.items()},
               "speeds": speeds, "gelu_psnr": gelu_psnr, "bezier_psnr": bezier_psnr, "verdicts": verdicts,
               "eq": {f"{a}-s{s}": r for (a, s), r in eq.items()},
               "eqtime": {f"{a}-s{s}": r for (a, s), r in eqtime.items()},
               "sweep": {f"{a}-{f}": {"widths": list(w), "params": p, "run": r}
                         for (a, f), (w, p, r) in sweep.items()}}
    write_results(out, "ablation", summary, begin)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
