"""What every FluxFlow model must do as a diffusers model: round trips, dtype loading, variants,
gradient checkpointing and batch independence."""

import copy
import json

import pytest
import torch
from model_cases import CASES, build, outputs, select

NAMES = list(CASES)


def _public_config(model) -> dict:
    return {k: v for k, v in json.loads(model.to_json_string()).items() if not k.startswith("_")}


@pytest.mark.parametrize("name", NAMES)
def test_save_load_gives_bit_identical_outputs(name, tmp_path):
    model, make_inputs = build(name)
    model.eval()
    args, kwargs = make_inputs(2)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "config.json").exists() and (tmp_path / "diffusion_pytorch_model.safetensors").exists()
    loaded = type(model).from_pretrained(tmp_path).eval()
    assert _public_config(loaded) == _public_config(model)
    with torch.no_grad():
        for a, b in zip(outputs(model, args, kwargs), outputs(loaded, args, kwargs), strict=True):
            assert torch.equal(a, b)


@pytest.mark.parametrize("name", NAMES)
def test_dtype_loading_and_fp16_variant(name, tmp_path):
    model, _ = build(name)
    model.save_pretrained(tmp_path)
    model.save_pretrained(tmp_path, variant="fp16")
    assert (tmp_path / "diffusion_pytorch_model.fp16.safetensors").exists()
    fp16 = type(model).from_pretrained(tmp_path, dtype=torch.float16)
    assert {p.dtype for p in fp16.parameters()} == {torch.float16}
    variant = type(model).from_pretrained(tmp_path, variant="fp16", dtype=torch.float16)
    ref = {k: v.half() for k, v in model.state_dict().items() if v.is_floating_point()}
    for k, v in variant.state_dict().items():
        if k in ref:
            assert v.dtype == torch.float16 and torch.equal(v, ref[k]), k


@pytest.mark.parametrize("name", NAMES)
def test_gradient_checkpointing_keeps_outputs_and_gradients(name):
    plain, make_inputs = build(name)
    plain.train()
    ckpt = copy.deepcopy(plain)
    ckpt.enable_gradient_checkpointing()
    assert any(getattr(m, "gradient_checkpointing", False) for m in ckpt.modules())
    args, kwargs = make_inputs(2)
    results = []
    for model in (plain, ckpt):
        outs = outputs(model, args, kwargs)
        loss = sum((o.float() ** 2).mean() for o in outs)
        grads = torch.autograd.grad(loss, [p for p in model.parameters() if p.requires_grad], allow_unused=True)
        results.append((outs, grads))
    (outs_a, grads_a), (outs_b, grads_b) = results
    for a, b in zip(outs_a, outs_b, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert sum(g is not None for g in grads_a) > 0
    for a, b in zip(grads_a, grads_b, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_gradient_checkpointing_actually_recomputes(name):
    """With checkpointing on, the blocks run a second time during backward (counted with forward hooks)."""
    model, make_inputs = build(name)
    model.train()
    model.enable_gradient_checkpointing()
    calls = []
    blocks = [m for m in model.modules() if type(m).__name__ in
              {"ResnetBlock", "FluxFlowTransformerBlock", "BertLayer", "DiscriminatorBlock"}]
    assert blocks
    # hook a layer inside the block (the recompute may call the block's forward directly, and stops early)
    first_layer = next(m for m in blocks[0].modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)))
    first_layer.register_forward_pre_hook(lambda *a: calls.append(1))
    args, kwargs = make_inputs(1)
    sum(o.sum() for o in outputs(model, args, kwargs)).backward()
    assert len(calls) == 2


@pytest.mark.parametrize("name", NAMES)
def test_batch_of_two_equals_two_batches_of_one(name):
    model, make_inputs = build(name)
    model.eval()
    args, kwargs = make_inputs(2)
    with torch.no_grad():
        both = outputs(model, args, kwargs)
        singles = [outputs(model, *select(args, kwargs, i)) for i in range(2)]
    for j, out in enumerate(both):
        torch.testing.assert_close(out, torch.cat([s[j] for s in singles]), rtol=1e-5, atol=1e-5)
