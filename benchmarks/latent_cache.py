"""Stage 2 with and without ``--cache_latents``: optimizer-step time, the cache's build time, size and reading
speed, and peak memory, side by side.

    python benchmarks/latent_cache.py [--presets demo base256] [--rounds 2] [--steps 3]

Each round runs one fresh process per mode, alternating (on the fly, cached, on the fly, ...), so the two see
the same machine state; the medians and their ratio are printed. A process builds the real models of its
preset, then times full optimizer steps of the trainer's flow objective (``FlowObjective.micro_step`` +
AdamW step) on real batches: encoded on the fly (VAE + text encoder each step) or read from the cache built
once beforehand (its build time and size per image are measured there). Loader speed: samples/s of one
DataLoader worker decoding the images vs reading the cache.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tokenizer's offline fallback, without network retries
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import machine, table, write_results  # noqa: E402

# demo: the shapes demo's flow stage (small preset, 3-stage VAE, 32 px, batch 16); base256: the base preset
PRESETS = {
    "demo": {"preset": "small", "size": 32, "batch": 16, "vae": [32, 64, 128], "max_length": 24, "images": 64},
    "base256": {"preset": "base", "size": 256, "batch": 2, "vae": None, "max_length": 77, "images": 8},
}


def build(spec: dict, folder: Path):
    """Data set, models and tokenizer of a preset (random weights: the cost is the same)."""
    from fluxflow.datasets.shapes import write_shapes_dataset
    from fluxflow.models import FluxFlowTransformer, FluxFlowVAE
    from fluxflow.training.components import build_text_encoder
    from fluxflow.training.config import TrainConfig
    from fluxflow.training.data import DataConfig, build_dataset
    from fluxflow.training.tokenizer import load_tokenizer

    data = write_shapes_dataset(folder / "data", spec["images"], size=spec["size"], seed=0) / "train" \
        if not (folder / "data").exists() else folder / "data" / "train"
    dataset = build_dataset(DataConfig(data_path=str(data), img_size=spec["size"], seed=0))
    vae = FluxFlowVAE.from_preset(spec["preset"], **({"block_out_channels": tuple(spec["vae"])} if spec["vae"]
                                                     else {})).eval().requires_grad_(False)
    transformer = FluxFlowTransformer.from_preset(spec["preset"], in_channels=vae.config.latent_channels,
                                                  activation="gelu")
    cfg = TrainConfig(model_preset=spec["preset"], max_sequence_length=spec["max_length"], train_diff_full=True)
    text_encoder = build_text_encoder(cfg).eval().requires_grad_(False)
    return cfg, dataset, vae, transformer, text_encoder, load_tokenizer("distilbert-base-uncased")


def child(name: str, mode: str, steps: int, folder: Path) -> dict:
    """One process, one mode: warm-up step, then ``steps`` timed optimizer steps; peak memory."""
    from accelerate import Accelerator

    from fluxflow.pipelines import tokenize_prompts
    from fluxflow.training.components import Components
    from fluxflow.training.data import CaptionCollator, make_dataloader
    from fluxflow.training.flow_objective import FlowObjective
    from fluxflow.training.latent_cache import CachedCollator, build_or_open

    spec = PRESETS[name]
    cfg, dataset, vae, transformer, text_encoder, tokenizer = build(spec, folder)
    accelerator = Accelerator()
    null = tokenize_prompts(tokenizer, [""], spec["max_length"])
    built = None
    if mode == "cached":
        start = time.perf_counter()
        dataset = build_or_open(accelerator, folder / "cache", dataset, vae, text_encoder, tokenizer,
                                spec["max_length"])
        built = time.perf_counter() - start
        objective = FlowObjective(cfg, null, null_text=dataset.null_text())
        collate = CachedCollator(tokenizer, spec["max_length"])
    else:
        objective, collate = FlowObjective(cfg, null), CaptionCollator(tokenizer, spec["max_length"])
    loader = make_dataloader(dataset, spec["batch"], 0, collate, seed=0, drop_last=True)
    models = Components(vae=vae, transformer=transformer, text_encoder=text_encoder, train_vae=False)
    optimizer = torch.optim.AdamW(transformer.parameters(), lr=1e-4)
    generator, times, batches = torch.Generator().manual_seed(0), [], iter(loader)
    for step in range(steps + 1):
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(loader)
            batch = next(batches)
        start = time.perf_counter()
        objective.micro_step(accelerator, models, batch, generator)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step:  # the first is a warm-up
            times.append(time.perf_counter() - start)
    return {"step_s": statistics.median(times), "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "build_s_per_image": built / len(dataset) if built else None}


def loader_speed(name: str, folder: Path, seconds: float = 5.0) -> dict:
    """Samples/s of one DataLoader worker: decoding and transforming the images vs reading the cache."""
    from accelerate import Accelerator

    from fluxflow.training.data import CaptionCollator, make_dataloader
    from fluxflow.training.latent_cache import CachedCollator, build_or_open

    spec = PRESETS[name]
    _, dataset, vae, _, text_encoder, tokenizer = build(spec, folder)
    cached = build_or_open(Accelerator(), folder / "cache", dataset, vae, text_encoder, tokenizer, spec["max_length"])
    out = {}
    for label, ds, collate in (("images", dataset, CaptionCollator(tokenizer, spec["max_length"])),
                               ("cache", cached, CachedCollator(tokenizer, spec["max_length"]))):
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            for batch in make_dataloader(ds, 1, 1, collate, seed=0):
                n += 1
        out[label] = n / (time.perf_counter() - start)
    size = sum(p.stat().st_size for p in (folder / "cache").rglob("*") if p.is_file())
    out["bytes_per_image"] = size / len(dataset)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="*", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--rounds", type=int, default=2, help="alternating process pairs per preset (default: 2)")
    parser.add_argument("--steps", type=int, default=3, help="timed optimizer steps per process (default: 3)")
    parser.add_argument("--out", default="outputs/latent_cache", help="results folder (default: outputs/latent_cache)")
    parser.add_argument("--child", nargs=3, metavar=("PRESET", "MODE", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], args.steps, Path(args.child[2]))))
        return 0
    print(machine())
    began, out = time.perf_counter(), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, results = [], {}
    for name in args.presets:
        with tempfile.TemporaryDirectory() as tmp:
            runs = {"fly": [], "cached": []}
            for _ in range(args.rounds):
                for mode in runs:
                    printed = subprocess.run([sys.executable, __file__, "--steps", str(args.steps), "--child", name,
                                              mode, tmp], check=True, capture_output=True, text=True).stdout
                    runs[mode].append(json.loads(printed.strip().splitlines()[-1]))
            speed = loader_speed(name, Path(tmp))
        fly, cached = (statistics.median(r["step_s"] for r in runs[m]) for m in ("fly", "cached"))
        build_s = next(r["build_s_per_image"] for r in runs["cached"] if r["build_s_per_image"])
        results[name] = {"runs": runs, "loader": speed, "step_s": {"fly": fly, "cached": cached}}
        rows.append([name, f"{fly:.3f}", f"{cached:.3f}", f"{fly / cached:.2f}x",
                     f"{max(r['peak_mib'] for r in runs['fly']):.0f} / {max(r['peak_mib'] for r in runs['cached']):.0f}",
                     f"{build_s * 1000:.1f}", f"{speed['bytes_per_image'] / 1024:.1f}",
                     f"{speed['images']:.0f} / {speed['cache']:.0f}"])
    print(table(["preset", "step s, on the fly", "step s, cached", "speed-up", "peak MiB fly / cached",
                 "build ms/image", "KiB/image", "loader samples/s/worker: images / cache"], rows))
    write_results(out, "latent_cache", results, began)
    return 0


if __name__ == "__main__":
    sys.exit(main())
