"""VAE design options that keep saved models computing as before: ``layers_per_block`` per stage, the
memory-lean SPADE (same outputs and gradients, less kept for backward) and the in-place residual sum."""

from __future__ import annotations

import pytest
import torch
from model_cases import perturb_

from fluxflow.models import FluxFlowVAE
from fluxflow.models.spade import SPADE
from fluxflow.models.spade import LeanSPADE
from fluxflow.models.vae_blocks import Downsample, ResnetBlock, Upsample

SMALL = dict(block_out_channels=(8, 16, 16, 16), latent_channels=4, attention_head_dim=8, spade_hidden_channels=8)


def _blocks_per_stage(blocks, resample) -> list[int]:
    counts = [0]
    for block in blocks:
        if isinstance(block, resample):
            counts.append(0)
        else:
            assert isinstance(block, ResnetBlock)
            counts[-1] += 1
    return counts


def _seeded(**config) -> FluxFlowVAE:
    torch.manual_seed(0)
    return perturb_(FluxFlowVAE(**SMALL, **config))


def test_an_int_and_the_same_count_per_stage_build_the_same_model():
    plain, listed = _seeded(layers_per_block=1), _seeded(layers_per_block=(1, 1, 1, 1))
    assert plain.state_dict().keys() == listed.state_dict().keys()
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        assert torch.equal(plain(x).sample, listed(x).sample)


def test_counts_per_stage_put_depth_at_low_resolution(tmp_path):
    vae = _seeded(layers_per_block=(0, 1, 2, 2))
    assert _blocks_per_stage(vae.compressor.down_blocks, Downsample) == [0, 1, 2, 2]
    assert _blocks_per_stage(vae.expander.up_blocks, Upsample) == [3, 3, 2, 1]  # lowest resolution first
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    vae.save_pretrained(tmp_path)
    loaded = FluxFlowVAE.from_pretrained(tmp_path)
    assert list(loaded.config.layers_per_block) == [0, 1, 2, 2]
    with torch.no_grad():
        assert torch.equal(vae(x).sample, loaded(x).sample)
        assert vae(x).sample.shape == x.shape


@pytest.mark.parametrize("layers", [0, -1, (1, 1, 1), (1, -1, 1, 1), (1, 1.5, 1, 1), True])
def test_bad_layer_counts_are_named(layers):
    with pytest.raises(ValueError, match="layers_per_block"):
        FluxFlowVAE(**SMALL, layers_per_block=layers)


def _spade_step(module, x, context, x_grad: bool):
    x = x.clone().requires_grad_(x_grad)
    context = context.clone().requires_grad_()
    module.zero_grad(set_to_none=True)
    out = module(x, context)
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).square().sum().backward()
    grads = {n: p.grad for n, p in module.named_parameters()}
    return out.detach(), x.grad, context.grad, grads


@pytest.mark.parametrize("context_size", [4, 16])
@pytest.mark.parametrize("x_grad", [True, False], ids=["all", "spade_only"])
def test_lean_spade_gives_spade_outputs_and_gradients_exactly(context_size, x_grad):
    torch.manual_seed(0)
    ref = perturb_(SPADE(16, 4, 8), scale=0.2)
    lean = LeanSPADE(16, 4, 8)
    lean.load_state_dict(ref.state_dict())
    x, context = torch.randn(2, 16, 16, 16), torch.randn(2, 4, context_size, context_size)
    expected, actual = _spade_step(ref, x, context, x_grad), _spade_step(lean, x, context, x_grad)
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)


def test_lean_spade_keeps_only_its_input_for_backward():
    def saved_bytes(module, x, context):
        sizes = []

        def pack(t):
            sizes.append(t.numel() * t.element_size())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            module(x, context)
        params = {p.numel() * p.element_size() for p in module.parameters()}
        return sum(s for s in sizes if s not in params)

    x, context = torch.randn(2, 16, 32, 32, requires_grad=True), torch.randn(2, 4, 4, 4)
    lean, ref = saved_bytes(LeanSPADE(16, 4, 8), x, context), saved_bytes(SPADE(16, 4, 8), x, context)
    input_bytes = x.numel() * x.element_size()
    assert input_bytes <= lean < 1.1 * input_bytes and ref > 3.5 * input_bytes


def test_lean_spade_second_derivatives():
    torch.manual_seed(0)
    lean = perturb_(LeanSPADE(4, 3, 4).double(), scale=0.2)
    x = torch.randn(2, 4, 4, 4, dtype=torch.float64, requires_grad=True)
    context = torch.randn(2, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, c: lean(a, c), (x, context))
    assert torch.autograd.gradgradcheck(lambda a, c: lean(a, c), (x, context))


@pytest.mark.parametrize("context_channels", [0, 4])
def test_resnet_block_sums_as_before(context_channels):
    torch.manual_seed(0)
    block = perturb_(ResnetBlock(8, 16, "silu", context_channels, 8))
    x, context = torch.randn(2, 8, 8, 8), torch.randn(2, 4, 2, 2)
    args = (context,) if context_channels else ()
    h = block.norm1(x, *args) if context_channels else block.norm1(x)
    with torch.no_grad():
        expected = block.skip(x) + block.conv2(block.act(block.norm2(block.conv1(h))))
        assert torch.equal(block(x, *args), expected)
