"""Tiny instances of the four models with matching example inputs, shared by the model tests."""

from __future__ import annotations

import torch

from fluxflow.models import FluxFlowTextEncoder, FluxFlowTransformer, FluxFlowVAE, PatchDiscriminator


def perturb_(model: torch.nn.Module, scale: float = 0.05) -> torch.nn.Module:
    """Add noise to every parameter: zero-initialized heads (adaLN-Zero, SPADE) would otherwise make
    outputs trivially equal in comparisons."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * scale)
    return model


def _text_mask(batch: int, length: int) -> torch.Tensor:
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[1:, length // 2:] = 0  # later samples are padded
    return mask


def vae_inputs(batch):
    return (torch.randn(batch, 3, 32, 32),), {}


def transformer_inputs(batch):
    args = (torch.randn(batch, 4, 8, 12), torch.randn(batch, 6, 32), torch.randn(batch, 32),
            torch.linspace(10.0, 990.0, batch))
    return args, {"encoder_attention_mask": _text_mask(batch, 6)}


def text_encoder_inputs(batch):
    return (torch.randint(100, 30000, (batch, 7)),), {"attention_mask": _text_mask(batch, 7)}


def discriminator_inputs(batch):
    return (torch.randn(batch, 3, 32, 32),), {"context": torch.randn(batch, 4)}


CASES = {
    "vae": (FluxFlowVAE, vae_inputs),
    "transformer": (FluxFlowTransformer, transformer_inputs),
    "text_encoder": (FluxFlowTextEncoder, text_encoder_inputs),
    "discriminator": (PatchDiscriminator, discriminator_inputs),
}


def build(name: str):
    cls, make_inputs = CASES[name]
    return perturb_(cls.from_preset("tiny")), make_inputs


def outputs(model, args, kwargs) -> list[torch.Tensor]:
    """Every tensor a model returns (``return_dict=False`` gives the tuple)."""
    return [o for o in model(*args, **kwargs, return_dict=False) if isinstance(o, torch.Tensor)]


def select(args, kwargs, i: int):
    """Sample ``i`` of a batch of inputs, keeping the batch dimension."""
    pick = lambda v: v[i:i + 1] if isinstance(v, torch.Tensor) else v  # noqa: E731
    return tuple(pick(a) for a in args), {k: pick(v) for k, v in kwargs.items()}
