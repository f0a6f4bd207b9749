"""The whole system on the embedded shapes data set, offline: data -> VAE -> flow -> pipeline -> judged images.

    python examples/shapes_demo.py [--quick] [--out outputs/demo] [--vae_steps N] [--flow_steps N] [--seed N]

1. writes the captioned shapes set (training images and held-out test images);
2. runs the pipeline file `examples/pipelines/shapes_demo.yaml` (its steps set by this script's plan, the file
   as run saved as `<out>/pipeline.yaml`): stage 1 trains a 2x VAE (16x16x4 latents; reconstruction + KL,
   SPADE; no GAN: at this size and length the adversarial term slowed reconstruction down), stage 2 the flow
   processor (4x4 patches: 16 tokens, batch 32) on its cached latents with the pretrained offline
   all-MiniLM-L6-v2 text encoder, CFG caption dropout and EMA; both validate on the held-out split at every
   checkpoint; `<out>/pipeline/` is the exported pipeline;
3. generates one image per held-out caption with `FluxFlowPipeline`, writes a grid and prints the shapes
   judge's accuracy (colour, shape, position, background), also saved as `result.json`;
4. writes each stage's report page (`stages/1-vae/report.html`, `stages/2-flow/report.html`): its curves,
   validation, sample grids across checkpoints, config and model card.

Full: about 15 minutes on 2 CPU cores (measured 2026-12-02: whole demo 14 min 26 s, training 856 s, VAE 1,800
steps 360 s, flow 2,200 steps on the latent cache 495 s, validation included; judge 0.81 on all four
attributes, VAE ceiling 0.94; docs/BENCHMARKS.md); `--quick`: about a minute (a smoke test, not a useful model).
Run again, it continues where it stopped (`--resume_from_checkpoint latest`): a stage stopped by Ctrl+C or
SIGTERM is finished first, and the flow stage never starts on an unfinished VAE.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import yaml

from fluxflow import FluxFlowPipeline
from fluxflow.cli.train import main as train
from fluxflow.datasets.shapes import judge_accuracy, judge_reconstructions, read_split, write_shapes_dataset
from fluxflow.report import write_report

FULL = {"n": 2000, "n_test": 64, "vae_steps": 1800, "flow_steps": 2200, "sample_steps": 20}
QUICK = {"n": 128, "n_test": 16, "vae_steps": 30, "flow_steps": 40, "sample_steps": 8}
FULL_TIME = "about 15 minutes on 2 CPU cores"  # measured: 14 min 26 s (see the docstring)
QUICK_TIME = "about a minute"
SIZE = 32  # pixels; the 2x VAE keeps 16x16x4 latents: the corners of 6-pixel stars survive
PIPELINE = Path(__file__).resolve().parent / "pipelines" / "shapes_demo.yaml"


def pipeline_file(out: Path, plan: dict) -> Path:
    """``examples/pipelines/shapes_demo.yaml`` with the plan's steps, written to ``out/pipeline.yaml``."""
    spec = yaml.safe_load(PIPELINE.read_text(encoding="utf-8"))
    vae, flow = spec["stages"]
    vae["transition"], flow["transition"] = {"steps": plan["vae_steps"]}, {"steps": plan["flow_steps"]}
    flow["sample_steps"] = plan["sample_steps"]
    out.mkdir(parents=True, exist_ok=True)
    path = out / "pipeline.yaml"
    path.write_text(f"# {PIPELINE.name} as this demo ran it\n" + yaml.safe_dump(spec, sort_keys=False),
                    encoding="utf-8")
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # the help states the plan's own numbers, so that it cannot drift from what runs
    parser.add_argument("--quick", action="store_true",
                        help=f"a smoke run of {QUICK_TIME}, not a useful model: {QUICK['n']:,} images, "
                             f"VAE {QUICK['vae_steps']:,} steps, flow {QUICK['flow_steps']:,} steps (full run: "
                             f"{FULL['n']:,} images, VAE {FULL['vae_steps']:,} steps, "
                             f"flow {FULL['flow_steps']:,} steps, {FULL_TIME})")
    parser.add_argument("--out", default="outputs/demo", help="output folder (default: %(default)s)")
    parser.add_argument("--vae_steps", type=int, default=None, metavar="N",
                        help=f"VAE training steps (default: {FULL['vae_steps']:,}; with --quick: "
                             f"{QUICK['vae_steps']:,})")
    parser.add_argument("--flow_steps", type=int, default=None, metavar="N",
                        help=f"flow training steps (default: {FULL['flow_steps']:,}; with --quick: "
                             f"{QUICK['flow_steps']:,})")
    parser.add_argument("--seed", type=int, default=None, metavar="N",
                        help="training seed of both stages (default: the pipeline file's, 0); the data and the "
                             "held-out prompts stay the same")
    args = parser.parse_args(argv)
    plan, out = dict(QUICK if args.quick else FULL), Path(args.out)
    plan.update({k: v for k, v in (("vae_steps", args.vae_steps), ("flow_steps", args.flow_steps)) if v})
    data = write_shapes_dataset(out / "data", plan["n"], size=SIZE, seed=0, n_test=plan["n_test"],
                                second_object_prob=0.0)
    start = time.perf_counter()
    flags = ["--config", str(pipeline_file(out, plan)), "--output_path", str(out), "--resume_from_checkpoint",
             "latest", "--data_path", str(data / "train"), "--validation_data_path", str(data / "test"),
             "--cache_dir", str(out / "cache"), "--sample_captions", *read_split(data / "test")[1][:2]]
    flags += ["--seed", str(args.seed)] if args.seed is not None else []
    if train(flags) != 0:
        raise SystemExit("shapes demo: training failed")
    if not (out / "stages" / "2-flow" / "logs" / "run_end.json").is_file():  # stopped by a signal
        print("shapes demo: stopped before the end of training; run it again to continue")
        return 1
    print(f"shapes demo: training done in {time.perf_counter() - start:.0f} s")

    pipe = FluxFlowPipeline.from_pretrained(out / "pipeline")
    pipe.set_progress_bar_config(disable=True)
    captions = read_split(data / "test")[1]
    images = []
    for start in range(0, len(captions), 16):
        batch = captions[start:start + 16]
        images += pipe(batch, height=SIZE, width=SIZE, num_inference_steps=plan["sample_steps"], guidance_scale=4.0,
                       generator=[torch.Generator().manual_seed(i) for i in range(start, start + len(batch))]).images
    from diffusers.utils import make_image_grid

    cols = 8
    rows = -(-len(images) // cols)
    grid = make_image_grid([im.resize((64, 64)) for im in images] + [images[0].resize((64, 64))] * (rows * cols - len(images)),
                           rows, cols)
    grid.save(out / "grid.png")
    result = judge_accuracy(list(zip(images, captions)))
    # the ceiling: the same judge on the VAE's reconstructions of the held-out images (what any flow can reach)
    result["vae_ceiling"] = judge_reconstructions(pipe.vae, *read_split(data / "test"))
    (out / "result.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    for name, scores in (("judge on held-out prompts", result), ("VAE ceiling (its reconstructions of the "
                                                                  "held-out images)", result["vae_ceiling"])):
        print(f"shapes demo: {name}: " + ", ".join(f"{k} {v:.2f}" for k, v in scores.items()
                                                  if k not in ("n", "vae_ceiling")) + f" (n={scores['n']})")
    reports = [write_report(out / "stages" / stage) for stage in ("1-vae", "2-flow")]
    print(f"shapes demo: grid {out / 'grid.png'}, pipeline {out / 'pipeline'}, report pages "
          f"{reports[0]} and {reports[1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
