"""FluxFlowPipeline: text -> image with the flow processor, the diffusers way.

Sampling is exactly what training learned: latents start as Gaussian noise at ``s = 1``, the flow
processor predicts ``v = noise - x0`` at ``timestep = s * 1000``, and diffusers'
``FlowMatchEulerDiscreteScheduler`` (with the ``shift`` saved by training) integrates to ``s = 0``.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from diffusers import AutoencoderKL, DiffusionPipeline, FlowMatchEulerDiscreteScheduler
from diffusers.image_processor import VaeImageProcessor
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from ..models import FluxFlowTextEncoder, FluxFlowTransformer, FluxFlowVAE
from ..models.vae import vae_scale_factor
from .lora import FluxFlowLoraLoaderMixin
from .prompts import PromptEmbeddings, tokenize_prompts
from .single_file import load_single_file, read_metadata, save_single_file

OUTPUT_TYPES = ("pil", "np", "pt", "latent")



@dataclass
class FluxFlowPipelineOutput(BaseOutput):
    """``images``: a list of PIL images, a ``[B, H, W, C]`` numpy array or a ``[B, C, H, W]`` tensor."""

    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor


class FluxFlowPipeline(DiffusionPipeline, FluxFlowLoraLoaderMixin):
    """Text-to-image with a :class:`FluxFlowTransformer` over the latents of a :class:`FluxFlowVAE` or of a
    pretrained diffusers :class:`~diffusers.AutoencoderKL` (e.g. an SD3/Flux 16-channel VAE).

    Load with ``FluxFlowPipeline.from_pretrained(folder | hub repo id | checkpoint.safetensors)``; note
    that the generic ``DiffusionPipeline.from_pretrained`` cannot build this class. LoRA adapters of the flow
    processor: ``load_lora_weights``, ``set_adapters``, ``fuse_lora`` / ``unfuse_lora`` (:mod:`.lora`).
    """

    model_cpu_offload_seq = "text_encoder->transformer->vae"
    _callback_tensor_inputs = ["latents", "prompt_embeds", "negative_prompt_embeds"]

    def __init__(self, vae: FluxFlowVAE | AutoencoderKL, transformer: FluxFlowTransformer,
                 text_encoder: FluxFlowTextEncoder, tokenizer, scheduler: FlowMatchEulerDiscreteScheduler):
        super().__init__()
        self.register_modules(vae=vae, transformer=transformer, text_encoder=text_encoder, tokenizer=tokenizer,
                              scheduler=scheduler)
        self.vae_scale_factor = vae_scale_factor(vae) if vae is not None else 8
        self.image_processor = VaeImageProcessor(vae_scale_factor=self.vae_scale_factor)

    # ---------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> FluxFlowPipeline:
        """A saved folder, a ``checkpoint.safetensors`` written by training, or a Hub repo id (the snapshot is
        downloaded with ``huggingface_hub`` first: diffusers cannot load third-party classes by repo id)."""
        path = Path(pretrained_model_name_or_path)
        if path.is_file():
            return cls.from_single_file(path, **kwargs)
        if not path.is_dir():
            from huggingface_hub import snapshot_download

            hub_keys = ("revision", "token", "cache_dir", "force_download", "local_files_only", "proxies",
                        "allow_patterns")
            hub_kwargs = {k: kwargs.pop(k) for k in hub_keys if k in kwargs}
            if "allow_patterns" not in kwargs:  # a run's pushed checkpoints/ are not part of the pipeline
                hub_kwargs["ignore_patterns"] = kwargs.pop("ignore_patterns", ["checkpoints/*"])
            path = Path(snapshot_download(str(pretrained_model_name_or_path), **hub_kwargs))
        kwargs.setdefault("use_safetensors", True)  # a pickled .bin only with use_safetensors=False
        return super().from_pretrained(path, **kwargs)

    @classmethod
    def from_single_file(cls, path: str | os.PathLike, dtype: torch.dtype | None = None, tokenizer=None,
                         scheduler=None, torch_dtype: torch.dtype | None = None, **unused) -> FluxFlowPipeline:
        """Build the pipeline from a one-file checkpoint (see :mod:`fluxflow.pipelines.single_file`)."""
        from transformers import AutoTokenizer

        if unused:
            raise TypeError(f"from_single_file got unsupported arguments: {', '.join(unused)}")
        metadata = read_metadata(path)
        # a training checkpoint with EMA holds both transformers: sample with the EMA weights
        transformer = "transformer_ema" if "transformer_ema" in json.loads(metadata["fluxflow_components"]) \
            else "transformer"
        models = load_single_file(path, ["vae", transformer, "text_encoder"], dtype=dtype or torch_dtype)
        models["transformer"] = models.pop(transformer)
        if scheduler is None:
            config = json.loads(metadata.get("fluxflow_scheduler", "{}"))
            scheduler = FlowMatchEulerDiscreteScheduler.from_config(config)
        if tokenizer is None:
            if "fluxflow_tokenizer" not in metadata:
                raise ValueError(f"{path} carries no tokenizer; pass tokenizer=AutoTokenizer.from_pretrained(...)")
            with tempfile.TemporaryDirectory() as folder:
                for name, text in json.loads(metadata["fluxflow_tokenizer"]).items():
                    (Path(folder) / name).write_text(text, encoding="utf-8")
                tokenizer = AutoTokenizer.from_pretrained(folder)
        return cls(tokenizer=tokenizer, scheduler=scheduler, **models)

    def save_single_file(self, path: str | os.PathLike, extra: dict | None = None) -> Path:
        """Write vae, transformer, text encoder, scheduler config and tokenizer into one safetensors file."""
        models = {"vae": self.vae, "transformer": self.transformer, "text_encoder": self.text_encoder}
        return save_single_file(path, models, scheduler=self.scheduler, tokenizer=self.tokenizer, extra=extra)

    # ---------------------------------------------------------------- properties
    @property
    def guidance_scale(self) -> float:
        return self._guidance_scale

    @property
    def do_classifier_free_guidance(self) -> bool:
        return self._guidance_scale > 1

    @property
    def num_timesteps(self) -> int:
        return self._num_timesteps

    @property
    def current_timestep(self):
        return self._current_timestep

    @property
    def interrupt(self) -> bool:
        return self._interrupt

    @property
    def default_sample_size(self) -> int:
        return self.transformer.config.sample_size * self.vae_scale_factor

    # ---------------------------------------------------------------- text
    @torch.no_grad()
    def encode_prompt(
        self,
        prompt: str | list[str] | None,
        negative_prompt: str | list[str] | None = None,
        device: torch.device | None = None,
        num_images_per_prompt: int = 1,
        do_classifier_free_guidance: bool = True,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        pooled_prompt_embeds: torch.Tensor | None = None,
        negative_pooled_prompt_embeds: torch.Tensor | None = None,
        max_sequence_length: int | None = None,
        prompt_attention_mask: torch.Tensor | None = None,
        negative_prompt_attention_mask: torch.Tensor | None = None,
    ):
        """The text inputs of ``__call__``, as diffusers' SD3 ``encode_prompt`` makes them; needs only the
        tokenizer and text encoder (and neither for given embeddings).

        Returns ``(prompt_embeds, negative_prompt_embeds, pooled_prompt_embeds, negative_pooled_prompt_embeds,
        prompt_attention_mask, negative_prompt_attention_mask)``, each prompt ``num_images_per_prompt`` times in
        a row; the negatives are ``None`` without classifier-free guidance. The negative prompt defaults to
        ``""`` (training's null condition) and is padded to the positive one's token length. Encoded embeddings
        are in the text encoder's dtype (as in diffusers' Flux and SD3); a missing given mask means no padding."""
        device = device or self._execution_device
        cond = self._text_embeddings(prompt, prompt_embeds, pooled_prompt_embeds, prompt_attention_mask, device,
                                     max_sequence_length)
        uncond = PromptEmbeddings(None, None, None)
        if do_classifier_free_guidance:
            negative = "" if negative_prompt is None else negative_prompt
            negative = [negative] * cond.embeds.shape[0] if isinstance(negative, str) else negative
            uncond = self._text_embeddings(negative, negative_prompt_embeds, negative_pooled_prompt_embeds,
                                           negative_prompt_attention_mask, device, cond.embeds.shape[1])
            if uncond.embeds.shape != cond.embeds.shape:
                raise ValueError(f"the negative text embeddings have shape {tuple(uncond.embeds.shape)} but the "
                                 f"prompt's have {tuple(cond.embeds.shape)}")
            uncond = uncond.repeat(num_images_per_prompt)
        cond = cond.repeat(num_images_per_prompt)
        prompt_embeds, pooled_prompt_embeds, prompt_attention_mask = cond.embeds, cond.pooled, cond.mask
        negative_prompt_embeds, negative_pooled_prompt_embeds = uncond.embeds, uncond.pooled
        negative_prompt_attention_mask = uncond.mask
        return (prompt_embeds, negative_prompt_embeds, pooled_prompt_embeds, negative_pooled_prompt_embeds,
                prompt_attention_mask, negative_prompt_attention_mask)

    def _text_embeddings(self, prompt, embeds, pooled, mask, device, max_length) -> PromptEmbeddings:
        """The given embeddings on ``device``, or ``prompt`` tokenized exactly as in training and encoded."""
        if embeds is not None:
            if pooled is None:
                raise ValueError("`prompt_embeds` need their `pooled_prompt_embeds` (and the negative ones likewise)")
            mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=device) if mask is None else mask
            return PromptEmbeddings(embeds.to(device), pooled.to(device), mask.to(device))
        if prompt is None:
            raise ValueError("pass `prompt` or `prompt_embeds`")
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        tokens = tokenize_prompts(self.tokenizer, prompts, max_length or self.text_encoder.config.max_length)
        mask = tokens.attention_mask.to(device)
        out = self.text_encoder(tokens.input_ids.to(device), mask)
        dtype = self.text_encoder.dtype
        return PromptEmbeddings(out.last_hidden_state.to(dtype), out.pooled_output.to(dtype), mask)

    def check_inputs(self, prompt, negative_prompt, height, width, prompt_embeds, negative_prompt_embeds,
                     pooled_prompt_embeds, negative_pooled_prompt_embeds, prompt_attention_mask,
                     negative_prompt_attention_mask, output_type, callback_on_step_end_tensor_inputs, generator,
                     batch_size):
        multiple = self.vae_scale_factor * self.transformer.config.patch_size
        if height % multiple or width % multiple:
            raise ValueError(f"height and width must be multiples of {multiple} (VAE factor {self.vae_scale_factor} "
                             f"x patch size {self.transformer.config.patch_size}), got {height}x{width}")
        if (prompt is None) == (prompt_embeds is None):
            raise ValueError("pass exactly one of `prompt` and `prompt_embeds`")
        if prompt is not None and not isinstance(prompt, (str, list)):
            raise ValueError(f"`prompt` must be a str or a list of str, got {type(prompt).__name__}")
        if negative_prompt is not None and negative_prompt_embeds is not None:
            raise ValueError("pass at most one of `negative_prompt` and `negative_prompt_embeds`")
        if isinstance(negative_prompt, list) and isinstance(prompt, list) and len(negative_prompt) != len(prompt):
            raise ValueError(f"`negative_prompt` has {len(negative_prompt)} entries but `prompt` has {len(prompt)}")
        if prompt_embeds is not None and pooled_prompt_embeds is None:
            raise ValueError("If `prompt_embeds` are provided, `pooled_prompt_embeds` also have to be passed")
        if negative_prompt_embeds is not None and negative_pooled_prompt_embeds is None:
            raise ValueError("If `negative_prompt_embeds` are provided, `negative_pooled_prompt_embeds` also have to "
                             "be passed")
        pairs = {"prompt_embeds": (prompt_embeds, negative_prompt_embeds),
                 "pooled_prompt_embeds": (pooled_prompt_embeds, negative_pooled_prompt_embeds),
                 "prompt_attention_mask": (prompt_attention_mask, negative_prompt_attention_mask)}
        for name, (positive, negative) in pairs.items():
            if positive is not None and negative is not None and positive.shape != negative.shape:
                raise ValueError(f"`{name}` and `negative_{name}` must have the same shape when passed directly, but "
                                 f"got: `{name}` {tuple(positive.shape)} != `negative_{name}` {tuple(negative.shape)}")
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"unknown output_type {output_type!r}; allowed: {', '.join(OUTPUT_TYPES)}")
        unknown = [k for k in callback_on_step_end_tensor_inputs or [] if k not in self._callback_tensor_inputs]
        if unknown:
            raise ValueError(f"callback_on_step_end_tensor_inputs {unknown} not in {self._callback_tensor_inputs}")
        if isinstance(generator, list) and len(generator) != batch_size:
            raise ValueError(f"got {len(generator)} generators for a batch of {batch_size} images")

    def prepare_latents(self, batch_size, height, width, dtype, device, generator, latents=None):
        shape = (batch_size, self.transformer.config.in_channels, height // self.vae_scale_factor,
                 width // self.vae_scale_factor)
        if latents is None:
            return randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        if tuple(latents.shape) != shape:
            raise ValueError(f"`latents` must have shape {shape} for this batch and size, got {tuple(latents.shape)}")
        return latents.to(device=device, dtype=dtype)

    # ---------------------------------------------------------------- sampling
    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        negative_prompt: str | list[str] | None = None,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 28,
        sigmas: list[float] | None = None,
        guidance_scale: float = 5.0,
        num_images_per_prompt: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        pooled_prompt_embeds: torch.Tensor | None = None,
        prompt_attention_mask: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        negative_pooled_prompt_embeds: torch.Tensor | None = None,
        negative_prompt_attention_mask: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end=None,
        callback_on_step_end_tensor_inputs: list[str] = ("latents",),
        max_sequence_length: int | None = None,
    ):
        height = height or self.default_sample_size
        width = width or self.default_sample_size
        num_prompts = 1 if isinstance(prompt, str) else len(prompt) if prompt is not None else prompt_embeds.shape[0]
        batch_size = num_prompts * num_images_per_prompt
        self.check_inputs(prompt, negative_prompt, height, width, prompt_embeds, negative_prompt_embeds,
                          pooled_prompt_embeds, negative_pooled_prompt_embeds, prompt_attention_mask,
                          negative_prompt_attention_mask, output_type, callback_on_step_end_tensor_inputs, generator,
                          batch_size)
        self._guidance_scale, self._interrupt, self._current_timestep = guidance_scale, False, None
        device, cfg = self._execution_device, self.do_classifier_free_guidance

        (prompt_embeds, negative_prompt_embeds, pooled_prompt_embeds, negative_pooled_prompt_embeds,
         prompt_attention_mask, negative_prompt_attention_mask) = self.encode_prompt(
            prompt, negative_prompt, device, num_images_per_prompt, cfg,
            prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_prompt_embeds,
            pooled_prompt_embeds=pooled_prompt_embeds, negative_pooled_prompt_embeds=negative_pooled_prompt_embeds,
            max_sequence_length=max_sequence_length, prompt_attention_mask=prompt_attention_mask,
            negative_prompt_attention_mask=negative_prompt_attention_mask)
        dtype = self.transformer.dtype
        prompt_embeds, pooled, mask = prompt_embeds.to(dtype), pooled_prompt_embeds.to(dtype), prompt_attention_mask
        if cfg:  # unconditional first, as the velocity is split below
            negative_prompt_embeds = negative_prompt_embeds.to(dtype)
            pooled = torch.cat([negative_pooled_prompt_embeds.to(dtype), pooled])
            mask = torch.cat([negative_prompt_attention_mask, mask])

        latents = self.prepare_latents(batch_size, height, width, self.transformer.dtype, device, generator, latents)
        timesteps, num_inference_steps = self._timesteps(num_inference_steps, sigmas, latents, device)
        self._num_timesteps = len(timesteps)
        with self.progress_bar(total=num_inference_steps) as progress_bar:
            for i, t in enumerate(timesteps):
                if self.interrupt:
                    continue
                self._current_timestep = t
                embeds = torch.cat([negative_prompt_embeds, prompt_embeds]) if cfg else prompt_embeds
                model_input = torch.cat([latents] * 2) if cfg else latents
                velocity = self.transformer(model_input, embeds, pooled, t.expand(model_input.shape[0]), mask,
                                            return_dict=False)[0]
                if cfg:
                    v_uncond, v_text = velocity.chunk(2)
                    velocity = v_uncond + guidance_scale * (v_text - v_uncond)
                latents = self.scheduler.step(velocity, t, latents, return_dict=False)[0]
                if callback_on_step_end is not None:
                    local = {"latents": latents, "prompt_embeds": prompt_embeds,
                             "negative_prompt_embeds": negative_prompt_embeds}
                    out = callback_on_step_end(self, i, t, {k: local[k] for k in callback_on_step_end_tensor_inputs})
                    latents = out.pop("latents", latents)
                    prompt_embeds = out.pop("prompt_embeds", prompt_embeds)
                    negative_prompt_embeds = out.pop("negative_prompt_embeds", negative_prompt_embeds)
                progress_bar.update()
        self._current_timestep = None

        image = latents if output_type == "latent" else self._decode(latents, output_type)
        self.maybe_free_model_hooks()
        return FluxFlowPipelineOutput(images=image) if return_dict else (image,)

    def _timesteps(self, num_inference_steps, sigmas, latents, device):
        """``scheduler.set_timesteps`` as diffusers' SD3/Flux pipelines call it (their ``retrieve_timesteps``
        and ``calculate_shift`` live in modules that import every image processor, hence these few lines)."""
        kwargs = {}
        config = self.scheduler.config
        if config.get("use_dynamic_shifting", False):
            seq_len = latents.shape[-2] * latents.shape[-1] // self.transformer.config.patch_size**2
            base_len, max_len = config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096)
            base_shift, max_shift = config.get("base_shift", 0.5), config.get("max_shift", 1.15)
            kwargs["mu"] = base_shift + (max_shift - base_shift) * (seq_len - base_len) / (max_len - base_len)
        if hasattr(self.scheduler, "set_begin_index"):
            self.scheduler.set_begin_index(0)
        if sigmas is not None:
            self.scheduler.set_timesteps(sigmas=sigmas, device=device, **kwargs)
        else:
            self.scheduler.set_timesteps(num_inference_steps, device=device, **kwargs)
        return self.scheduler.timesteps, len(self.scheduler.timesteps)

    def _decode(self, latents: torch.Tensor, output_type: str):
        config = self.vae.config  # an AutoencoderKL's shift_factor may be None (no shift), as in diffusers' SD
        latents = latents / config.scaling_factor + (config.shift_factor or 0.0)
        image = self.vae.decode(latents.to(self.vae.dtype), return_dict=False)[0]
        return self.image_processor.postprocess(image, output_type=output_type)
