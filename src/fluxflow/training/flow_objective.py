"""The flow objective: caption dropout for CFG, noise levels, the velocity loss, and its micro-step.

Rectified flow in the diffusers/SD3 direction: ``x_t = (1 - s) x0 + s noise``, target ``v = noise - x0``, the
flow processor called at ``timestep = s * 1000``. ``s`` is drawn from diffusers' SD3 density of
``--weighting_scheme`` (by default logit-normal: ``--logit_mean``, ``--logit_std``; ``mode``:
``--mode_scale``; ``cosmap``, ``sigma_sqrt``, ``none``: uniform), shifted by ``--timestep_shift`` exactly as
the sampling scheduler shifts its noise levels, and for ``--train_diff`` scaled into
``(0, --diff_max_sigma]``. Each sample's MSE is weighted by diffusers' ``compute_loss_weighting_for_sd3`` at
its ``s`` (a weight of 1 except for ``cosmap`` and ``sigma_sqrt``).
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from diffusers.training_utils import compute_density_for_timestep_sampling, compute_loss_weighting_for_sd3

from .config import TrainConfig

WEIGHTED_SCHEMES = ("cosmap", "sigma_sqrt")  # compute_loss_weighting_for_sd3 is 1 for every other scheme


def drop_captions(input_ids: torch.Tensor, attention_mask: torch.Tensor, null_ids: torch.Tensor,
                  null_mask: torch.Tensor, prob: float, generator: torch.Generator):
    """Replace each row by the empty prompt's tokens with probability ``prob`` (classifier-free guidance).

    The empty prompt is what the pipeline encodes as its null condition, so training and sampling agree."""
    drop = torch.rand(input_ids.shape[0], generator=generator, device=generator.device) < prob
    drop = drop.to(input_ids.device)[:, None]
    ids = torch.where(drop, null_ids.to(input_ids.device).expand_as(input_ids), input_ids)
    mask = torch.where(drop, null_mask.to(attention_mask.device).expand_as(attention_mask), attention_mask)
    return ids, mask, drop.squeeze(1)


class TextEmbeddingCache:
    """Outputs of a frozen text encoder per caption, computed once each and reused (``--cache_text_embeddings``).

    Each caption is encoded on its own, so a cached value never depends on the batch that first needed it
    (runs stay reproducible and resumes exact). Memory: one ``[tokens, width]`` tensor per distinct caption."""

    def __init__(self, text_encoder, tokenizer, max_length: int):
        from ..pipelines import tokenize_prompts

        self.text_encoder, self.tokenizer, self.max_length = text_encoder, tokenizer, max_length
        self.tokenize = tokenize_prompts
        self.store: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    @torch.no_grad()
    def __call__(self, captions: list[str], device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        for caption in dict.fromkeys(c for c in captions if c not in self.store):
            tokens = self.tokenize(self.tokenizer, [caption], self.max_length).to(device)
            embeds, pooled = self.text_encoder(tokens.input_ids, tokens.attention_mask, return_dict=False)
            self.store[caption] = (embeds[0], pooled[0], tokens.attention_mask[0])
        return tuple(torch.stack([self.store[c][i] for c in captions]) for i in range(3))


def shift_sigmas(s: torch.Tensor, shift: float) -> torch.Tensor:
    """The resolution shift of diffusers' ``FlowMatchEulerDiscreteScheduler``: ``shift*s / (1 + (shift-1)*s)``."""
    return shift * s / (1 + (shift - 1) * s)


def noise_level_density(scheme: str, batch: int, generator: torch.Generator, logit_mean: float = 0.0,
                        logit_std: float = 1.0, mode_scale: float = 1.29) -> torch.Tensor:
    """``batch`` noise levels in (0, 1] from diffusers' ``compute_density_for_timestep_sampling``, before the
    shift.

    ``logit_normal`` draws ``sigmoid(randn * std + mean)`` itself: diffusers' ``torch.normal(mean, std)`` is
    the same distribution and the same draw of the generator, but rounds differently (an ulp) unless mean 0
    and std 1, and runs before this change drew ``randn``, so a resumed or repeated run keeps its noise levels
    bit for bit. The uniform schemes (``none``, ``cosmap``, ``sigma_sqrt``) use ``1 - u``: diffusers' ``u`` is
    in [0, 1), and a level of exactly 0 would train nothing (``sigma_sqrt`` would weight it infinitely)."""
    if scheme == "logit_normal":
        return torch.sigmoid(torch.randn(batch, generator=generator, device=generator.device) * logit_std
                             + logit_mean)
    u = compute_density_for_timestep_sampling(scheme, batch, logit_mean, logit_std, mode_scale,
                                              device=generator.device, generator=generator)
    return u if scheme == "mode" else 1 - u


def weighted_mse(prediction: torch.Tensor, target: torch.Tensor, scheme: str,
                 sigmas: torch.Tensor) -> torch.Tensor:
    """The velocity MSE, each sample's weighted by ``compute_loss_weighting_for_sd3(scheme, sigmas)`` then
    averaged, as diffusers' SD3 script does. Schemes whose weights are all 1 take ``F.mse_loss`` (the same
    value, and the same bits as before weighting existed)."""
    if scheme not in WEIGHTED_SCHEMES:
        return F.mse_loss(prediction.float(), target.float())
    per_sample = (prediction.float() - target.float()).pow(2).flatten(1).mean(dim=1)
    return (compute_loss_weighting_for_sd3(scheme, sigmas.float()).float() * per_sample).mean()


