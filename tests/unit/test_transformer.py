import pytest
import torch
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from model_cases import perturb_

from fluxflow.models import BezierActivation, FluxFlowTransformer
from fluxflow.models.transformer import patchify, unpatchify


def _inputs(h=8, w=8, batch=2, channels=4):
    mask = torch.ones(batch, 6, dtype=torch.long)
    mask[-1, 3:] = 0
    return (torch.randn(batch, channels, h, w), torch.randn(batch, 6, 32), torch.randn(batch, 32),
            torch.full((batch,), 400.0)), mask


def test_fresh_model_predicts_zero_velocity_adaln_zero():
    model = FluxFlowTransformer.from_preset("tiny")
    args, mask = _inputs()
    out = model(*args, encoder_attention_mask=mask)
    assert isinstance(out, Transformer2DModelOutput) and torch.equal(out.sample, torch.zeros_like(args[0]))


@pytest.mark.parametrize("patch_size", [1, 2, 4])
@pytest.mark.parametrize("hw", [(8, 8), (4, 12), (12, 8)])
def test_output_has_the_latent_shape(patch_size, hw):
    model = FluxFlowTransformer.from_preset("tiny", patch_size=patch_size)
    args, mask = _inputs(*hw)
    assert model(*args, encoder_attention_mask=mask).sample.shape == args[0].shape


def test_patchify_round_trip():
    x = torch.randn(2, 4, 6, 10)
    tokens = patchify(x, 2)
    assert tokens.shape == (2, 15, 16)
    assert torch.equal(unpatchify(tokens, 2, 3, 5), x)
    x = torch.randn(2, 4, 8, 12)
    tokens = patchify(x, 4)
    assert tokens.shape == (2, 6, 64)
    assert torch.equal(tokens[0, 1], x[0, :, 0:4, 4:8].reshape(-1))  # channel-major, as with 2x2
    assert torch.equal(unpatchify(tokens, 4, 2, 3), x)


def test_padding_tokens_never_matter():
    model = perturb_(FluxFlowTransformer.from_preset("tiny")).eval()
    args, mask = _inputs()
    x, text, pooled, t = args
    changed = text.clone()
    changed[-1, 3:] = torch.randn(3, 32) * 10  # only padded positions of the last sample
    with torch.no_grad():
        a = model(x, text, pooled, t, encoder_attention_mask=mask).sample
        b = model(x, changed, pooled, t, encoder_attention_mask=mask).sample
        c = model(x, changed, pooled, t).sample  # without the mask they do count
    torch.testing.assert_close(a, b)
    assert (a[-1] - c[-1]).abs().max() > 1e-4


def test_every_condition_matters():
    model = perturb_(FluxFlowTransformer.from_preset("tiny")).eval()
    (x, text, pooled, t), mask = _inputs()
    with torch.no_grad():
        base = model(x, text, pooled, t, encoder_attention_mask=mask).sample
        for changed in ((x, text + 1, pooled, t), (x, text, pooled + 1, t), (x, text, pooled, t * 0.1)):
            assert (model(*changed, encoder_attention_mask=mask).sample - base).abs().max() > 1e-4


def test_timestep_is_a_float_noise_level_scalar_or_per_sample():
    model = perturb_(FluxFlowTransformer.from_preset("tiny")).eval()
    (x, text, pooled, _), mask = _inputs()
    with torch.no_grad():
        a = model(x, text, pooled, 123.5, encoder_attention_mask=mask).sample
        b = model(x, text, pooled, torch.tensor([123.5, 123.5]), encoder_attention_mask=mask).sample
        c = model(x, text, pooled, torch.tensor([123.0, 123.0]), encoder_attention_mask=mask).sample
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_rotary_positions_break_permutation_equivariance():
    """Without positions, attention + MLP commute with a transpose of the grid; 2-D RoPE must not."""
    model = perturb_(FluxFlowTransformer.from_preset("tiny", patch_size=1), scale=0.2).eval()
    (x, text, pooled, t), mask = _inputs()
    with torch.no_grad():
        out_t = model(x.transpose(-1, -2), text, pooled, t, encoder_attention_mask=mask).sample
        t_out = model(x, text, pooled, t, encoder_attention_mask=mask).sample.transpose(-1, -2)
    assert (out_t - t_out).abs().max() > 1e-4


