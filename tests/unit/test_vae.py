import pytest
import torch
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from diffusers.models.modeling_outputs import AutoencoderKLOutput
from model_cases import perturb_

from fluxflow.models import BezierActivation, FluxFlowVAE
from fluxflow.models.spade import SPADE

SMALL = dict(block_out_channels=(8, 16, 16, 16), latent_channels=16, attention_head_dim=8, spade_hidden_channels=8)


def test_default_is_8x_with_16_latent_channels_and_diffusers_outputs():
    vae = FluxFlowVAE(**SMALL)
    assert FluxFlowVAE().config.latent_channels == 16 and vae.spatial_compression_ratio == 8
    out = vae.encode(torch.randn(2, 3, 32, 48))
    assert isinstance(out, AutoencoderKLOutput) and isinstance(out.latent_dist, DiagonalGaussianDistribution)
    z = out.latent_dist.sample()
    assert z.shape == (2, 16, 4, 6)
    assert vae.decode(z).sample.shape == (2, 3, 32, 48)
    assert vae(torch.randn(1, 3, 16, 16)).sample.shape == (1, 3, 16, 16)


def test_downsampling_factor_and_latent_channels_are_configurable():
    vae = FluxFlowVAE(block_out_channels=(8, 16, 16), latent_channels=4, attention_head_dim=8)
    assert vae.spatial_compression_ratio == 4
    assert vae.encode(torch.randn(1, 3, 32, 32)).latent_dist.mode().shape == (1, 4, 8, 8)


def test_scaling_and_shift_factor_live_in_the_config(tmp_path):
    vae = FluxFlowVAE(**SMALL, scaling_factor=0.6, shift_factor=0.1)
    vae.save_pretrained(tmp_path)
    loaded = FluxFlowVAE.from_pretrained(tmp_path)
    assert (loaded.config.scaling_factor, loaded.config.shift_factor) == (0.6, 0.1)


def test_spade_conditions_the_expander_on_the_latent():
    vae = FluxFlowVAE(**SMALL).eval()
    z = torch.randn(1, 16, 4, 4)
    with torch.no_grad():
        # fresh SPADE heads are zero: with and without context decode identically
        assert torch.equal(vae.decode(z, use_context=True).sample, vae.decode(z, use_context=False).sample)
        perturb_(vae)
        with_ctx, without = vae.decode(z, use_context=True).sample, vae.decode(z, use_context=False).sample
    assert (with_ctx - without).abs().max() > 1e-3
    assert sum(isinstance(m, SPADE) for m in vae.expander.modules()) >= 4
    assert not any(isinstance(m, SPADE) for m in vae.compressor.modules())


def test_without_spade_use_context_is_a_no_op():
    vae = perturb_(FluxFlowVAE(**SMALL, use_spade=False)).eval()
    assert not any(isinstance(m, SPADE) for m in vae.modules())
    z = torch.randn(1, 16, 2, 2)
    with torch.no_grad():
        assert torch.equal(vae.decode(z, use_context=True).sample, vae.decode(z, use_context=False).sample)


@pytest.mark.parametrize("activation,bezier_modules", [("bezier", True), ("silu", False), ("gelu", False)])
def test_activation_is_selectable(activation, bezier_modules):
    vae = FluxFlowVAE(**SMALL, activation=activation)
    assert any(isinstance(m, BezierActivation) for m in vae.modules()) == bezier_modules
    assert vae(torch.randn(1, 3, 16, 16)).sample.isfinite().all()


def test_no_transposed_convolutions():
    vae = FluxFlowVAE.from_preset("tiny")
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in vae.modules())


def test_sampling_the_posterior_follows_the_generator():
    vae = FluxFlowVAE(**SMALL).eval()
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        a = vae(x, sample_posterior=True, generator=torch.Generator().manual_seed(1)).sample
        b = vae(x, sample_posterior=True, generator=torch.Generator().manual_seed(1)).sample
        c = vae(x, sample_posterior=True, generator=torch.Generator().manual_seed(2)).sample
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_bad_inputs_are_named():
    vae = FluxFlowVAE(**SMALL)
    with pytest.raises(ValueError, match="multiples of 8"):
        vae.encode(torch.randn(1, 3, 20, 16))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        vae.encode(torch.randn(1, 1, 16, 16))
    with pytest.raises(ValueError, match="latents"):
        vae.decode(torch.randn(1, 4, 2, 2))
    with pytest.raises(ValueError, match="allowed: bezier, silu, gelu"):
        FluxFlowVAE(**SMALL, activation="relu6")


def test_autoencoder_learns_to_reconstruct():
    """A few optimizer steps on one batch reduce the reconstruction error: the gradients are useful."""
    vae = FluxFlowVAE(**SMALL)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    opt = torch.optim.Adam(vae.parameters(), lr=2e-3)
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.mse_loss(vae(x).sample, x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
