"""``fluxflow-app`` under test: a folder of runs (a synthesized run holding a real tiny pipeline, a pipeline
run whose files are being written), models outside the runs, and the app served on a free loopback port."""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path

from pipeline_cases import tiny_pipeline
from report_helpers import make_run

GENERATE_DEFAULTS = {"model": None, "prompt": "a red circle", "negative_prompt": "", "steps": 2,
                     "guidance": 5.0, "height": 32, "width": 32, "seed": 0, "random_seed": False,
                     "num_images": 1, "lora": None, "lora_scale": 1.0}  # /generate's inputs, in order
LIMITS = ["--max_size", "64", "--max_images", "2", "--max_steps", "5"]
TORN_LINE = '{"step": 40, "loss/vae": 0.0'  # a line a running training is writing


def make_runs(root: Path) -> dict[str, Path]:
    """``root/runs/shapes`` (metrics, grids, a saved tiny pipeline and a LoRA of it), ``root/runs/staged`` (a pipeline run's
    stage with a torn metrics line, a foreign line and a grid being written), and ``root/model`` (a copy of
    the pipeline outside the runs, given as --model) and ``root/outside`` (another copy, never given)."""
    runs = root / "runs"
    shapes = make_run(runs / "shapes", card=False)
    tiny_pipeline().save_pretrained(shapes / "pipeline")
    stage = runs / "staged" / "stages" / "1-vae"
    (stage / "logs").mkdir(parents=True)
    rows = [{"step": s, "loss/vae": 1.0 / s} for s in (1, 2, 3)] + [{"step": 3, "val/vae/psnr": 21.5}]
    lines = [json.dumps(r) for r in rows]
    lines.insert(1, "not json at all")  # a foreign line in the middle: skipped, not an error
    (stage / "logs" / "metrics.jsonl").write_text("\n".join(lines) + "\n" + TORN_LINE)
    an_hour_ago = time.time() - 3600  # the stage logged last an hour ago: the Runs tab opens on the other run
    os.utime(stage / "logs" / "metrics.jsonl", (an_hour_ago, an_hour_ago))
    (stage / "logs" / "train_config.json").write_text(json.dumps({"train_vae": True}))
    (stage / "samples").mkdir()
    shutil.copy(shapes / "samples" / "vae_grid_0010.webp", stage / "samples" / "vae_grid_0002.webp")
    full = (shapes / "samples" / "vae_grid_0020.webp").read_bytes()
    (stage / "samples" / "vae_grid_0003.webp").write_bytes(full[: len(full) // 2])  # being written
    _lora(shapes / "lora" / "pytorch_lora_weights.safetensors")
    shutil.copytree(shapes / "pipeline", root / "model")
    shutil.copytree(shapes / "pipeline", root / "outside")
    return {"runs": runs, "shapes": shapes, "stage": stage, "model": root / "model",
            "outside": root / "outside"}


def _lora(path: Path) -> None:
    """A LoRA of the tiny pipeline's flow processor with non-zero B matrices (it changes the images), written as
    ``fluxflow-train --lora_rank`` writes one; skipped without peft."""
    import importlib.util

    if importlib.util.find_spec("peft") is None:
        return
    import torch

    from fluxflow.training.lora import LORA_TARGETS, add_lora, save_lora

    transformer = add_lora(tiny_pipeline().transformer, 4, 4.0, list(LORA_TARGETS))
    with torch.no_grad():
        for name, param in transformer.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=torch.Generator().manual_seed(1)) * 0.3)
    save_lora(path, transformer)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(*flags: str):
    """Build the app from ``fluxflow-app`` flags (its parser and defaults) and serve it without blocking."""
    from fluxflow.app.ui import launch
    from fluxflow.cli.app import build, build_parser

    args = build_parser().parse_args([*flags, "--port", str(free_port())])
    return launch(build(args), args.host, args.port, block=False)


def tree_state(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its size and modification time (what "nothing written" compares)."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}
