"""A synthesized training run folder for the report tests: metrics with validation rows and a null, a config,
grid images per kind (WebP, as training writes them) and a model card; text in them holds ``<script>``."""

from __future__ import annotations

import json
import math
from pathlib import Path

from PIL import Image, ImageDraw

INJECTION = '<script>document.title="pwned"</script>'
GRID_STEPS = {"vae": [10, 20], "flow": [10, 20, 30]}
LOSSES = ["loss/flow", "loss/kl", "loss/vae"]
LRS = ["lr/flow", "lr/vae"]
VALIDATION = {"val/flow": ["val/flow/loss", "val/flow/loss_sigma_0.00-0.25"],
              "val/judge": ["val/judge/accuracy"], "val/vae": ["val/vae/psnr", "val/vae/ssim"],
              "val": ["val/seconds"]}
SERIES = LOSSES + LRS + [name for names in VALIDATION.values() for name in names]
NULL_AT = ("loss/vae", 15)  # a non-finite value, logged as null


def metric_rows(steps: int = 30, val_every: int = 10) -> list[dict]:
    rows = []
    for step in range(1, steps + 1):
        warm = min(1.0, step / 5)
        row = {"step": step, "loss/vae": 0.5 / step ** 0.5, "loss/kl": 8.0 + 0.05 * step,
               "loss/flow": 1.2 * math.exp(-step / 15) + 0.1 * (1 + math.sin(step)) / 2,
               "lr/vae": 1e-4 * warm, "lr/flow": 5e-4 * warm * (1 + math.cos(math.pi * step / steps)) / 2,
               "kl_weight": 1e-6 * step, "samples_per_s": 33.1, "epoch": 0}
        if step == NULL_AT[1]:
            row[NULL_AT[0]] = None
        rows.append(row)
        if step % val_every == 0:
            rows.append({"step": step, "val/vae/psnr": 18 + step / 5, "val/vae/ssim": 0.5 + step / 100,
                         "val/flow/loss": 1.0 - step / 60, "val/flow/loss_sigma_0.00-0.25": 0.4 - step / 200,
                         "val/judge/accuracy": step / 40, "val/seconds": 1.2})
    return rows


def config() -> dict:
    return {"train_vae": True, "gan_training": False, "train_diff_full": True, "lr": 5e-4, "batch_size": 16,
            "output_path": "out/run", "sample_captions": ["a red circle", INJECTION], "hub_token": "***",
            "optimizer_scheduler_config": {"optimizers": {"vae": {"type": "AdamW", "lr": 1e-4}}}}


def grid_image(kind: str, step: int, cells: int = 4, side: int = 48) -> Image.Image:
    """A stand-in grid: a row of cells with a shape each, coloured by ``step`` (each step looks different)."""
    image = Image.new("RGB", (cells * side, side + 14), "white")
    draw = ImageDraw.Draw(image)
    for i in range(cells):
        x, hue = i * side, (step * 37 + i * 60) % 256
        draw.rectangle([x + 2, 2, x + side - 3, side - 3], fill=(200, 200, 210))
        shape = draw.ellipse if (kind == "flow") ^ (i % 2 == 1) else draw.rectangle
        shape([x + 10, 10, x + side - 11, side - 11], fill=(hue, 255 - hue, (hue * 3) % 256))
        draw.text((x + 3, side + 1), f"{kind} {step}", fill="black")
    return image


def make_run(folder: Path, *, metrics: bool = True, train_config: bool = True,
             grids: dict[str, list[int]] | None = GRID_STEPS, card: bool = True) -> Path:
    """Write a run's output folder into ``folder`` (each part optional) and return it."""
    logs, samples, pipeline = folder / "logs", folder / "samples", folder / "pipeline"
    logs.mkdir(parents=True, exist_ok=True)
    samples.mkdir(exist_ok=True)
    (logs / "graphs").mkdir(exist_ok=True)
    grid_image("vae", 1).save(logs / "graphs" / "losses.png")  # the PNG graphs: not part of the page
    if metrics:
        (logs / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in metric_rows()))
    if train_config:
        (logs / "train_config.json").write_text(json.dumps(config(), indent=2))
    for kind, steps in (grids or {}).items():
        for step in steps:
            grid_image(kind, step).save(samples / f"{kind}_grid_{step:04d}.webp", lossless=True)
    grid_image("flow", 1).save(samples / "samples_epoch_0010_caption_0-0032.webp")  # a sample, not a grid
    if card:
        pipeline.mkdir(exist_ok=True)
        grid_image("vae", 99).save(pipeline / "preview.png")
        (pipeline / "README.md").write_text(
            "---\nlibrary_name: diffusers\ntags: [fluxflow, text-to-image]\n---\n# my-run\n\n"
            f"Trained on shapes. A caption: {INJECTION}\nsecond line of the paragraph.\n\n"
            "```python\nimage = pipe(\"<b>a red circle</b>\").images[0]\n```\n\n"
            "![preview](preview.png) ![remote](https://example.com/x.png)\n"
            "![outside](../logs/graphs/losses.png)\n\n"
            "- see [the docs](https://example.com/docs)\n- `inline <code>`\n")
    return folder
