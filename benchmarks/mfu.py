"""Model FLOP utilisation (MFU) of a FluxFlowTransformer training step vs this machine's measured matmul peak.

    python benchmarks/mfu.py                  # CPU fp32: presets small and base, batch 2, 256 tokens
    python benchmarks/mfu.py --quick          # ~10 s dev run
    python benchmarks/mfu.py --device cuda --dtype bfloat16 --preset small base --batch_size 32 --tokens 1024

Why: FLOPs per image say what a model costs; MFU says how much of the hardware a training step actually
uses. Two measurements:

1. the machine's dense matmul peak, measured rather than taken from a data sheet: ``torch.matmul`` of square
   ``n x n`` matrices over a sweep of ``n`` (``--peak_sizes``), in ``--dtype`` (fp32 on CPU, bf16 on GPU),
   ``2 n^3`` FLOPs each, run before and after the training steps; the best rate is the peak;
2. one training step of ``FluxFlowTransformer.from_preset(preset)``: forward, MSE loss against a random
   velocity target, backward, ``AdamW.step()``, ``zero_grad`` (best of ``--steps`` after a warm-up). Its
   FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` over forward + backward (matmuls and
   attention; element-wise work, norms and the optimizer are not counted, as usual for MFU).

``MFU = counted FLOPs per step / step seconds / measured peak``. Times are the best of their repeats (the
fastest, least disturbed run on a shared machine; a peak is a best case by definition, and the step is
measured the same way so that the ratio compares like with like). Inputs: latents ``[B, in_channels, h, w]``
with ``(h / patch) * (w / patch) = --tokens`` image tokens, ``--text_len`` text tokens (77, as the trainer),
the pooled text vector and a timestep. With ``--dtype bfloat16``/``float16`` the step runs under
``torch.autocast`` with fp32 weights (as ``--mixed_precision bf16`` training does). ``6 N D`` (parameters x
image tokens x 6) is printed as a cross-check of the counted FLOPs.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from fluxflow.models import FluxFlowTransformer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import DTYPE_ALIASES, add_device_args, sync  # noqa: E402

def matmul_rate(n: int, dtype, device: str, repeats: int = 3) -> tuple[float, float]:
    """(milliseconds, TFLOP/s) of one ``n x n @ n x n`` matmul, best of ``repeats`` after a warm-up."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    inner = max(1, min(50, int(2e12 // (2 * n**3)))) if device.startswith("cuda") else 1
    torch.matmul(a, b)
    sync(device)
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            torch.matmul(a, b)
        sync(device)
        runs.append((time.perf_counter() - start) / inner)
    seconds = min(runs)
    return seconds * 1000, 2 * n**3 / seconds / 1e12


def matmul_peak(sizes, dtype, device: str, repeats: int = 5) -> list[dict]:
    rows = []
    for n in sizes:
        ms, tflops = matmul_rate(n, dtype, device, repeats)
        rows.append({"n": n, "ms": ms, "tflops": tflops})
    return rows


def latent_side(tokens: int, patch: int) -> int:
    side = math.isqrt(tokens)
    if side * side != tokens:
        raise ValueError(f"--tokens must be a square number of patches (a square latent), got {tokens}")
    return side * patch


def make_batch(model: FluxFlowTransformer, batch_size: int, tokens: int, text_len: int, device: str):
    cfg = model.config
    side = latent_side(tokens, cfg.patch_size)
    gen = torch.Generator().manual_seed(0)
    batch = {
        "hidden_states": torch.randn(batch_size, cfg.in_channels, side, side, generator=gen),
        "encoder_hidden_states": torch.randn(batch_size, text_len, cfg.text_embed_dim, generator=gen),
        "pooled_projections": torch.randn(batch_size, cfg.pooled_projection_dim, generator=gen),
        "timestep": torch.rand(batch_size, generator=gen) * 1000,
    }
    target = torch.randn(batch_size, cfg.in_channels, side, side, generator=gen)
    return {k: v.to(device) for k, v in batch.items()}, target.to(device)


def train_step_cost(preset: str, batch_size: int, tokens: int, text_len: int = 77, dtype=torch.float32,
                    device: str = "cpu", steps: int = 3, **overrides) -> dict:
    """Counted forward+backward FLOPs and the best times of fwd+bwd and of the whole step (with AdamW)."""
    torch.manual_seed(0)
    model = FluxFlowTransformer.from_preset(preset, **overrides).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch, target = make_batch(model, batch_size, tokens, text_len, device)
    autocast = torch.autocast(device_type=device.split(":")[0], dtype=dtype, enabled=dtype != torch.float32)

    def forward_backward():
        with autocast:
            out = model(**batch).sample
            loss = F.mse_loss(out.float(), target)
        loss.backward()

    with FlopCounterMode(display=False) as counter:
        forward_backward()
    flops = counter.get_total_flops()
    opt.zero_grad(set_to_none=True)

    fb_times, step_times = [], []
    for i in range(steps + 1):  # the first is a warm-up
        sync(device)
        start = time.perf_counter()
        forward_backward()
        sync(device)
        middle = time.perf_counter()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(device)
        end = time.perf_counter()
        if i:
            fb_times.append(middle - start)
            step_times.append(end - start)
    params = sum(p.numel() for p in model.parameters())
    return {"preset": preset, "params": params, "batch_size": batch_size, "tokens": tokens, "flops": flops,
            "six_nd": 6 * params * batch_size * tokens, "fb_s": min(fb_times), "step_s": min(step_times)}


