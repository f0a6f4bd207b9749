"""The VAE/GAN objective: the forward that DDP synchronises, the generator and discriminator losses, and the
micro-step that runs them."""

from __future__ import annotations

import torch
import torch.nn as nn
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

from .config import TrainConfig
from .losses import hinge_d_loss, hinge_g_loss, kl_loss, kl_per_channel, kl_weight, reconstruction_loss


class VAEForward(nn.Module):
    """Wraps the VAE so that one ``forward`` (the call DDP synchronises) returns the reconstruction, the
    posterior's mean and log-variance, and the sampled latent. Calling ``vae.encode`` on an unwrapped model
    would skip DDP's gradient sync."""

    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor, use_context: bool, generator: torch.Generator | None = None):
        moments = self.vae.compressor(x)
        posterior = DiagonalGaussianDistribution(moments)
        z = posterior.sample(generator=generator)
        recon = self.vae.decode(z, use_context=use_context).sample
        return recon, posterior.mean, posterior.logvar, z


class VAEObjective:
    """The reference's VAE modes as losses.

    ``--train_vae``: ``l1 * L1 + mse * MSE + kl_weight(step) * KL`` (+ ``lambda_adv * hinge_G`` with GAN);
    ``--gan_training`` alone: ``lambda_adv * hinge_G`` only; ``--train_spade`` alone: reconstruction only (the
    encoder is frozen, so KL cannot change). The discriminator sees detached reconstructions.

    ``--disc_start N`` (diffusers' ``train_autoencoderkl.py``): during the first N optimizer steps the GAN
    rests: neither the discriminator's hinge loss nor the generator's adversarial term is computed (both
    logged as 0), so the discriminator gets no gradient; from optimizer step N + 1 on (``global_step >= N``)
    both count. The KL warm-up counts optimizer steps from 0 either way.
    """

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.reconstruct = cfg.train_vae or (cfg.train_spade and not cfg.gan_training)

    def gan_rests(self, step: int) -> bool:
        """Whether the GAN sits out the optimizer step that follows ``step`` completed ones
        (``step < --disc_start``)."""
        return self.cfg.gan_training and step < self.cfg.disc_start

    def resting(self, step: int) -> frozenset[str]:
        """The components whose optimizers must not step after ``step`` completed optimizer steps: the
        discriminator while the GAN rests. It has no gradient then; the trainer's ``_optimizer_step`` skips
        it, so that no weight decay moves it and fp16's grad scaler never sees an optimizer without
        gradients."""
        return frozenset({"discriminator"}) if self.gan_rests(step) else frozenset()

    def micro_step(self, accelerator, models, batch: dict, progress) -> tuple[dict, torch.Tensor]:
        """Forward, losses and backward of one micro-batch (the generator's, then the discriminator's); returns
        the logs and the sampled latents (joint training hands them to the flow objective)."""
        x = batch["pixel_values"]
        recon, mean, logvar, z = models.vae(x, use_context=self.cfg.train_spade, generator=progress.noise)
        disc, step = models.unwrapped("discriminator"), progress.global_step
        resting = disc is not None and self.gan_rests(step)
        loss, logs = self.generator_loss(x, recon, mean, logvar, step, None if resting else disc)
        accelerator.backward(loss)
        if resting:
            logs.update({"loss/generator_adv": torch.zeros(()), "loss/discriminator": torch.zeros(())})
        elif disc is not None:
            d_loss, d_logs = self.discriminator_loss(models.discriminator, x, recon, mean)
            accelerator.backward(d_loss)
            logs.update(d_logs)
        return logs, z

    def generator_loss(self, x, recon, mean, logvar, step: int, discriminator=None) -> tuple[torch.Tensor, dict]:
        cfg, logs = self.cfg, {}
        loss = recon.new_zeros(())
        if self.reconstruct:
            rec = reconstruction_loss(recon, x, cfg.l1_weight, cfg.mse_weight)
            loss = loss + rec
            logs["loss/reconstruction"] = rec.detach()
        if cfg.train_vae:
            weight = kl_weight(step, cfg.kl_beta, cfg.kl_warmup_steps)
            kl = kl_loss(mean, logvar, cfg.kl_free_bits)
            loss = loss + weight * kl
            logs.update({"loss/kl": kl.detach(), "kl_weight": torch.tensor(weight),
                         "kl/raw_nats": kl_per_channel(mean, logvar).mean().detach()})
        if discriminator is not None:
            adv = hinge_g_loss(frozen_call(discriminator, recon, context_of(mean)))
            loss = loss + cfg.lambda_adv * adv
            logs["loss/generator_adv"] = adv.detach()
        logs["loss/vae"] = loss.detach()
        return loss, logs

    @staticmethod
    def discriminator_loss(discriminator, x, recon, mean) -> tuple[torch.Tensor, dict]:
        """Hinge loss on real images and detached reconstructions, in one forward (one DDP sync)."""
        context = context_of(mean)
        logits = discriminator(torch.cat([x, recon.detach()]), context=torch.cat([context, context])).logits
        real, fake = logits.chunk(2)
        loss = hinge_d_loss(real, fake)
        return loss, {"loss/discriminator": loss.detach(), "d/real_logit": real.mean().detach(),
                      "d/fake_logit": fake.mean().detach()}


def context_of(mean: torch.Tensor) -> torch.Tensor:
    """The discriminator's conditioning vector: the image's latent mean, pooled over space, detached."""
    return mean.detach().mean(dim=(2, 3))


def frozen_call(discriminator, image: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    """Discriminator logits with its parameters detached: gradients reach ``image`` (the generator) but
    never the discriminator, whose own step comes separately. No power iteration runs (eval mode).

    With gradient checkpointing the whole frozen call is one checkpointed region, so that its recomputation
    (in backward, after this function has returned) runs with the detached parameters and in eval mode too.
    The discriminator's per-block checkpoints would recompute outside that scope, with the real parameters,
    which save more tensors for backward (spectral norm's sigma) than the forward did: ``CheckpointError``."""
    if getattr(discriminator, "gradient_checkpointing", False) and torch.is_grad_enabled():
        return discriminator._gradient_checkpointing_func(_frozen_logits, discriminator, image, context)
    return _frozen_logits(discriminator, image, context)


def _frozen_logits(discriminator, image: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    params = {name: p.detach() for name, p in discriminator.named_parameters()}
    was_training = discriminator.training
    checkpointing = getattr(discriminator, "gradient_checkpointing", False)
    discriminator.eval()
    if checkpointing:
        discriminator.gradient_checkpointing = False  # frozen_call checkpoints the whole call instead
    try:
        out = torch.func.functional_call(discriminator, params, (image,), {"context": context})
    finally:
        discriminator.train(was_training)
        if checkpointing:
            discriminator.gradient_checkpointing = True
    return out.logits
