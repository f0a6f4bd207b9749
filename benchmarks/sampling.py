"""Sampling: what FluxFlowPipeline costs over a bare loop, and how few Euler steps the shapes model needs.

    python benchmarks/sampling.py [--pipeline PATH] [--quick] [--device cpu] [--dtype fp32] [--threads 1]
                                  [--steps 1 2 4 8 16 20 28] [--guidance_scale 4]
    flock /tmp/fluxflow-bench.lock env HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/sampling.py   # full run

(a) **Pipeline overhead.** Latency per image of ``FluxFlowPipeline.__call__`` against ``bare_sample``: the
    same transformer, the same Euler steps of the pipeline's ``FlowMatchEulerDiscreteScheduler`` schedule,
    the same classifier-free guidance and the same VAE decode, written as a plain loop over the models. Both
    get the same precomputed text embeddings, so the ratio is the pipeline's own overhead (input checks,
    embedding plumbing, scheduler bookkeeping, post-processing); a row with prompt strings adds the text
    encoder, a row with ``output_type="pil"`` the conversion to PIL images. The two paths give the same
    image for the same seed (checked here and in ``tests/unit/test_benchmarks_quality.py``). Median of
    several rounds after a warm-up; the progress bar is off, as in the shapes demo.
(b) **Steps vs prompt adherence.** The held-out prompts of the shapes data set (never seen in training),
    generated at each of ``--steps`` (guidance 4, as the demo) with the same starting noise for every step
    count, scored by ``fluxflow.datasets.shapes.judge_image`` (analytic: colour, shape, 3x3 position,
    background): how few steps suffice.

The pipeline: ``--pipeline PATH``; else the first of ``outputs/demo/pipeline``,
``outputs/demo/flow/pipeline``, ``outputs/demo_full/flow/pipeline`` (``examples/shapes_demo.py``'s export);
else a small one is trained first the way ``shapes_demo.py`` does (data, VAE, flow processor through
``fluxflow-train``, 400 + 800 steps instead of the demo's 2,000 + 3,000; ``--quick``: 30 + 40 steps). The
held-out prompts are read from ``data/test`` beside the pipeline's run folder when it is there, else
regenerated from the shapes generator (``--n_train``, ``--n_test``: the demo's 2,000 and 64).

Full: about 3.5 minutes on the 2-core VM with one thread and an existing pipeline (results in
benchmarks/results/sampling.md); ``--quick``: under a minute. On a GPU: ``--device cuda --dtype bf16``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from functools import partial
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.utils import logging as diffusers_logging
from diffusers.utils.torch_utils import randn_tensor

from fluxflow import FluxFlowPipeline
from fluxflow.datasets.shapes import make_scene

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import DTYPES, SIZE, generators, judge_pipeline, machine, sync, table  # noqa: E402
FOUND = ("outputs/demo/pipeline", "outputs/demo/flow/pipeline", "outputs/demo_full/flow/pipeline")
FULL = {"batches": (1, 16), "latency_steps": 20, "repeats": 7, "steps": (1, 2, 4, 8, 16, 20, 28),
        "seeds": 2, "n_prompts": None,
        "train": {"n": 2000, "n_test": 64, "vae_steps": 400, "flow_steps": 800}}
QUICK = {"batches": (1, 4), "latency_steps": 8, "repeats": 2, "steps": (1, 4, 8), "seeds": 1,
         "n_prompts": 16, "train": {"n": 128, "n_test": 16, "vae_steps": 30, "flow_steps": 40}}


# ---------------------------------------------------------------------------------------------- the bare loop

def text_embeddings(pipe: FluxFlowPipeline, prompts: list[str]):
    """``(cond, uncond)`` :class:`PromptEmbeddings` exactly as the pipeline makes them: the prompts, and the
    empty prompt (the null condition) padded to the same length."""
    from fluxflow.pipelines import PromptEmbeddings

    embeds, neg_embeds, pooled, neg_pooled, mask, neg_mask = pipe.encode_prompt(prompts)
    return PromptEmbeddings(embeds, pooled, mask), PromptEmbeddings(neg_embeds, neg_pooled, neg_mask)


def pipeline_kwargs(cond, uncond) -> dict:
    """The pipeline's keyword arguments for precomputed embeddings."""
    return {"prompt_embeds": cond.embeds, "pooled_prompt_embeds": cond.pooled,
            "prompt_attention_mask": cond.mask, "negative_prompt_embeds": uncond.embeds,
            "negative_pooled_prompt_embeds": uncond.pooled, "negative_prompt_attention_mask": uncond.mask}