class FlowObjective:
    """Noise levels and the velocity MSE of ``--train_diff_full`` / ``--train_diff``, and the micro-step that
    feeds them: latents of the frozen (or jointly trained) VAE, captions dropped to the null condition
    (``null_tokens``: the empty prompt, tokenized), text from ``text_cache`` or the text encoder."""

    def __init__(self, cfg: TrainConfig, null_tokens=None, text_cache: TextEmbeddingCache | None = None,
                 null_text: tuple[torch.Tensor, ...] | None = None):
        self.cfg, self.null_tokens, self.text_cache, self.null_text = cfg, null_tokens, text_cache, null_text

    def micro_step(self, accelerator, models, batch: dict, generator: torch.Generator, z=None) -> dict:
        """Forward, loss and backward of one micro-batch; ``z``: the latents of the VAE trained in the same step.
        A batch from the latent cache brings ``moments`` (and ``embeds``/``pooled``/``mask``) instead of pixels
        and tokens; the generator is drawn from in the same order either way."""
        if "moments" in batch:
            z = DiagonalGaussianDistribution(batch["moments"]).sample(generator=generator)
        latents = flow_latents(models.unwrapped("vae"), batch.get("pixel_values"), z, generator)
        if "embeds" in batch:
            text, dropped = self._cached_text(batch, generator)
        else:
            text, dropped = self._encoded_text(models.text_encoder, batch, generator)
        loss, logs = self.loss(models.transformer, latents, text, generator)
        accelerator.backward(loss)
        logs["flow/caption_dropout"] = dropped.float().mean()
        return logs

    def _encoded_text(self, text_encoder, batch: dict, generator: torch.Generator):
        """``((embeds, pooled, mask), dropped)`` of the batch's tokens, captions dropped to the null condition."""
        null = self.null_tokens
        ids, mask, dropped = drop_captions(batch["input_ids"], batch["attention_mask"], null.input_ids,
                                           null.attention_mask, self.cfg.cfg_dropout_prob, generator)
        if self.text_cache is not None:
            captions = ["" if d else c for c, d in zip(batch["captions"], dropped.tolist())]
            *text, mask = self.text_cache(captions, ids.device)
        else:
            with torch.set_grad_enabled(self.cfg.train_text_encoder):
                text = text_encoder(ids, mask, return_dict=False)
        return (*text, mask), dropped

    def _cached_text(self, batch: dict, generator: torch.Generator):
        """The same from the latent cache's text outputs: one draw decides the dropped rows, as ``drop_captions``."""
        embeds = batch["embeds"]
        drop = torch.rand(embeds.shape[0], generator=generator, device=generator.device) < self.cfg.cfg_dropout_prob
        drop = drop.to(embeds.device)
        text = tuple(torch.where(drop.view(-1, *[1] * (t.dim() - 1)), null.to(t.device).expand_as(t), t)
                     for t, null in zip((embeds, batch["pooled"], batch["mask"]), self.null_text))
        return text, drop

    def sample_sigmas(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """Noise levels in (0, 1] (``--train_diff``: (0, diff_max_sigma]): the scheme's density, shifted."""
        cfg = self.cfg
        u = noise_level_density(cfg.weighting_scheme, batch, generator, cfg.logit_mean, cfg.logit_std,
                                cfg.mode_scale)
        s = shift_sigmas(u, cfg.timestep_shift)
        return s * cfg.diff_max_sigma if cfg.train_diff else s

    def loss(self, transformer, x0: torch.Tensor, text, generator: torch.Generator) -> tuple[torch.Tensor, dict]:
        """``x0``: normalized latents ``(z - shift) * scale``; ``text``: ``(embeds, pooled, mask)``."""
        noise = torch.randn(x0.shape, generator=generator, device=generator.device).to(x0.device, x0.dtype)
        sigmas = self.sample_sigmas(x0.shape[0], generator).to(x0.device)
        s = sigmas.to(x0.dtype)
        x_t = (1 - s[:, None, None, None]) * x0 + s[:, None, None, None] * noise
        embeds, pooled, mask = text
        velocity = transformer(x_t, embeds, pooled, s * 1000, mask, return_dict=False)[0]
        loss = weighted_mse(velocity, noise - x0, self.cfg.weighting_scheme, sigmas)
        return loss, {"loss/flow": loss.detach(), "flow/mean_sigma": s.mean().detach()}


def flow_latents(vae, x: torch.Tensor, z: torch.Tensor | None, generator: torch.Generator) -> torch.Tensor:
    """Normalized latents ``(z - shift) * scale`` for the flow loss. In joint training they come from the
    VAE being trained, detached: the flow loss never pushes the VAE towards easy-to-model latents."""
    with torch.no_grad():
        if z is None:
            z = vae.encode(x.to(vae.dtype)).latent_dist.sample(generator=generator)
        dtype = x.dtype if x is not None else z.dtype
        return ((z.detach() - (vae.config.shift_factor or 0.0)) * vae.config.scaling_factor).to(dtype)
