"""LoRA loading for :class:`~fluxflow.pipelines.FluxFlowPipeline`: diffusers' transformer-only loader.

The flow processor is the pipeline's one LoRA-loadable model, as in diffusers' Sana and AuraFlow pipelines, so
their loader mixin is reused as it is: ``load_lora_weights`` / ``save_lora_weights`` (the diffusers file format,
``pytorch_lora_weights.safetensors`` with ``transformer.``-prefixed peft keys), ``fuse_lora`` / ``unfuse_lora``,
``set_adapters``, ``delete_adapters``. Needs ``peft`` (``pip install 'fluxflow[lora]'``).
"""

from __future__ import annotations

from diffusers.loaders.lora_pipeline import SanaLoraLoaderMixin

LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"  # diffusers' default file name
LORA_EXTRA = "pip install 'fluxflow[lora]'"


class FluxFlowLoraLoaderMixin(SanaLoraLoaderMixin):
    """LoRA adapters of the flow processor (``transformer``), loaded, mixed, fused and saved the diffusers way."""

    _lora_loadable_modules = ["transformer"]

    def unfuse_lora(self, components: list[str] = ["transformer"], **kwargs):  # noqa: B006 (diffusers' signature)
        """Undo :meth:`fuse_lora`: the flow processor's base weights as they were."""
        super().unfuse_lora(components=components, **kwargs)


def require_peft() -> None:
    """Name the extra when peft is missing (diffusers' own message names only the package)."""
    from diffusers.utils import is_peft_available

    if not is_peft_available():
        raise ImportError(f"LoRA needs the peft package: {LORA_EXTRA}")
