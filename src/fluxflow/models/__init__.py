"""The four FluxFlow models (diffusers ``ModelMixin`` + ``ConfigMixin``) and the Bezier activations."""

from .bezier import BezierActivation
from .discriminator import PatchDiscriminator
from .presets import PRESETS, preset_config
from .spade import SPADE
from .text_encoder import FluxFlowTextEncoder
from .transformer import FluxFlowTransformer
from .vae import FluxFlowVAE

__all__ = [
    "BezierActivation", "SPADE", "FluxFlowVAE", "FluxFlowTransformer",
    "FluxFlowTextEncoder", "PatchDiscriminator", "PRESETS", "preset_config",
]
