"""fluxflow: text-to-image with a Bezier-activated VAE and a rectified-flow transformer.

Public names are imported lazily so that ``import fluxflow`` stays fast and light.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0.dev0"

_EXPORTS = {
    "BezierActivation": "fluxflow.models.bezier",
    "SPADE": "fluxflow.models.spade",
    "FluxFlowVAE": "fluxflow.models.vae",
    "FluxFlowTransformer": "fluxflow.models.transformer",
    "FluxFlowTextEncoder": "fluxflow.models.text_encoder",
    "PatchDiscriminator": "fluxflow.models.discriminator",
    "PRESETS": "fluxflow.models.presets",
    "FluxFlowPipeline": "fluxflow.pipelines.pipeline_fluxflow",
    "FluxFlowPipelineOutput": "fluxflow.pipelines.pipeline_fluxflow",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'fluxflow' has no attribute {name!r}")