@pytest.mark.parametrize("activation", ["bezier", "silu", "gelu"])
def test_activation_is_selectable(activation):
    model = FluxFlowTransformer.from_preset("tiny", activation=activation)
    assert any(isinstance(m, BezierActivation) for m in model.modules()) == (activation == "bezier")


def test_bad_shapes_and_configs_are_named():
    model = FluxFlowTransformer.from_preset("tiny")
    args, mask = _inputs(7, 8)
    with pytest.raises(ValueError, match="multiples of patch_size=2"):
        model(*args, encoder_attention_mask=mask)
    args, _ = _inputs()
    with pytest.raises(ValueError, match="encoder_attention_mask"):
        model(*args, encoder_attention_mask=torch.ones(2, 5))
    with pytest.raises(ValueError, match="divisible by 4"):
        FluxFlowTransformer(hidden_size=30, num_attention_heads=3)
    with pytest.raises(ValueError, match=r"patch_size must be one of \(1, 2, 4\)"):
        FluxFlowTransformer(patch_size=3)


def test_absolute_positions_tell_tokens_where_they_are():
    """Rotary embedding alone is blind to where a token is: on a uniform latent every token computes the same.
    ``absolute_pos_embed`` (DiT's sin-cos; on in the presets) makes the same content give different outputs at
    different places."""
    torch.manual_seed(0)
    rope_only = perturb_(FluxFlowTransformer.from_preset("tiny", absolute_pos_embed=False), scale=0.2).eval()
    with_positions = FluxFlowTransformer.from_preset("tiny").eval()
    assert with_positions.config.absolute_pos_embed is True
    with_positions.load_state_dict(rope_only.state_dict())  # no new weights: the embedding is fixed
    args, mask = _inputs()
    uniform = torch.ones_like(args[0])
    with torch.no_grad():
        blind = rope_only(uniform, *args[1:], encoder_attention_mask=mask).sample
        placed = with_positions(uniform, *args[1:], encoder_attention_mask=mask).sample
    # tokens are 2x2 patches: compare patch (0, 0) with patch (3, 3)
    assert torch.allclose(blind[..., 0:2, 0:2], blind[..., 6:8, 6:8], atol=1e-5)
    assert not torch.allclose(placed[..., 0:2, 0:2], placed[..., 6:8, 6:8], atol=1e-3)
    # the scale is fixed when the model is built: an export that records another sample_size changes nothing
    assert with_positions.config.pos_embed_base_size == 8 // 2
    with_positions.register_to_config(sample_size=64)
    with torch.no_grad():
        assert torch.equal(with_positions(uniform, *args[1:], encoder_attention_mask=mask).sample, placed)
    # positions are fractions of the grid: token (3, 3) of 4x4 sits where token (6, 6) of 8x8 does
    small, big = (with_positions.absolute_positions(n, n, uniform) for n in (4, 8))
    assert torch.allclose(small[3 * 4 + 3], big[6 * 8 + 6]) and not torch.allclose(small[3 * 4 + 3], big[3 * 8 + 3])


def test_a_saved_model_without_absolute_positions_loads_as_it_was(tmp_path):
    """Models saved before ``absolute_pos_embed`` existed have no such key: they load with it off."""
    import json

    torch.manual_seed(0)
    old = perturb_(FluxFlowTransformer.from_preset("tiny", absolute_pos_embed=False), scale=0.2).eval()
    old.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text(encoding="utf-8"))
    del config["absolute_pos_embed"]
    (tmp_path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    loaded = FluxFlowTransformer.from_pretrained(tmp_path).eval()
    assert loaded.config.absolute_pos_embed is False
    args, mask = _inputs()
    with torch.no_grad():
        assert torch.equal(loaded(*args, encoder_attention_mask=mask).sample, old(*args, encoder_attention_mask=mask).sample)
