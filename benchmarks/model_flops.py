"""Parameters and FLOPs per 256-px image of each FluxFlow model, side by side with diffusers' AutoencoderKL.

    python benchmarks/model_flops.py [--preset base] [--img_size 256] [--time]

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` (matmuls, convolutions, attention;
element-wise work such as norms and activations is not counted) for one forward pass of one image
(or one 77-token prompt). ``--time`` adds the measured CPU latency of that forward pass (median of 3).
The reference VAE is diffusers' ``AutoencoderKL`` in the Stable Diffusion 3 configuration (channels
128/256/512/512, 2 layers per block, 16 latent channels), built with random weights: no download.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from diffusers import AutoencoderKL
from torch.utils.flop_counter import FlopCounterMode

from fluxflow.models import FluxFlowTextEncoder, FluxFlowTransformer, FluxFlowVAE, PatchDiscriminator


def gflops(fn) -> float:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def millis(fn, repeats: int = 3) -> float:
    with torch.no_grad():
        fn()  # warm-up
        runs = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            runs.append((time.perf_counter() - start) * 1000)
    return statistics.median(runs)


def params(module: torch.nn.Module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6


def rows_for(preset: str, size: int):
    vae = FluxFlowVAE.from_preset(preset).eval()
    transformer = FluxFlowTransformer.from_preset(preset).eval()
    text_encoder = FluxFlowTextEncoder.from_preset(preset).eval()
    disc = PatchDiscriminator.from_preset(preset).eval()
    image = torch.randn(1, 3, size, size)
    f = vae.spatial_compression_ratio
    z = torch.randn(1, vae.config.latent_channels, size // f, size // f)
    ids = torch.randint(1000, 2000, (1, text_encoder.config.max_length))
    text = torch.randn(1, text_encoder.config.max_length, transformer.config.text_embed_dim)
    pooled = torch.randn(1, transformer.config.pooled_projection_dim)
    ctx = torch.randn(1, disc.config.context_dim) if disc.config.context_dim else None
    return [
        ("FluxFlowVAE compressor (encode)", vae.compressor, lambda: vae.encode(image)),
        ("FluxFlowVAE expander (decode)", vae.expander, lambda: vae.decode(z)),
        ("FluxFlowTransformer (1 step)", transformer, lambda: transformer(z, text, pooled, torch.tensor([500.0]))),
        ("FluxFlowTextEncoder (77 tokens)", text_encoder, lambda: text_encoder(ids)),
        ("PatchDiscriminator", disc, lambda: disc(image, context=ctx)),
    ]


def reference_rows(size: int):
    ref = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=16,
    ).eval()
    image, z = torch.randn(1, 3, size, size), torch.randn(1, 16, size // 8, size // 8)
    return [
        ("AutoencoderKL SD3 config (encode)", ref.encoder, lambda: ref.encode(image)),
        ("AutoencoderKL SD3 config (decode)", ref.decoder, lambda: ref.decode(z)),
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="base")
    parser.add_argument("--img_size", type=int, default=256)
    parser.add_argument("--time", action="store_true", help="also measure CPU latency per forward")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    ours, ref = rows_for(args.preset, args.img_size), reference_rows(args.img_size)
    results = {name: (params(m), gflops(fn), millis(fn) if args.time else None) for name, m, fn in ours + ref}

    print(f"preset {args.preset!r}, {args.img_size}x{args.img_size} image, batch 1, forward pass, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    header = f"| {'model':<36} | {'params (M)':>10} | {'GFLOP':>8} |" + (" CPU ms |" if args.time else "")
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for name, (p, fl, ms) in results.items():
        print(f"| {name:<36} | {p:>10.2f} | {fl:>8.1f} |" + (f" {ms:>6.0f} |" if args.time else ""))
    enc, dec = results["FluxFlowVAE compressor (encode)"], results["FluxFlowVAE expander (decode)"]
    ref_enc, ref_dec = results["AutoencoderKL SD3 config (encode)"], results["AutoencoderKL SD3 config (decode)"]
    print(f"\nFLOP ratio fluxflow / AutoencoderKL: encode {enc[1] / ref_enc[1]:.2f}x, decode {dec[1] / ref_dec[1]:.2f}x")
    if args.time:
        print(f"CPU time ratio fluxflow / AutoencoderKL: encode {enc[2] / ref_enc[2]:.2f}x, "
              f"decode {dec[2] / ref_dec[2]:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
