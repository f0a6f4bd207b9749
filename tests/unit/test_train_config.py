"""The one schema of fluxflow-train: flags, --config files, precedence and up-front validation."""

import json

import pytest

from fluxflow.training.arguments import build_parser, parse_config
from fluxflow.training.config import TrainConfig
from fluxflow.training.errors import ConfigError

# Every flag of the scheduler reference with the default it states (None where it states none).
REFERENCE_DEFAULTS = {
    "optim_sched_config": None, "data_path": None, "captions_file": None, "n_epochs": 1, "batch_size": 2,
    "lr": 1e-4, "workers": 1, "training_steps": 1, "use_fp16": False, "model_checkpoint": None,
    "preserve_lr": False, "train_vae": False, "gan_training": False, "train_spade": False, "train_diff": False,
    "train_diff_full": False, "kl_beta": 0.0001, "kl_warmup_steps": 5000, "kl_free_bits": 0.0,
    "output_path": "outputs", "log_interval": 10, "checkpoint_save_interval": 50, "samples_per_checkpoint": 1,
    "no_samples": False, "test_image_address": [], "sample_captions": ["A sample caption"],
    "tokenizer_name": "distilbert-base-uncased", "img_size": 1024, "channels": 3, "lambda_adv": 0.5,
}
DIFFUSERS_FLAGS = ["seed", "mixed_precision", "max_train_steps", "gradient_checkpointing",
                   "resume_from_checkpoint", "checkpoints_total_limit", "report_to", "model_preset",
                   "dataset_name", "streaming", "max_train_samples"]


def test_every_reference_flag_has_the_reference_default():
    defaults = TrainConfig()
    for name, value in REFERENCE_DEFAULTS.items():
        assert getattr(defaults, name) == value, name


def test_help_lists_every_flag_with_its_default():
    text = " ".join(build_parser().format_help().split())
    for name in [*REFERENCE_DEFAULTS, *DIFFUSERS_FLAGS]:
        assert f"--{name}" in text, name
    assert "--kl_beta KL_BETA Final KL divergence weight (default: 0.0001)" in text
    assert "(default: ['A sample caption'])" in text and "(default: distilbert-base-uncased)" in text


def test_cli_wins_over_config_file_which_wins_over_defaults(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("training:\n  lr: 1e-4\n  kl_beta: 0.01\nbatch_size: 8\n"
                    "schedulers:\n  vae: {type: LinearLR}\n", encoding="utf-8")
    cfg, optim = parse_config(["--config", str(path), "--lr", "3e-5"])
    assert (cfg.lr, cfg.kl_beta, cfg.batch_size, cfg.n_epochs) == (3e-5, 0.01, 8, 1)
    assert optim.schedulers == {"vae": {"type": "LinearLR"}} and not optim.optimizers


def test_json_config_and_list_flags(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"sample_captions": ["a", "b"], "train_vae": True}), encoding="utf-8")
    cfg, _ = parse_config(["--config", str(path), "--test_image_address", "x.png", "y.png"])
    assert cfg.sample_captions == ["a", "b"] and cfg.train_vae and cfg.test_image_address == ["x.png", "y.png"]


@pytest.mark.parametrize("content,message", [
    ("kl_bta: 0.1\n", "kl_bta is not an option (did you mean 'kl_beta'?)"),
    ("training:\n  lrr: 1e-4\n", "training.lrr is not an option (did you mean 'lr'?)"),
    ("batch_size: eight\n", "batch_size must be an integer, got 'eight'"),
    ("train_vae: 1\n", "train_vae must be true or false"),
    ("sample_captions: a caption\n", "sample_captions must be a list of strings"),
    ("- a\n- b\n", "the top level must be a mapping"),
    ("lr: [1\n", "invalid YAML"),
    ("", "the file is empty"),
])
def test_bad_config_files_are_named(tmp_path, content, message):
    path = tmp_path / "bad.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match="bad.yaml") as err:
        parse_config(["--config", str(path)])
    assert message in str(err.value)


def _problems(tmp_path, *flags):
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    (data / "metadata.jsonl").write_text('{"file_name": "a.png", "text": "a"}\n', encoding="utf-8")
    cfg, _ = parse_config(["--data_path", str(data), *flags])
    with pytest.raises(ConfigError) as err:
        cfg.validate()
    return str(err.value)