def format_peak(rows: list[dict], dtype_name: str) -> str:
    lines = [f"| n ({dtype_name} matmul n x n x n) | GFLOP | ms | TFLOP/s |", "|---:|---:|---:|---:|"]
    lines += [f"| {r['n']} | {2 * r['n'] ** 3 / 1e9:.2f} | {r['ms']:.2f} | {r['tflops']:.3f} |" for r in rows]
    return "\n".join(lines)


def format_steps(rows: list[dict], peak_tflops: float) -> str:
    lines = [("| preset | params (M) | batch | tokens | GFLOP/step (fwd+bwd) | 6ND GFLOP | ms fwd+bwd | "
              "ms step (+AdamW) | TFLOP/s (step) | MFU (step) | MFU (fwd+bwd) |"),
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        rate = r["flops"] / r["step_s"] / 1e12
        lines.append(f"| {r['preset']} | {r['params'] / 1e6:.2f} | {r['batch_size']} | {r['tokens']} | "
                     f"{r['flops'] / 1e9:.1f} | {r['six_nd'] / 1e9:.1f} | {r['fb_s'] * 1000:.0f} | "
                     f"{r['step_s'] * 1000:.0f} | {rate:.3f} | {rate / peak_tflops:.1%} | "
                     f"{r['flops'] / r['fb_s'] / 1e12 / peak_tflops:.1%} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_device_args(parser, None, "default: float32 on CPU, bfloat16 on CUDA (fp32/bf16/fp16 accepted too)")
    parser.add_argument("--preset", nargs="+", default=["small", "base"])
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=256, help="image tokens (a square number of patches)")
    parser.add_argument("--text_len", type=int, default=77)
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per preset")
    parser.add_argument("--peak_sizes", type=int, nargs="+", default=None,
                        help="matmul sizes n of the peak sweep (default: 512..4096 CPU, 2048..16384 CUDA)")
    parser.add_argument("--activation", default=None, choices=["bezier", "gelu", "silu"],
                        help="override the preset's MLP activation (default: the preset's, bezier)")
    parser.add_argument("--quick", action="store_true",
                        help="small preset, batch 1, 64 tokens: a ~10 s dev run")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")
    dtype_name = DTYPE_ALIASES.get(args.dtype, args.dtype) or ("bfloat16" if cuda else "float32")
    dtype = getattr(torch, dtype_name)
    if args.quick:
        args.preset, args.batch_size, args.tokens, args.steps = ["small"], 1, 64, 2
    sizes = args.peak_sizes or ([256, 512, 1024] if args.quick else
                                [2048, 4096, 8192, 16384] if cuda else [512, 1024, 2048, 4096])
    device_name = torch.cuda.get_device_name() if cuda else "cpu"
    print(f"{args.device} ({device_name}), {dtype_name}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads\n")

    overrides = {"activation": args.activation} if args.activation else {}
    # the sweep runs before and after the training steps; each size keeps its better run (a peak measured
    # while something else used the machine would inflate MFU)
    before = matmul_peak(sizes, dtype, args.device)
    rows = [train_step_cost(p, args.batch_size, args.tokens, args.text_len, dtype, args.device, args.steps,
                            **overrides) for p in args.preset]
    after = matmul_peak(sizes, dtype, args.device)
    peak_rows = [max(a, b, key=lambda r: r["tflops"]) for a, b in zip(before, after)]
    peak = max(r["tflops"] for r in peak_rows)
    print(format_peak(peak_rows, dtype_name))
    print(f"\nmeasured peak: {peak:.3f} TFLOP/s ({dtype_name} matmul; best of before and after the steps: "
          f"{max(r['tflops'] for r in before):.3f} / {max(r['tflops'] for r in after):.3f})\n")
    act = args.activation or "preset default (bezier)"
    print(f"training step: FluxFlowTransformer, MLP activation {act}, {args.text_len} text tokens, AdamW, "
          f"{'autocast ' + dtype_name if dtype != torch.float32 else 'fp32'}, best of {args.steps}\n")
    print(format_steps(rows, peak))
    if any(r["flops"] / r["step_s"] / 1e12 > peak for r in rows):
        print("\nWARNING: a step ran faster than the measured peak: the peak sweep was disturbed; "
              "rerun on an idle machine.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