@torch.no_grad()
def bare_sample(transformer, vae, scheduler_config, cond, uncond, num_inference_steps: int,
                guidance_scale: float, generator, height: int = SIZE, width: int = SIZE) -> torch.Tensor:
    """Text embeddings -> images ``[B, 3, H, W]`` in [0, 1] as a plain loop: Gaussian latents, Euler steps
    ``x <- x + (sigma_next - sigma) v`` on the scheduler's sigma schedule with classifier-free guidance, then
    the VAE decode of ``latents / scaling_factor + shift_factor``. What ``FluxFlowPipeline`` computes,
    without it."""
    device, dtype = transformer.device, transformer.dtype
    f = 2 ** (len(vae.config.block_out_channels) - 1)
    batch = cond.embeds.shape[0]
    latents = randn_tensor((batch, transformer.config.in_channels, height // f, width // f),
                           generator=generator, device=device, dtype=dtype)
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(scheduler_config)
    kwargs = {}
    if scheduler.config.get("use_dynamic_shifting", False):  # as the pipeline (and diffusers' SD3/Flux) do
        c = scheduler.config
        seq = latents.shape[-2] * latents.shape[-1] // transformer.config.patch_size**2
        kwargs["mu"] = c.base_shift + (c.max_shift - c.base_shift) * (seq - c.base_image_seq_len) / (
            c.max_image_seq_len - c.base_image_seq_len)
    scheduler.set_timesteps(num_inference_steps, device=device, **kwargs)
    sigmas = scheduler.sigmas
    cfg = guidance_scale > 1
    embeds = torch.cat([uncond.embeds, cond.embeds]) if cfg else cond.embeds
    pooled = torch.cat([uncond.pooled, cond.pooled]) if cfg else cond.pooled
    mask = torch.cat([uncond.mask, cond.mask]) if cfg else cond.mask
    for i, t in enumerate(scheduler.timesteps):
        x = torch.cat([latents, latents]) if cfg else latents
        v = transformer(x, embeds, pooled, t.expand(x.shape[0]), mask, return_dict=False)[0]
        if cfg:
            v_uncond, v_text = v.chunk(2)
            v = v_uncond + guidance_scale * (v_text - v_uncond)
        latents = (latents.float() + (sigmas[i + 1] - sigmas[i]) * v).to(v.dtype)
    z = latents / vae.config.scaling_factor + vae.config.shift_factor
    image = vae.decode(z.to(vae.dtype), return_dict=False)[0]
    return (image * 0.5 + 0.5).clamp(0, 1)


# ------------------------------------------------------------------------------------------------ helpers

def run_bare(pipe, cond, uncond, steps: int, guidance: float, device) -> torch.Tensor:
    """``bare_sample`` with the pipeline's models, one generator per image (seeds 0, 1, ...)."""
    return bare_sample(pipe.transformer, pipe.vae, pipe.scheduler.config, cond, uncond, steps, guidance,
                       generators(0, cond.embeds.shape[0], device))


def run_pipeline(pipe, prompts, cond, uncond, steps: int, guidance: float, device, output_type: str = "pt",
                 strings: bool = False):
    """The pipeline on the same embeddings (or, with ``strings``, on the prompts) and the same generators."""
    text = {"prompt": prompts} if strings else pipeline_kwargs(cond, uncond)
    return pipe(**text, height=SIZE, width=SIZE, num_inference_steps=steps, guidance_scale=guidance,
                generator=generators(0, len(prompts), device), output_type=output_type).images


def median_seconds(fns: dict, repeats: int, device) -> dict[str, float]:
    """Median seconds of each callable; one warm-up round, then ``repeats`` rounds that call every callable in
    turn, so that a slow spell of the machine hits all of them alike. Each round starts one callable later
    (no callable always runs right after the same other one, e.g. after the text encoder has flushed the
    caches)."""
    runs = {name: [] for name in fns}
    names = list(fns)
    for round_ in range(repeats + 1):
        for name in names[round_ % len(names):] + names[:round_ % len(names)]:
            fn = fns[name]
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            if round_:
                runs[name].append(time.perf_counter() - start)
    return {name: statistics.median(r) for name, r in runs.items()}


def find_pipeline(given: str | None) -> Path | None:
    if given:
        return Path(given)
    return next((Path(p) for p in FOUND if (Path(p) / "model_index.json").exists()), None)


def train_pipeline(out: Path, plan: dict) -> Path:
    """A small shapes pipeline, trained the way ``examples/shapes_demo.py`` does (its flags, fewer steps)."""
    from fluxflow.cli.train import main as train
    from fluxflow.datasets.shapes import write_shapes_dataset

    if (out / "flow" / "pipeline" / "model_index.json").exists():
        return out / "flow" / "pipeline"
    data = write_shapes_dataset(out / "data", plan["n"], size=SIZE, seed=0, n_test=plan["n_test"],
                                second_object_prob=0.0)
    common = ["--img_size", str(SIZE), "--model_preset", "small", "--batch_size", "16", "--seed", "0",
              "--workers", "0", "--log_interval", "25", "--resume_from_checkpoint", "latest", "--no_samples",
              "--data_path", str(data / "train")]
    stages = [
        ["--train_vae", "--train_spade", "--vae_block_out_channels", "32", "64", "128",
         "--max_train_steps", str(plan["vae_steps"]), "--lr", "1e-3", "--kl_warmup_steps", "200",
         "--checkpoint_save_interval", "200", "--output_path", str(out / "vae")],
        ["--train_diff_full", "--model_checkpoint", str(out / "vae" / "checkpoint.safetensors"),
         "--max_train_steps", str(plan["flow_steps"]), "--lr", "5e-4", "--use_ema", "--ema_decay", "0.995",
         "--max_sequence_length", "24", "--activation", "gelu", "--cache_text_embeddings",
         "--checkpoint_save_interval", "500", "--output_path", str(out / "flow")],
    ]
    for flags in stages:
        if train([*common, *flags]) != 0:
            raise SystemExit("sampling: training the shapes pipeline failed")
    return out / "flow" / "pipeline"


def held_out_prompts(pipeline: Path, n_train: int, n_test: int) -> tuple[list[str], str]:
    """The held-out captions of the pipeline's data set, and where they came from."""
    meta = pipeline.resolve().parent.parent / "data" / "test" / "metadata.jsonl"
    if meta.exists():
        with open(meta, encoding="utf-8") as f:
            return [json.loads(line)["text"] for line in f if line.strip()], str(meta)
    captions = [make_scene(0, i, second_object_prob=0.0).caption for i in range(n_train, n_train + n_test)]
    return captions, f"regenerated: shapes samples {n_train}..{n_train + n_test - 1}, seed 0, one object"


# ------------------------------------------------------------------------------------------------ main

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", default=None, help="a trained shapes FluxFlowPipeline folder")
    parser.add_argument("--quick", action="store_true",
                        help="under a minute: fewer prompts, steps and repeats")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: timings stay stable while another process uses "
                             "the other core; with 2 threads such a process made training steps 10-80x "
                             "slower)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=sorted(DTYPES))
    parser.add_argument("--steps", type=int, nargs="+", default=None, help="step counts of part (b)")
    parser.add_argument("--guidance_scale", type=float, default=4.0)
    parser.add_argument("--n_train", type=int, default=2000, help="to regenerate held-out prompts")
    parser.add_argument("--n_test", type=int, default=64, help="to regenerate held-out prompts")
    parser.add_argument("--train_out", default=None, help="where to train a pipeline when none is found")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    plan = QUICK if args.quick else FULL
    device, dtype = args.device, DTYPES[args.dtype]
    begin = time.perf_counter()
    print(f"# Sampling benchmark, {'quick' if args.quick else 'full'} run, "
          f"{time.strftime('%Y-%m-%d %H:%M')}\n"
          f"machine: {machine()}; device {device}, {args.dtype}\n", flush=True)

    path = find_pipeline(args.pipeline)
    if path is None:
        default = "outputs/sampling_quick" if args.quick else "outputs/sampling"
        path = train_pipeline(Path(args.train_out or default), plan["train"])
    diffusers_logging.disable_progress_bar()
    pipe = FluxFlowPipeline.from_pretrained(path, dtype=dtype).to(device)
    pipe.set_progress_bar_config(disable=True)
    prompts, source = held_out_prompts(path, args.n_train, args.n_test)
    if plan["n_prompts"]:
        prompts = prompts[:plan["n_prompts"]]
    tr, vae = pipe.transformer, pipe.vae
    params = {name: sum(p.numel() for p in m.parameters()) / 1e6 for name, m in
              (("transformer", tr), ("vae", vae), ("text encoder", pipe.text_encoder))}
    print(f"pipeline {path}: transformer {tr.config.activation} "
          f"{tr.config.hidden_size}x{tr.config.num_layers} "
          f"({params['transformer']:.2f} M), VAE {vae.config.activation} "
          f"{'/'.join(map(str, vae.config.block_out_channels))} ({params['vae']:.2f} M), text encoder "
          f"({params['text encoder']:.2f} M); {len(prompts)} held-out prompts ({source})\n", flush=True)

    # (a) pipeline vs bare loop
    n_steps, g = plan["latency_steps"], args.guidance_scale
    rows, agree = [], []
    for batch in plan["batches"]:
        batch_prompts = (prompts * batch)[:batch]
        cond, uncond = text_embeddings(pipe, batch_prompts)
        bare = partial(run_bare, pipe, cond, uncond, n_steps, g, device)
        piped = partial(run_pipeline, pipe, batch_prompts, cond, uncond, n_steps, g, device)
        a, b = bare(), piped()
        agree.append(float((a.float() - b.float()).abs().max()))
        timings = median_seconds({"bare loop (same embeddings)": bare,
                                  "pipeline, same embeddings, output pt": piped,
                                  "pipeline, same embeddings, output pil": partial(piped, "pil"),
                                  "pipeline, prompt strings, output pil": partial(piped, "pil", True)},
                                 plan["repeats"], device)
        base = timings["bare loop (same embeddings)"]
        for name, seconds in timings.items():
            rows.append([batch, name, f"{1000 * seconds / batch:.1f}", f"{seconds / base:.3f}x"])
    print(f"## (a) Latency per image, {n_steps} Euler steps, guidance {g:g} (CFG: batch x 2 through the "
          f"transformer), {SIZE} px; median of {plan['repeats']}\n")
    print(table(["batch", "path", "ms / image", "vs bare loop"], rows))
    print(f"\nlargest |pipeline - bare loop| pixel difference (same seed, [0, 1] scale): {max(agree):.2e}\n",
          flush=True)

    # (b) steps vs judge accuracy
    steps = args.steps or plan["steps"]
    print(f"## (b) Euler steps vs shapes-judge accuracy: {len(prompts)} held-out prompts x "
          f"{plan['seeds']} seeds, "
          f"guidance {g:g}, the same starting noise at every step count\n", flush=True)
    results = {}
    for n in steps:
        start = time.perf_counter()
        results[n] = judge_pipeline(pipe, prompts, n, g, plan["seeds"], device)
        results[n]["ms_per_image"] = 1000 * (time.perf_counter() - start) / results[n]["n"]
    rows = [[n, f"{r['accuracy']:.3f}", f"{r['colour']:.3f}", f"{r['shape']:.3f}", f"{r['position']:.3f}",
             f"{r['background']:.3f}", f"{r['ms_per_image']:.1f}"] for n, r in results.items()]
    print(table(["steps", "all attributes", "colour", "shape", "position", "background", "ms / image"], rows))
    best = max(results, key=lambda n: (results[n]["accuracy"], -n))
    enough = min(n for n in results if results[n]["accuracy"] >= results[best]["accuracy"] - 0.05)
    n_images = results[best]["n"]
    print(f"\nbest all-attribute accuracy {results[best]['accuracy']:.3f} at {best} steps; the fewest steps "
          f"within 0.05 of it: {enough} (n = {n_images} images per step count; one binomial standard error "
          "at this accuracy "
          f"is {(results[best]['accuracy'] * (1 - results[best]['accuracy']) / n_images) ** 0.5:.3f})")
    print(f"\nsampling: done in {time.perf_counter() - begin:.0f} s (load average now "
          f"{os.getloadavg()[0]:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
