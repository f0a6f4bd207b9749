"""Speed switches of a run: ``--allow_tf32`` (TF32 matmuls and convolutions on CUDA) and ``--torch_compile``
(regional compilation of the models' repeated blocks, as diffusers' ``ModelMixin.compile_repeated_blocks``).

Regional compilation compiles each block whose class is named in the model's ``_repeated_blocks``
(``FluxFlowTransformerBlock``; the VAE's ``ResnetBlock``) with ``nn.Module.compile``: the model and its
``state_dict`` stay as they were (no ``_orig_mod.`` prefix), DDP wraps the model around the compiled blocks,
and diffusers' gradient checkpointing calls the compiled block like any other. Blocks of one class share
their compiled code (dynamo caches per ``forward`` code object), so a transformer compiles one graph however
deep it is. Compilation is lazy: it happens on the first call of each block (the first training step).
"""

from __future__ import annotations

import logging

import torch
from torch import nn

logger = logging.getLogger("fluxflow.train")

# torch.compile's keyword arguments for every block. dynamic=False: static shapes, one graph per distinct input
# shape of a block class. Training shapes are fixed, so this is what a run wants; automatic dynamic shapes (the
# default after a second shape) also fail on the VAE's ResnetBlock with torch 2.13's inductor on CPU ("cannot
# determine truth value of Relational"). fullgraph=False: a graph break slows a block down instead of stopping
# a run (tests/unit/test_torch_compile.py checks that the blocks compile with fullgraph=True).
COMPILE_OPTIONS: dict = {"dynamic": False, "fullgraph": False}

# Static shapes mean one graph per shape per block class: the VAE's ResnetBlock takes 2 per resolution level
# (with and without SPADE), again without gradients (sampling, validation, latent statistics) and per sample
# size. Dynamo's default recompile_limit (8 per code object) would run the later ones eager, silently slower.
RECOMPILE_LIMIT = 64


def allow_tf32(enabled: bool) -> None:
    """``--allow_tf32``: TF32 for CUDA float32 matmuls and cuDNN convolutions, as diffusers' training scripts
    set it. Without the flag nothing is touched (torch's defaults stay). Without a GPU it changes nothing,
    and says so in the log."""
    if not enabled:
        return
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    if not torch.cuda.is_available():
        logger.info("--allow_tf32: applies to CUDA matmuls and convolutions only; no GPU here, nothing changes")


def compile_repeated_blocks(model: nn.Module, **options) -> list[str]:
    """Compile ``model``'s repeated blocks in place (``COMPILE_OPTIONS`` unless ``options`` are given); returns
    the names of the compiled submodules. A model without ``_repeated_blocks`` (a pretrained
    ``AutoencoderKL``) is left as it is (returns ``[]``)."""
    classes = getattr(model, "_repeated_blocks", None)
    if not classes or not hasattr(model, "compile_repeated_blocks"):
        return []
    import torch._dynamo  # noqa: PLC0415 - only a compiling run pays for importing dynamo

    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
    model.compile_repeated_blocks(**(options or COMPILE_OPTIONS))
    return [name for name, module in model.named_modules() if type(module).__name__ in classes]


def compile_models(models: dict[str, nn.Module]) -> None:
    """``--torch_compile``: regional compilation of each of ``{name: model}``, logged per model."""
    for name, model in models.items():
        compiled = compile_repeated_blocks(model)
        if compiled:
            logger.info("--torch_compile: %d %s block(s) of the %s compiled (regional; they compile on the "
                        "first step)", len(compiled), ", ".join(model._repeated_blocks), name)
        else:
            logger.info("--torch_compile: the %s (%s) has no repeated blocks to compile; it runs eager", name,
                        type(model).__name__)


def is_compiled(module: nn.Module) -> bool:
    """``module`` was compiled in place (``nn.Module.compile``, what ``compile_repeated_blocks`` calls)."""
    return getattr(module, "_compiled_call_impl", None) is not None
