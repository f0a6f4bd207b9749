"""One generation request on a loaded model: the LoRA it asks for, the images, and the settings that make them
again (each image's seed and its ``fluxflow-generate`` command, as that tool records them)."""

from __future__ import annotations

import secrets
from dataclasses import replace
from types import SimpleNamespace

from .limits import MAX_SEED, Request, RequestError
from .models import LoadedModel

ADAPTER = "app_lora"  # the adapter name the app loads a LoRA file under


def with_seed(request: Request) -> Request:
    """The request with the seed it will use: a fresh random one when ``random_seed`` is set."""
    if not request.random_seed:
        return request
    return replace(request, seed=secrets.randbelow(MAX_SEED - request.num_images + 1))


def generate(model: LoadedModel, request: Request, on_step=None) -> tuple[list, dict]:
    """``(images, settings)`` for ``request`` (seeds already chosen); ``on_step(done, total)`` after each
    step. Holds the model's lock: one generation at a time per model."""
    import torch

    def callback(pipe, step, timestep, tensors):
        if on_step is not None:
            on_step(step + 1, request.steps)
        return {}

    with model.lock:
        apply_lora(model, request.lora, request.lora_scale)
        images = model.pipe(
            request.prompt, negative_prompt=request.negative_prompt or None, height=request.height,
            width=request.width, num_inference_steps=request.steps, guidance_scale=request.guidance_scale,
            num_images_per_prompt=request.num_images, callback_on_step_end=callback,
            generator=[torch.Generator("cpu").manual_seed(s) for s in request.seeds]).images
    return images, settings(model, request)


def apply_lora(model: LoadedModel, path: str | None, scale: float) -> None:
    """Make ``path`` (or no LoRA) the pipeline's adapter, at ``scale``, with diffusers' LoRA loader. Another
    file than the one loaded replaces it (unloaded first, so the base weights are exactly as saved)."""
    pipe = model.pipe
    if path and not hasattr(pipe, "load_lora_weights"):
        raise RequestError("LoRA: this version of FluxFlowPipeline cannot load LoRA weights (it has no "
                           "load_lora_weights); update fluxflow, or clear the LoRA field.")
    if model.lora != path and model.lora is not None:
        pipe.unload_lora_weights()
        model.lora = None
    if path is None:
        return
    if model.lora is None:
        try:
            pipe.load_lora_weights(path, adapter_name=ADAPTER)
        except ImportError as err:  # peft is missing: the message names the extra
            raise RequestError(f"LoRA: {err}") from None
        except Exception as err:  # a file of another model or no LoRA at all: a message, never a traceback
            if hasattr(pipe, "unload_lora_weights"):
                pipe.unload_lora_weights()
            raise RequestError(f"LoRA {path}: cannot be loaded into this model's flow processor "
                               f"({type(err).__name__}: {' '.join(str(err).split())[:300]})") from None
        model.lora = path
    pipe.set_adapters([ADAPTER], [scale])


def settings(model: LoadedModel, request: Request) -> dict:
    """What made the images: the model (absolute path or Hub repo id), the request, the seeds used, and per
    image the ``command`` of ``fluxflow-generate``'s record that makes it again (with ``--batch_size 1``)."""
    from ..cli.generate import record_entry

    loras = [(request.lora, request.lora_scale)] if request.lora else []
    args = SimpleNamespace(model_name=model.key, steps=request.steps, guidance_scale=request.guidance_scale,
                           device=model.device, dtype=model.dtype, batch_size=request.num_images,
                           format="png", negative_prompt=request.negative_prompt or None, loras=loras)
    images = [record_entry(args, request.prompt, seed, request.height, request.width)
              for seed in request.seeds]
    return {"model": model.key, "prompt": request.prompt, "negative_prompt": request.negative_prompt or None,
            "seed": request.seed, "random_seed": request.random_seed, "seeds": request.seeds,
            "steps": request.steps, "guidance_scale": request.guidance_scale, "height": request.height,
            "width": request.width, "num_images": request.num_images, "lora": request.lora,
            "lora_scale": request.lora_scale if request.lora else None, "device": model.device,
            "dtype": model.dtype, "images": [{"seed": e["seed"], "command": e["command"]} for e in images]}
