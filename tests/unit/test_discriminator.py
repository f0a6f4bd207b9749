import pytest
import torch
from torch.nn.utils import parametrize

from fluxflow.models import PatchDiscriminator


def test_patch_logits_shape():
    d = PatchDiscriminator(block_out_channels=(8, 16, 32))
    assert d(torch.randn(2, 3, 64, 48)).logits.shape == (2, 1, 8, 6)


def test_projection_conditioning_changes_every_patch():
    d = PatchDiscriminator(block_out_channels=(8, 16), context_dim=4).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        a = d(x, context=torch.zeros(1, 4)).logits
        b = d(x, context=torch.ones(1, 4)).logits
        plain = d(x).logits
    assert torch.equal(a, plain)  # a zero context adds nothing (the projection has no bias)
    assert ((a - b).abs() > 0).all()


def test_context_without_context_dim_is_an_error():
    with pytest.raises(ValueError, match="context_dim=0"):
        PatchDiscriminator(block_out_channels=(8,))(torch.randn(1, 3, 8, 8), context=torch.ones(1, 4))


def test_spectral_norm_bounds_every_layer_and_iterates_once_per_training_forward():
    d = PatchDiscriminator(block_out_channels=(8, 16), context_dim=4)
    layers = [m for m in d.modules() if parametrize.is_parametrized(m, "weight")]
    assert len(layers) == 1 + 2 * 2 + 1 + 1
    u = layers[0].parametrizations.weight[0]._u.clone()
    d.eval()(torch.randn(1, 3, 16, 16))
    assert torch.equal(u, layers[0].parametrizations.weight[0]._u)  # eval: no power iteration
    d.train()
    for _ in range(30):
        d(torch.randn(1, 3, 16, 16))
    assert not torch.equal(u, layers[0].parametrizations.weight[0]._u)
    for m in layers:
        sigma = torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2)
        assert sigma == pytest.approx(1.0, abs=0.05)


def test_hinge_training_separates_real_from_fake():
    d = PatchDiscriminator(block_out_channels=(8, 16))
    real, fake = torch.rand(4, 3, 16, 16), -torch.rand(4, 3, 16, 16)
    opt = torch.optim.Adam(d.parameters(), lr=1e-3)
    for _ in range(20):
        loss = torch.relu(1 - d(real).logits).mean() + torch.relu(1 + d(fake).logits).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        assert d.eval()(real).logits.mean() > d(fake).logits.mean()
