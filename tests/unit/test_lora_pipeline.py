"""FluxFlowPipeline's LoRA surface (diffusers' loader mixin over peft): load, scale, mix, fuse and unfuse."""

import pytest
import torch
from safetensors import safe_open

from fluxflow.training.lora import LORA_TARGETS, add_lora, save_lora
from pipeline_cases import tiny_pipeline

pytest.importorskip("peft", reason="LoRA needs peft (pip install 'fluxflow[lora]')")


def _adapter_file(tmp_path, name: str, seed: int, rank: int = 4, alpha: float = 8.0):
    """A LoRA of the tiny pipeline's flow processor with random (non-zero) B matrices, saved as training does."""
    transformer = tiny_pipeline().transformer
    add_lora(transformer, rank, alpha, list(LORA_TARGETS))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, param in transformer.named_parameters():
            if "lora_B" in key:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.2)
    return save_lora(tmp_path / f"{name}.safetensors", transformer)


def _image(pipe, seed: int = 0) -> torch.Tensor:
    return pipe("a red circle", num_inference_steps=2, guidance_scale=1.0, output_type="pt",
                generator=torch.Generator().manual_seed(seed)).images


def test_the_file_holds_only_adapter_tensors_and_its_config(tmp_path):
    path = _adapter_file(tmp_path, "a", seed=1, rank=4, alpha=8.0)
    with safe_open(str(path), "pt") as f:
        keys, metadata = list(f.keys()), f.metadata()
    assert keys and all(k.startswith("transformer.") and (".lora_A." in k or ".lora_B." in k) for k in keys)
    n_layers = tiny_pipeline().transformer.config.num_layers
    assert len(keys) == 2 * n_layers * 10  # per block: 4 + 4 attention projections, 2 MLP ones; A and B each
    assert '"transformer.lora_alpha": 8' in metadata["lora_adapter_metadata"]


def test_a_loaded_adapter_changes_the_images_and_scale_zero_gives_the_base(tmp_path):
    path = _adapter_file(tmp_path, "a", seed=1)
    pipe = tiny_pipeline()
    base = _image(pipe)
    pipe.load_lora_weights(str(path), adapter_name="a")
    assert not torch.allclose(_image(pipe), base, atol=1e-4)
    pipe.set_adapters(["a"], [0.0])
    assert torch.allclose(_image(pipe), base, atol=1e-6)


def test_fuse_then_unfuse_gives_back_the_base_weights_and_images(tmp_path):
    path = _adapter_file(tmp_path, "a", seed=1)
    pipe = tiny_pipeline()
    pipe.load_lora_weights(str(path), adapter_name="a")
    with_adapter = _image(pipe)
    linear = pipe.transformer.transformer_blocks[0].attn.to_q.base_layer
    before = linear.weight.detach().clone()
    pipe.fuse_lora(lora_scale=1.0)
    assert not torch.equal(linear.weight, before)  # the update is in the weight now
    assert torch.allclose(_image(pipe), with_adapter, atol=1e-5)
    pipe.unfuse_lora()
    assert torch.allclose(linear.weight, before, atol=1e-6)
    pipe.disable_lora()
    assert torch.allclose(_image(pipe), _image(tiny_pipeline()), atol=1e-6)


def test_two_adapters_mix_as_the_sum_of_their_updates(tmp_path):
    """At each adapted layer the update of a mix is the weighted sum of each adapter's update (LoRA is additive)."""
    a, b = _adapter_file(tmp_path, "a", seed=1), _adapter_file(tmp_path, "b", seed=2)
    pipe = tiny_pipeline()
    pipe.load_lora_weights(str(a), adapter_name="a")
    pipe.load_lora_weights(str(b), adapter_name="b")
    layer = pipe.transformer.transformer_blocks[0].ff.fc1
    x = torch.randn(3, layer.in_features, generator=torch.Generator().manual_seed(0))
    base = layer.base_layer(x)

    def update(names, weights):
        pipe.set_adapters(names, weights)
        return layer(x) - base

    only_a, only_b, mixed = update(["a"], [1.0]), update(["b"], [1.0]), update(["a", "b"], [0.7, 0.4])
    assert only_a.abs().max() > 1e-3 and only_b.abs().max() > 1e-3
    assert torch.allclose(mixed, 0.7 * only_a + 0.4 * only_b, atol=1e-5)
    images = {}
    for names, weights in ((["a"], [1.0]), (["b"], [1.0]), (["a", "b"], [0.7, 0.4])):
        pipe.set_adapters(names, weights)
        images[tuple(names)] = _image(pipe)
    assert not torch.allclose(images[("a", "b")], images[("a",)], atol=1e-4)
    assert not torch.allclose(images[("a", "b")], images[("b",)], atol=1e-4)