@pytest.mark.parametrize("flags,message", [
    ([], "no training mode"),
    (["--train_diff", "--train_diff_full"], "--train_diff and --train_diff_full exclude each other"),
    (["--train_vae", "--use_fp16", "--mixed_precision", "bf16"], "--use_fp16 conflicts with --mixed_precision bf16"),
    (["--train_vae", "--batch_size", "0"], "--batch_size must be >= 1, got 0"),
    (["--train_vae", "--kl_beta", "-1"], "--kl_beta must be >= 0, got -1"),
    (["--train_vae", "--lr", "0"], "--lr must be > 0"),
    (["--train_vae", "--training_steps", "0"], "--training_steps must be >= 1"),
    (["--train_vae", "--test_image_address", "missing.png"], "--test_image_address 'missing.png' is not a file"),
    (["--train_vae", "--optim_sched_config", "nope.json"], "--optim_sched_config 'nope.json' is not a file"),
    (["--train_vae", "--resume_from_checkpoint", "nowhere"], "must be 'latest' or a state/checkpoint-* folder"),
    (["--train_vae", "--model_checkpoint", "nope.safetensors"], "--model_checkpoint 'nope.safetensors' does not"),
    (["--train_vae", "--l1_weight", "0", "--mse_weight", "0"], "has no reconstruction loss"),
    (["--train_vae", "--report_to", "wandb"], "--report_to wandb needs the 'wandb' package: pip install 'fluxflow[wandb]'"),
    (["--train_vae", "--report_to", "tensorbord"], "did you mean"),
    (["--train_vae", "--report_to", "none,tensorboard"], "give tracker names"),
    (["--train_vae", "--validation_split", "1"], "--validation_split must be < 1"),
    (["--train_vae", "--validation_split", "0.1", "--validation_data_path", "."], "exclude each other"),
    (["--train_vae", "--hub_push_checkpoints"], "--hub_push_checkpoints needs --push_to_hub"),
    (["--train_vae", "--early_stop_metric", "psnr"], "give a training loss (loss/vae, loss/flow, ...) or a"),
    (["--train_vae", "--early_stop_metric", "val/vae/psnr"], "is a validation metric: give --validation_split"),
])
def test_invalid_flags_fail_before_anything_is_built(tmp_path, flags, message):
    assert message in _problems(tmp_path, *flags)


def test_missing_data_is_named(tmp_path):
    cfg, _ = parse_config(["--train_vae"])
    with pytest.raises(ConfigError, match="no training data"):
        cfg.validate()


def test_all_problems_are_reported_at_once(tmp_path):
    text = _problems(tmp_path, "--train_vae", "--batch_size", "0", "--kl_beta", "-1")
    assert "2 problems" in text and "--batch_size" in text and "--kl_beta" in text


def test_argparse_rejects_bad_choices_and_types():
    with pytest.raises(SystemExit):
        parse_config(["--mixed_precision", "fp8"])
    with pytest.raises(SystemExit):
        parse_config(["--batch_size", "two"])


def test_docs_flag_table_matches_the_schema():
    from pathlib import Path

    from fluxflow.training.arguments import flags_markdown

    docs = (Path(__file__).parents[2] / "docs" / "TRAINING.md").read_text(encoding="utf-8")
    assert flags_markdown() in docs, "regenerate the table in docs/TRAINING.md from flags_markdown()"


def test_model_size_flags_reach_the_built_models():
    from fluxflow.training.components import build_components

    cfg, _ = parse_config(["--train_diff_full", "--train_vae", "--model_preset", "tiny", "--vae_block_out_channels",
                           "8", "16", "16", "--flow_patch_size", "1", "--flow_num_layers", "1",
                           "--flow_mlp_ratio", "3", "--max_sequence_length", "12"])
    parts = build_components(cfg)
    assert parts.vae.spatial_compression_ratio == 4 and list(parts.vae.config.block_out_channels) == [8, 16, 16]
    assert parts.transformer.config.patch_size == 1 and len(parts.transformer.transformer_blocks) == 1
    assert parts.transformer.config.mlp_ratio == 3.0
    hidden = parts.transformer.config.hidden_size
    assert parts.transformer.transformer_blocks[0].ff.fc2.in_features == 3 * hidden
    assert parts.text_encoder.config.max_length == 12
    assert set(parts.trained()) == {"vae", "flow"}  # the text encoder is frozen by default
    assert not any(p.requires_grad for p in parts.text_encoder.parameters())


def test_a_2_stage_vae_with_few_latent_channels_and_4x4_patches():
    """16x16x4 latents at 32 px read as 4x4 patches: 16 tokens, the token count of an 8x VAE with 2x2 patches."""
    import torch

    from fluxflow.training.components import build_components

    cfg, _ = parse_config(["--train_diff_full", "--train_vae", "--model_preset", "tiny", "--img_size", "32",
                           "--vae_block_out_channels", "8", "16", "--vae_latent_channels", "3",
                           "--flow_patch_size", "4", "--max_sequence_length", "12"])
    parts = build_components(cfg)
    assert parts.vae.config.latent_channels == 3 and parts.vae.spatial_compression_ratio == 2
    assert parts.transformer.config.in_channels == 3 and parts.transformer.x_embedder.in_features == 3 * 16
    latents = parts.vae.encode(torch.randn(2, 3, 32, 32)).latent_dist.mode()
    assert latents.shape == (2, 3, 16, 16)
    text = torch.randn(2, 12, parts.transformer.config.text_embed_dim)
    pooled = torch.randn(2, parts.transformer.config.pooled_projection_dim)
    assert parts.transformer(latents, text, pooled, torch.tensor([500.0, 500.0])).sample.shape == latents.shape


def test_report_to_takes_several_trackers_or_all(tmp_path):
    import importlib.util

    from fluxflow.training.config import TRACKERS

    data = tmp_path / "data"
    data.mkdir()
    (data / "metadata.jsonl").write_text('{"file_name": "a.png", "text": "a"}\n', encoding="utf-8")
    installed = [name for name in TRACKERS if importlib.util.find_spec(name) is not None]
    for value, expected in (("all", installed), ("none", []), ("tensorboard", ["tensorboard"]),
                            ("tensorboard, wandb", ["tensorboard", "wandb"])):
        cfg, _ = parse_config(["--data_path", str(data), "--train_vae", "--report_to", value])
        assert cfg.trackers == expected, value
