"""`fluxflow-generate`: prompts in, images out.

    fluxflow-generate "a red circle" "a blue square" --model out/pipeline --output_dir images
    fluxflow-generate --prompts_file prompts.txt --model out/checkpoint.safetensors --grid

Each image gets its own seed, ``--seed + k`` for the k-th image overall, so results do not depend on
``--batch_size``. File names come from the prompt (``0003-a-red-circle-s42.png``) and never collide.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

DTYPES = ("auto", "fp32", "fp16", "bf16")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fluxflow-generate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("prompts", nargs="*", help="prompts (or use --prompts_file)")
    p.add_argument("--prompts_file", help="text file with one prompt per line (blank lines and # comments skipped)")
    p.add_argument("--model", required=True, help="pipeline folder, checkpoint.safetensors, or Hub repo id")
    p.add_argument("--output_dir", default="generated")
    p.add_argument("--height", type=int, default=None, help="default: the model's sample size")
    p.add_argument("--width", type=int, default=None, help="default: the model's sample size")
    p.add_argument("--steps", type=int, default=28, help="number of sampling steps")
    p.add_argument("--guidance_scale", type=float, default=5.0, help="classifier-free guidance; 1 disables it")
    p.add_argument("--negative_prompt", default=None)
    p.add_argument("--num_images_per_prompt", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch_size", type=int, default=4, help="images per forward pass")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--dtype", default="auto", choices=DTYPES, help="auto: bf16 on CUDA, fp32 elsewhere")
    p.add_argument("--format", default="png", choices=("png", "webp", "jpg"))
    p.add_argument("--grid", action="store_true", help="also write grid.<format> with all images")
    return p


def read_prompts(args) -> list[str]:
    prompts = list(args.prompts)
    if args.prompts_file:
        path = Path(args.prompts_file)
        if not path.is_file():
            raise SystemExit(f"fluxflow-generate: --prompts_file {path} does not exist")
        lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
        prompts += [line for line in lines if line and not line.startswith("#")]
    if not prompts:
        raise SystemExit("fluxflow-generate: no prompts; pass them as arguments or with --prompts_file")
    return prompts


def slug(prompt: str, limit: int = 60) -> str:
    text = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")
    return text[:limit].rstrip("-") or "prompt"


def pick_device(name: str) -> str:
    import torch

    if name != "auto":
        return name
    if torch.cuda.is_available():
        return "cuda"
    return "mps" if torch.backends.mps.is_available() else "cpu"


def pick_dtype(name: str, device: str):
    import torch

    if name == "auto":
        name = "bf16" if device.startswith("cuda") else "fp32"
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]


def unique_name(out_dir: Path, stem: str, suffix: str, used: set[str]) -> str:
    """``stem``, or ``stem-2``, ``stem-3``... : never a name used in this run or present on disk."""
    name, n = stem, 1
    while name in used or (out_dir / f"{name}.{suffix}").exists():
        n += 1
        name = f"{stem}-{n}"
    used.add(name)
    return name


def save_grid(images, path: Path) -> None:
    from diffusers.utils import make_image_grid

    cols = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    blank = images[0].copy()
    blank.paste((0, 0, 0), (0, 0, *blank.size))
    make_image_grid(images + [blank] * (rows * cols - len(images)), rows, cols).save(path)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    prompts = read_prompts(args)
    if args.num_images_per_prompt < 1 or args.batch_size < 1 or args.steps < 1:
        raise SystemExit("fluxflow-generate: --num_images_per_prompt, --batch_size and --steps must be >= 1")

    import torch
    from tqdm.auto import tqdm

    from ..pipelines import FluxFlowPipeline

    device = pick_device(args.device)
    pipe = FluxFlowPipeline.from_pretrained(args.model, dtype=pick_dtype(args.dtype, device)).to(device)
    pipe.set_progress_bar_config(disable=True)
    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    jobs = [(p, args.seed + k) for k, p in enumerate(p for p in prompts for _ in range(args.num_images_per_prompt))]
    images, used = [], set()
    for start in tqdm(range(0, len(jobs), args.batch_size), desc="batches", unit="batch"):
        batch = jobs[start:start + args.batch_size]
        result = pipe([p for p, _ in batch], negative_prompt=args.negative_prompt, height=args.height,
                      width=args.width, num_inference_steps=args.steps, guidance_scale=args.guidance_scale,
                      generator=[torch.Generator("cpu").manual_seed(s) for _, s in batch]).images
        for k, ((prompt, seed), image) in enumerate(zip(batch, result)):
            name = unique_name(out_dir, f"{start + k:04d}-{slug(prompt)}-s{seed}", args.format, used)
            image.save(out_dir / f"{name}.{args.format}")
            images.append(image)
    if args.grid:
        save_grid(images, out_dir / f"grid.{args.format}")
    print(f"wrote {len(images)} image(s) to {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
