"""``--gradient_checkpointing`` with the VAE + GAN step: the same losses and gradients as without it."""

import pytest
import torch

from fluxflow.models import FluxFlowVAE, PatchDiscriminator
from fluxflow.training.config import TrainConfig
from fluxflow.training.vae_objective import VAEForward, VAEObjective


def _vae_gan_step(checkpointing: bool, train_vae: bool, train_spade: bool):
    """One micro-batch as ``VAEObjective.micro_step`` runs it: generator loss (the discriminator frozen) and its
    backward, then the discriminator's hinge loss on the detached reconstruction and its backward."""
    torch.manual_seed(0)
    vae = FluxFlowVAE.from_preset("tiny")
    disc = PatchDiscriminator.from_preset("tiny")
    if checkpointing:
        vae.enable_gradient_checkpointing()
        disc.enable_gradient_checkpointing()
    vae.train(), disc.train()
    objective = VAEObjective(TrainConfig(train_vae=train_vae, gan_training=True, train_spade=train_spade,
                                         kl_warmup_steps=0))
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    noise = torch.Generator().manual_seed(2)
    recon, mean, logvar, _ = VAEForward(vae)(x, use_context=train_spade, generator=noise)
    g_loss, _ = objective.generator_loss(x, recon, mean, logvar, step=10, discriminator=disc)
    g_loss.backward()
    assert all(p.grad is None for p in disc.parameters())  # no generator gradient reaches the discriminator
    d_loss, _ = objective.discriminator_loss(disc, x, recon, mean)
    d_loss.backward()
    assert disc.gradient_checkpointing == checkpointing and disc.training  # frozen_call restores both
    grads = {f"vae.{n}": p.grad for n, p in vae.named_parameters() if p.grad is not None}
    grads.update({f"disc.{n}": p.grad for n, p in disc.named_parameters()})
    buffers = {f"disc.{n}": b.clone() for n, b in disc.named_buffers()}  # spectral norm's power iteration
    return g_loss.detach(), d_loss.detach(), grads, buffers


@pytest.mark.parametrize("train_vae, train_spade", [(True, False), (False, False), (True, True)],
                         ids=["vae_gan", "gan_only", "vae_gan_spade"])
def test_vae_gan_step_gives_the_same_losses_and_gradients_with_checkpointing(train_vae, train_spade):
    plain = _vae_gan_step(False, train_vae, train_spade)
    checkpointed = _vae_gan_step(True, train_vae, train_spade)
    assert plain[2] and set(plain[2]) == set(checkpointed[2])
    torch.testing.assert_close(checkpointed, plain, rtol=1e-5, atol=1e-6)
