import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from fluxflow.training.config import TrainConfig
from fluxflow.training.flow_objective import FlowObjective, drop_captions, shift_sigmas


def _tokens(n):
    ids = torch.arange(n * 5).reshape(n, 5) + 100
    return ids, torch.ones(n, 5, dtype=torch.long), torch.tensor([[101, 102, 0, 0, 0]]), torch.tensor([[1, 1, 0, 0, 0]])


@pytest.mark.parametrize("prob", [0.0, 0.1, 0.5, 1.0])
def test_caption_dropout_replaces_the_condition_at_the_configured_rate(prob):
    ids, mask, null_ids, null_mask = _tokens(20000)
    out_ids, out_mask, dropped = drop_captions(ids, mask, null_ids, null_mask, prob, torch.Generator().manual_seed(0))
    rate = dropped.float().mean().item()
    assert abs(rate - prob) <= 4 * (prob * (1 - prob) / 20000) ** 0.5 + 1e-9  # within 4 standard deviations
    assert torch.equal(out_ids[dropped], null_ids.expand(int(dropped.sum()), -1))
    assert torch.equal(out_mask[dropped], null_mask.expand(int(dropped.sum()), -1))
    assert torch.equal(out_ids[~dropped], ids[~dropped]) and torch.equal(out_mask[~dropped], mask[~dropped])


def test_shift_matches_the_sampling_scheduler():
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    u = torch.tensor([0.9, 0.5, 0.1])
    scheduler.set_timesteps(sigmas=u.tolist())
    torch.testing.assert_close(scheduler.sigmas[:3], shift_sigmas(u, 3.0))


def test_partial_schedule_stays_below_diff_max_sigma_and_full_covers_the_range():
    gen = torch.Generator().manual_seed(0)
    partial = FlowObjective(TrainConfig(train_diff=True, diff_max_sigma=0.3)).sample_sigmas(5000, gen)
    full = FlowObjective(TrainConfig(train_diff_full=True)).sample_sigmas(5000, gen)
    assert partial.max() <= 0.3 and partial.min() > 0
    assert full.max() > 0.9 and full.min() < 0.1 and 0.45 < full.mean() < 0.55  # logit-normal(0, 1)


def test_velocity_target_is_noise_minus_data():
    """A model that returns exactly noise - x0 has zero loss: the objective uses the diffusers direction."""
    x0 = torch.randn(4, 4, 8, 8)

    def oracle(x_t, embeds, pooled, timestep, mask, return_dict=False):
        s = (timestep / 1000)[:, None, None, None]
        return ((x_t - x0) / s,)  # x_t - x0 = s (noise - x0)  =>  v = (x_t - x0) / s

    objective = FlowObjective(TrainConfig(train_diff_full=True))
    loss, _ = objective.loss(oracle, x0, (None, None, None), torch.Generator().manual_seed(1))
    assert loss.item() < 1e-8
    wrong, _ = objective.loss(lambda *a, **k: (-oracle(*a)[0],), x0, (None, None, None), torch.Generator())
    assert wrong.item() > 1.0


def test_text_cache_encodes_each_caption_once_and_matches_direct_encoding():
    from pipeline_cases import MINILM
    from transformers import AutoTokenizer

    from fluxflow.models import FluxFlowTextEncoder
    from fluxflow.pipelines import tokenize_prompts
    from fluxflow.training.flow_objective import TextEmbeddingCache

    encoder = FluxFlowTextEncoder.from_preset("tiny").eval()
    tokenizer = AutoTokenizer.from_pretrained(MINILM)
    calls = []
    encoder.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[0]))
    cache = TextEmbeddingCache(encoder, tokenizer, 16)
    embeds, pooled, mask = cache(["a red circle", "", "a red circle"], "cpu")
    cache(["", "a blue star"], "cpu")
    assert calls == [1, 1, 1] and embeds.shape == (3, 16, 32) and pooled.shape == (3, 32)
    tokens = tokenize_prompts(tokenizer, ["a red circle"], 16)
    direct = encoder(tokens.input_ids, tokens.attention_mask)
    torch.testing.assert_close(embeds[0], direct.last_hidden_state[0])
    assert torch.equal(embeds[0], embeds[2]) and torch.equal(mask[0], tokens.attention_mask[0])
