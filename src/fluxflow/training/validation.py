"""Validation during training: metrics of the current models on a fixed held-out set.

Every number is a pure function of the weights and the held-out samples: the flow loss's noise is drawn once
from its own seeded generator, the judge's images from per-prompt seeded generators. Two calls on the same
weights agree bit for bit (across a resume too), and the global RNG is never drawn from.
"""

from __future__ import annotations

import importlib.util
import time
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from diffusers.image_processor import VaeImageProcessor
from PIL import Image

from ..datasets import shapes
from .config import TrainConfig
from .losses import kl_per_channel

SIGMA_BINS = 4  # noise-level bins of the flow loss over the trained range
NOISE_SEED_OFFSET = 12345  # the flow noise comes from torch.Generator().manual_seed(seed + this)
MS_SSIM_BETAS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang et al. 2003 (torchmetrics' default)
SSIM_KERNEL, SSIM_SIGMA = 11, 1.5  # the standard Gaussian window
JUDGE_KEYS = ("accuracy", "colour", "shape", "position", "background")
INSTALL_HINT = "pip install 'fluxflow[metrics]'"


class MetricsUnavailableError(ImportError):
    """torchmetrics (the ``metrics`` extra) is not installed, but validation needs it."""


def metrics_available() -> bool:
    """Whether the image metrics of VAE validation (torchmetrics) can be imported."""
    return importlib.util.find_spec("torchmetrics") is not None


def image_metrics():
    """``torchmetrics.functional.image``, imported on first use; an error naming the extra when missing."""
    try:
        from torchmetrics.functional import image
    except ImportError as err:
        raise MetricsUnavailableError(f"validation metrics need torchmetrics: {INSTALL_HINT}") from err
    return image


# ------------------------------------------------------------------------------------------------ settings

def ms_ssim_settings(side: int) -> dict | None:
    """Keyword arguments (``betas`` and window) of torchmetrics' MS-SSIM for images whose shorter side is
    ``side``; None when too small.

    The default five scales need sides > 160 px. Here: the standard 11-px Gaussian window (sigma 1.5) at as
    many scales k as fit (torchmetrics' check ``side // (k-1)^2 > 10``, and the coarsest scale
    ``side / 2^(k-1)`` holds a whole window), betas the first k defaults renormalised to sum 1:
    32 px -> 2 scales, 64 -> 3, 128 -> 4, >= 176 -> 5. Sides 6-21 px: 2 scales with the largest odd window
    that fits; below 6 px: None."""
    for scales in range(len(MS_SSIM_BETAS), 1, -1):
        if _ms_ssim_fits(side, scales, SSIM_KERNEL):
            return {"betas": _betas(scales), **window(SSIM_KERNEL)}
    for kernel in range(SSIM_KERNEL - 2, 2, -2):
        if _ms_ssim_fits(side, 2, kernel):
            return {"betas": _betas(2), **window(kernel)}
    return None


def _ms_ssim_fits(side: int, scales: int, kernel: int) -> bool:
    coarsest = side // 2 ** (scales - 1)
    return side >= 2 ** scales and side // max(1, scales - 1) ** 2 > kernel - 1 and coarsest >= kernel


def _betas(scales: int) -> tuple[float, ...]:
    first = MS_SSIM_BETAS[:scales]
    return tuple(b / sum(first) for b in first)


def window(kernel: int) -> dict:
    """A Gaussian window of ``kernel`` px. torchmetrics sizes Gaussian windows from ``sigma`` alone (11 px at
    the standard 1.5), so sigma scales with the size; ``kernel_size`` is what its MS-SSIM size check reads."""
    return {"kernel_size": kernel, "sigma": SSIM_SIGMA * kernel / SSIM_KERNEL}


def ssim_settings(side: int) -> dict:
    """The standard 11-px window, or the largest odd one that fits a smaller image."""
    return window(min(SSIM_KERNEL, side if side % 2 else side - 1))


def image_scores(pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image PSNR, SSIM and (where the size allows) MS-SSIM of ``[B, C, H, W]`` images in [0, 1]."""
    tm, side = image_metrics(), min(pred.shape[-2:])
    per_image = {"data_range": 1.0, "reduction": "none"}
    scores = {"psnr": tm.peak_signal_noise_ratio(pred, target, dim=(1, 2, 3), **per_image),
              "ssim": tm.structural_similarity_index_measure(pred, target, **ssim_settings(side),
                                                             **per_image)}
    ms = ms_ssim_settings(side)
    if ms is not None:
        scores["ms_ssim"] = tm.multiscale_structural_similarity_index_measure(pred, target, **ms, **per_image)
    return scores


def sigma_bins(cfg: TrainConfig, n: int = SIGMA_BINS) -> list[tuple[float, float]]:
    """``n`` bins of the trained noise levels: up to ``diff_max_sigma`` with ``--train_diff``, else 1."""
    top = cfg.diff_max_sigma if cfg.train_diff else 1.0
    return [(top * i / n, top * (i + 1) / n) for i in range(n)]


def bin_names(bins: list[tuple[float, float]]) -> list[str]:
    """``loss_sigma_{lo:.2f}-{hi:.2f}`` per bin; more decimals only where two bins would share a name."""
    for digits in range(2, 7):
        names = [f"loss_sigma_{lo:.{digits}f}-{hi:.{digits}f}" for lo, hi in bins]
        if len(set(names)) == len(names):
            break
    return names


def is_shapes_caption(caption: str) -> bool:
    try:
        shapes.parse_caption(caption)
    except ValueError:
        return False
    return True


# ------------------------------------------------------------------------------------------------ helpers

@contextmanager
def eval_mode(*models):
    """Every module of ``models`` in eval mode inside; each module's own mode restored after (mixed too)."""
    modes = {m: m.training for model in models if model is not None for m in model.modules()}
    for module in modes:
        module.eval()
    try:
        yield
    finally:
        for module, training in modes.items():
            module.train(training)


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """PIL images of ``[B, C, H, W]`` in [-1, 1], converted as the sample files are (diffusers' processor)."""
    return VaeImageProcessor().postprocess(images.float().cpu(), output_type="pil")


def _param(model: torch.nn.Module) -> torch.Tensor:
    return next(model.parameters())


# ------------------------------------------------------------------------------------------------ validator

class Validator:
    """Metrics on a fixed held-out set, the same noise every time (deterministic, exact across resume).

    ``samples``: ``(image [C, H, W] in [-1, 1], caption)`` prepared like training images, all of one size;
    the first ``cfg.max_validation_samples`` are used. Called with the unwrapped models: flat ``val/...``
    floats."""

    def __init__(self, cfg: TrainConfig, samples: list[tuple[torch.Tensor, str]], tokenizer, max_length: int):
        samples = list(samples)[:cfg.max_validation_samples]
        if not samples:
            raise ValueError("validation needs at least one held-out sample")
        sizes = {tuple(image.shape) for image, _ in samples}
        if len(sizes) > 1:
            raise ValueError(f"held-out images must share one size, got {sorted(sizes)}")
        if cfg.trains_vae and not metrics_available():
            raise MetricsUnavailableError(f"validation metrics need torchmetrics: {INSTALL_HINT}")
        self.cfg = cfg
        self.images = torch.stack([image.float().cpu() for image, _ in samples])
        self.captions = [caption for _, caption in samples]
        self.batch = cfg.batch_size or 16
        self.tokens = None
        if tokenizer is not None:
            from ..pipelines import tokenize_prompts

            self.tokens = tokenize_prompts(tokenizer, self.captions, max_length)
        self.shapes = self.images.shape[1] == 3 and all(is_shapes_caption(c) for c in self.captions)
        self.bins = sigma_bins(cfg)
        self.seed = cfg.seed or 0  # a run has drawn and saved its seed before it validates
        self._noise: torch.Tensor | None = None  # [N, bins, C, h, w], drawn on first use

    @torch.no_grad()
    def __call__(self, vae, transformer=None, text_encoder=None, pipeline_factory=None) -> dict[str, float]:
        start = time.perf_counter()
        metrics: dict[str, float] = {}
        with eval_mode(vae, transformer, text_encoder):
            if self.cfg.trains_vae:
                metrics.update(self.vae_metrics(vae))
            if self.cfg.trains_flow and transformer is not None:
                metrics.update(self.flow_metrics(vae, transformer, text_encoder))
                if self.shapes and self.cfg.validation_judge_prompts > 0 and pipeline_factory is not None:
                    metrics.update(self.judge_metrics(pipeline_factory()))
        metrics["val/seconds"] = time.perf_counter() - start
        return metrics

    def _batches(self):
        for i in range(0, len(self.images), self.batch):
            yield i, self.images[i:i + self.batch]

    # -------------------------------------------------------------------------------------------- VAE
    def vae_metrics(self, vae) -> dict[str, float]:
        """PSNR, SSIM and MS-SSIM of the posterior-mode reconstructions with SPADE context and without
        (``_nc``), KL per latent channel and, on shapes captions, the judge's score of the reconstructions."""
        param = _param(vae)
        sums: dict[str, torch.Tensor] = {}
        for _, x in self._batches():
            x = x.to(param.device, param.dtype)
            posterior = vae.encode(x).latent_dist
            scores = {"kl": kl_per_channel(posterior.mean, posterior.logvar)[None].expand(len(x), -1)}
            target, z = (x.float() + 1) / 2, posterior.mode()
            for suffix, use_context in (("", True), ("_nc", False)):
                pred = (vae.decode(z, use_context=use_context).sample.float().clamp(-1, 1) + 1) / 2
                scores.update({name + suffix: v for name, v in image_scores(pred, target).items()})
            for name, values in scores.items():
                sums[name] = sums.get(name, 0) + values.double().sum(0)
        n = len(self.images)
        kl = sums.pop("kl") / n
        metrics = {f"val/vae/{name}": float(total / n) for name, total in sums.items()}
        metrics.update({f"val/vae/kl/ch{i}": float(v) for i, v in enumerate(kl)})
        metrics["val/vae/kl"] = float(kl.sum())
        if self.shapes:
            judged = shapes.judge_reconstructions(vae, to_pil(self.images), self.captions, batch=self.batch)
            metrics.update({f"val/judge_recon/{k}": float(judged[k]) for k in JUDGE_KEYS})
        return metrics

    # -------------------------------------------------------------------------------------------- flow
    def flow_metrics(self, vae, transformer, text_encoder) -> dict[str, float]:
        """The flow objective's velocity MSE at the centre of each noise-level bin: fixed noise per (image,
        bin), the posterior mode normalized as :func:`~.flow_objective.flow_latents` does, full captions."""
        if self.tokens is None or text_encoder is None:
            raise ValueError("flow validation needs the tokenizer and the text encoder")
        param = _param(transformer)
        totals = torch.zeros(len(self.bins), dtype=torch.float64)
        for i, x in self._batches():
            x0 = self.latents(vae, x).to(param.device)
            noise = self.noise(x0.shape[1:])[i:i + len(x)].to(param.device)
            mask = self.tokens.attention_mask[i:i + len(x)].to(param.device)
            embeds, pooled = text_encoder(self.tokens.input_ids[i:i + len(x)].to(param.device), mask,
                                          return_dict=False)[:2]
            for b, (lo, hi) in enumerate(self.bins):
                s = (lo + hi) / 2
                x_t = ((1 - s) * x0 + s * noise[:, b]).to(param.dtype)
                timestep = torch.full((len(x),), s * 1000, device=param.device)
                velocity = transformer(x_t, embeds, pooled, timestep, mask, return_dict=False)[0]
                loss = F.mse_loss(velocity.float(), noise[:, b] - x0, reduction="none").mean(dim=(1, 2, 3))
                totals[b] += loss.double().sum()
        per_bin = totals / len(self.images)
        metrics = {f"val/flow/{name}": float(v) for name, v in zip(bin_names(self.bins), per_bin)}
        metrics["val/flow/loss"] = float(per_bin.mean())
        return metrics

    def latents(self, vae, x: torch.Tensor) -> torch.Tensor:
        """Float32 ``(mode - shift) * scale``: deterministic latents, normalized exactly as in training."""
        param = _param(vae)
        z = vae.encode(x.to(param.device, param.dtype)).latent_dist.mode().float()
        return (z - (vae.config.shift_factor or 0.0)) * vae.config.scaling_factor

    def noise(self, latent_shape: torch.Size) -> torch.Tensor:
        """``[N, bins, C, h, w]`` standard normal noise, drawn once on the CPU from the dedicated seed."""
        shape = (len(self.images), len(self.bins), *latent_shape)
        if self._noise is None or tuple(self._noise.shape) != shape:
            generator = torch.Generator().manual_seed(self.seed + NOISE_SEED_OFFSET)
            self._noise = torch.randn(shape, generator=generator)
        return self._noise

    # -------------------------------------------------------------------------------------------- judge
    def judge_metrics(self, pipe) -> dict[str, float]:
        """The shapes judge's score of :meth:`judge_images` (none on processes whose ``pipe`` is None)."""
        if pipe is None:
            return {}
        captions = self.captions[:self.cfg.validation_judge_prompts]
        judged = shapes.judge_accuracy(zip(self.judge_images(pipe, captions), captions))
        return {f"val/judge/{k}": float(judged[k]) for k in JUDGE_KEYS}

    def judge_images(self, pipe, captions: list[str]) -> list[Image.Image]:
        """One image per caption at the held-out size, in batches; image ``i`` from
        ``torch.Generator().manual_seed(seed + i)``, as flow samples are."""
        height, width = (int(v) for v in self.images.shape[-2:])
        cfg, images = self.cfg, []
        with eval_mode(pipe.vae, pipe.transformer, pipe.text_encoder):
            for i in range(0, len(captions), self.batch):
                chunk = captions[i:i + self.batch]
                generators = [torch.Generator().manual_seed(self.seed + i + k) for k in range(len(chunk))]
                images += pipe(chunk, height=height, width=width, num_inference_steps=cfg.sample_steps,
                               guidance_scale=cfg.sample_guidance_scale, generator=generators).images
        return images
