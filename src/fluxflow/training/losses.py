"""VAE and GAN losses: reconstruction, KL with linear warm-up and free bits, hinge losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def reconstruction_loss(recon: torch.Tensor, target: torch.Tensor, l1_weight: float = 1.0,
                        mse_weight: float = 1.0) -> torch.Tensor:
    """``l1_weight * |recon - target| + mse_weight * (recon - target)^2``, each averaged over elements.

    L1 keeps edges sharp, MSE punishes large colour errors; both on images in [-1, 1]."""
    loss = recon.new_zeros(())
    if l1_weight:
        loss = loss + l1_weight * F.l1_loss(recon, target)
    if mse_weight:
        loss = loss + mse_weight * F.mse_loss(recon, target)
    return loss


def kl_per_channel(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(N(mean, exp(logvar)) || N(0, I))`` in nats per latent element, averaged over batch and space: ``[C]``.

    ``logvar`` is clamped to [-30, 20] as in diffusers' ``DiagonalGaussianDistribution``."""
    logvar = logvar.float().clamp(-30.0, 20.0)
    kl = 0.5 * (mean.float().pow(2) + logvar.exp() - 1.0 - logvar)
    return kl.mean(dim=(0, 2, 3))


def kl_loss(mean: torch.Tensor, logvar: torch.Tensor, free_bits: float = 0.0) -> torch.Tensor:
    """Mean over channels of ``max(KL_c, free_bits)``: a channel whose average KL per element is below
    ``free_bits`` nats is not pushed further towards the prior (free bits per channel, Kingma et al. 2016)."""
    kl = kl_per_channel(mean, logvar)
    return torch.clamp(kl, min=free_bits).mean() if free_bits > 0 else kl.mean()


def kl_weight(step: int, kl_beta: float, warmup_steps: int) -> float:
    """Linear warm-up from 0 at step 0 to ``kl_beta`` at ``warmup_steps`` optimizer steps, then constant."""
    if warmup_steps <= 0:
        return kl_beta
    return kl_beta * min(1.0, step / warmup_steps)


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator hinge loss: ``mean(relu(1 - D(real))) + mean(relu(1 + D(fake)))``."""
    return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()


def hinge_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator hinge loss: ``-mean(D(fake))``."""
    return -fake_logits.mean()
