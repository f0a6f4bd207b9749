import pytest

import fluxflow
from fluxflow.models import PRESETS, FluxFlowVAE, preset_config


@pytest.mark.parametrize("name", list(PRESETS))
def test_the_models_of_a_preset_fit_together(name):
    vae, tr = preset_config(name, "vae"), preset_config(name, "transformer")
    te, disc = preset_config(name, "text_encoder"), preset_config(name, "discriminator")
    assert tr["in_channels"] == vae["latent_channels"] == disc["context_dim"]
    assert tr["text_embed_dim"] == te["embed_dim"] and tr["pooled_projection_dim"] == te["pooled_dim"]
    assert tr["sample_size"] * 2 ** (len(vae["block_out_channels"]) - 1) == vae["sample_size"]


def test_preset_names_overrides_and_errors():
    assert FluxFlowVAE.from_preset("fluxflow-tiny", latent_channels=8).config.latent_channels == 8
    with pytest.raises(ValueError, match="unknown model preset 'huge'; allowed: 'tiny'"):
        preset_config("huge", "vae")
    preset = preset_config("tiny", "vae")
    preset["latent_channels"] = 99  # a copy: the registry itself is untouched
    assert PRESETS["tiny"]["vae"]["latent_channels"] == 4


def test_public_names_import_lazily():
    assert fluxflow.FluxFlowVAE is FluxFlowVAE
    with pytest.raises(AttributeError):
        fluxflow.NotAThing  # noqa: B018
