"""Stage 2 on a pretrained diffusers VAE (--pretrained_vae_model_name_or_path): an SD3/Flux-style AutoencoderKL
(random and small here: nothing can be downloaded) from a folder or the Hub stand-in, frozen, through training,
export, the one-file checkpoint and the pipeline; and the flags' checks."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL
from hub_server import hub_env, serve_hub
from pipeline_cases import MINILM, small_autoencoder

from fluxflow import FluxFlowPipeline
from fluxflow.cli.train import main
from fluxflow.datasets.shapes import write_shapes_dataset
from fluxflow.training.arguments import load_config, parse_config
from fluxflow.training.components import build_components
from fluxflow.training.errors import ConfigError
from fluxflow.training.latent_statistics import measure_latent_statistics

SD3_LIKE = {"scaling_factor": 1.5, "shift_factor": 0.06}  # the form of SD3's (1.5305, 0.0609)
FLAG = "--pretrained_vae_model_name_or_path"


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return write_shapes_dataset(tmp_path_factory.mktemp("data") / "shapes", 8, size=32, seed=0) / "train"


def save_vae(folder, stages=2, seed=0, **config):
    torch.manual_seed(seed)
    small_autoencoder(stages, **{**SD3_LIKE, **config}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def vae_folder(tmp_path_factory):
    return save_vae(tmp_path_factory.mktemp("sd3_like_vae"))


def argv(data, out, *flags):
    return ["--data_path", str(data), "--train_diff_full", "--model_preset", "tiny", "--img_size", "32",
            "--batch_size", "2", "--workers", "0", "--max_train_steps", "2", "--seed", "0", "--tokenizer_name", MINILM,
            "--sample_steps", "2", "--output_path", str(out), *flags]


@pytest.fixture(scope="module")
def trained(shapes, vae_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(argv(shapes, out, FLAG, str(vae_folder))) == 0
    return out


def sample(pipe):
    pipe.set_progress_bar_config(disable=True)
    return pipe("a red circle", num_inference_steps=2, height=32, width=32, output_type="np",
                generator=torch.Generator().manual_seed(0)).images


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ---------------------------------------------------------------- training, export, loading
def test_stage_2_exports_a_pipeline_with_the_frozen_pretrained_vae(trained, vae_folder):
    index = json.loads((trained / "pipeline" / "model_index.json").read_text())
    assert index["vae"] == ["diffusers", "AutoencoderKL"]
    pipe = FluxFlowPipeline.from_pretrained(trained / "pipeline")
    original = AutoencoderKL.from_pretrained(vae_folder)
    assert type(pipe.vae) is AutoencoderKL and same_weights(pipe.vae, original)  # frozen
    assert (pipe.vae.config.scaling_factor, pipe.vae.config.shift_factor) == (1.5, 0.06)
    assert pipe.transformer.config.in_channels == 16 and pipe.vae_scale_factor == 2
    assert pipe.transformer.config.sample_size == 16  # 32 px / 2
    images = sample(pipe)
    assert images.shape == (1, 32, 32, 3) and np.isfinite(images).all()
    assert same_weights(AutoencoderKL.from_pretrained(trained / "vae"), original)
    assert (trained / "samples" / "samples_epoch_0002_caption_0-0032.webp").is_file()


def test_the_one_file_checkpoint_carries_the_pretrained_vae(trained):
    single = FluxFlowPipeline.from_pretrained(trained / "checkpoint.safetensors")
    assert type(single.vae) is AutoencoderKL
    assert np.array_equal(sample(single), sample(FluxFlowPipeline.from_pretrained(trained / "pipeline")))


@pytest.mark.parametrize("saved", ["checkpoint.safetensors", "pipeline"])
def test_a_run_continues_from_a_checkpoint_that_holds_a_pretrained_vae(shapes, trained, tmp_path, saved):
    assert main(argv(shapes, tmp_path, "--model_checkpoint", str(trained / saved), "--no_samples")) == 0
    assert type(FluxFlowPipeline.from_pretrained(tmp_path / "pipeline").vae) is AutoencoderKL


def test_the_pretrained_vae_wins_over_a_model_checkpoints_vae(shapes, trained, tmp_path):
    other = save_vae(tmp_path / "other_vae", seed=1)
    assert main(argv(shapes, tmp_path / "out", "--model_checkpoint", str(trained / "checkpoint.safetensors"),
                     FLAG, str(other), "--no_samples", "--max_train_steps", "1")) == 0
    pipe = FluxFlowPipeline.from_pretrained(tmp_path / "out" / "pipeline")
    assert same_weights(pipe.vae, AutoencoderKL.from_pretrained(other))


def test_training_a_checkpoints_pretrained_vae_is_refused(shapes, trained, tmp_path, capsys):
    assert main(argv(shapes, tmp_path, "--model_checkpoint", str(trained / "checkpoint.safetensors"),
                     "--train_vae")) == 2
    assert "FluxFlowVAE" in capsys.readouterr().err


def test_a_vae_without_shift_factor_trains_unshifted(shapes, tmp_path):
    """Needs flow_objective.flow_latents to read a None shift_factor as 0 (diffusers' SD VAEs have none)."""
    folder = save_vae(tmp_path / "sd_like_vae", shift_factor=None)
    assert main(argv(shapes, tmp_path / "out", FLAG, str(folder), "--no_samples")) == 0
    pipe = FluxFlowPipeline.from_pretrained(tmp_path / "out" / "pipeline")
    assert pipe.vae.config.shift_factor is None and np.isfinite(sample(pipe)).all()


# ---------------------------------------------------------------- latent statistics
def test_a_config_without_scaling_factor_asks_for_measured_statistics(vae_folder, tmp_path):
    bare = save_vae(tmp_path / "bare")
    config = json.loads((bare / "config.json").read_text())
    del config["scaling_factor"], config["shift_factor"]
    (bare / "config.json").write_text(json.dumps(config))
    for folder, missing in ((vae_folder, False), (bare, True)):
        cfg, _ = parse_config(["--train_diff_full", "--model_preset", "tiny", FLAG, str(folder)])
        parts = build_components(cfg)
        assert parts.vae_needs_statistics is missing
        assert not any(p.requires_grad for p in parts.vae.parameters()) and not parts.vae.training


def test_measured_statistics_normalise_the_latents(shapes):
    from fluxflow.training.data import CaptionCollator, build_dataset, make_dataloader
    from fluxflow.training.tokenizer import load_tokenizer

    cfg, _ = parse_config(["--data_path", str(shapes), "--img_size", "32", "--train_diff_full"])
    loader = make_dataloader(build_dataset(cfg), 4, 0, CaptionCollator(load_tokenizer(MINILM), 16), seed=0)
    batches = list(loader)
    vae = small_autoencoder()
    shift, scale = measure_latent_statistics(vae, batches, torch.Generator().manual_seed(0))
    z = torch.cat([vae.encode(b["pixel_values"]).latent_dist.sample(generator=g).flatten()
                   for g in [torch.Generator().manual_seed(0)] for b in batches])
    assert abs(((z - shift) * scale).mean().item()) < 1e-4 and abs(((z - shift) * scale).std().item() - 1) < 1e-4
    moments = [{"moments": vae.encode(b["pixel_values"]).latent_dist.parameters} for b in batches]
    assert measure_latent_statistics(vae, moments, torch.Generator().manual_seed(0)) == pytest.approx((shift, scale))


def test_a_run_measures_the_statistics_a_vae_config_lacks(shapes, tmp_path):
    """Needs setup_run to call measure_latent_statistics when ``models.vae_needs_statistics``."""
    bare = save_vae(tmp_path / "bare")
    config = json.loads((bare / "config.json").read_text())
    del config["scaling_factor"], config["shift_factor"]
    (bare / "config.json").write_text(json.dumps(config))
    assert main(argv(shapes, tmp_path / "out", FLAG, str(bare), "--no_samples")) == 0
    exported = json.loads((tmp_path / "out" / "pipeline" / "vae" / "config.json").read_text())
    assert exported["scaling_factor"] != 0.18215 and exported["shift_factor"] is not None


# ---------------------------------------------------------------- the Hub
HUB_RUN = textwrap.dedent("""
    import sys
    from fluxflow.cli.train import main
    sys.exit(main(sys.argv[1:]))
""")


def test_a_hub_id_with_a_subfolder_is_downloaded_and_used(shapes, vae_folder, tmp_path):
    repo = tmp_path / "hub" / "models" / "fake-org" / "sd3-like"
    save_vae(repo / "vae")
    (repo / "model_index.json").write_text('{"_class_name": "StableDiffusion3Pipeline"}')
    flags = argv(shapes, tmp_path / "out", FLAG, "fake-org/sd3-like", "--pretrained_vae_subfolder", "vae",
                 "--no_samples")
    with serve_hub(tmp_path / "hub") as url:
        result = subprocess.run([sys.executable, "-c", HUB_RUN, *flags], env=hub_env(url, tmp_path / "hf_home"),
                                capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    pipe = FluxFlowPipeline.from_pretrained(tmp_path / "out" / "pipeline")
    assert same_weights(pipe.vae, AutoencoderKL.from_pretrained(vae_folder))
    assert list((tmp_path / "hf_home").rglob("diffusion_pytorch_model.safetensors"))


def test_a_hub_id_that_cannot_be_loaded_is_named(shapes, tmp_path, capsys):
    assert main(argv(shapes, tmp_path, FLAG, "fake-org/no-such-vae")) == 2  # offline in tests
    err = capsys.readouterr().err
    assert FLAG in err and "fake-org/no-such-vae" in err and "cannot be loaded" in err


# ---------------------------------------------------------------- up-front checks
def other_class(tmp_path):
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text('{"_class_name": "UNet2DModel"}')
    return tmp_path / "unet"


def pickled(tmp_path):
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text('{"_class_name": "AutoencoderKL"}')
    (folder / "diffusion_pytorch_model.bin").write_bytes(b"not read")
    return folder


def pipeline_folder(tmp_path):
    save_vae(tmp_path / "sd3" / "vae")
    return tmp_path / "sd3"


CHECKS = {
    "missing-folder": (lambda tmp: [FLAG, str(tmp / "nope")], FLAG, "does not exist"),
    "another-class": (lambda tmp: [FLAG, str(other_class(tmp))], FLAG, "UNet2DModel"),
    "pickle-only": (lambda tmp: [FLAG, str(pickled(tmp))], FLAG, "pickled .bin"),
    "pipeline-without-subfolder": (lambda tmp: [FLAG, str(pipeline_folder(tmp))], FLAG,
                                   "--pretrained_vae_subfolder vae"),
    "missing-subfolder": (lambda tmp: [FLAG, str(pipeline_folder(tmp)), "--pretrained_vae_subfolder", "vea"], FLAG,
                          "no config.json"),
    "with-train_vae": (lambda tmp: [FLAG, str(save_vae(tmp / "v")), "--train_vae"], FLAG, "excludes --train_vae"),
    "with-gan_training": (lambda tmp: [FLAG, str(save_vae(tmp / "v")), "--gan_training"], FLAG,
                          "excludes --gan_training"),
    "with-train_spade": (lambda tmp: [FLAG, str(save_vae(tmp / "v")), "--train_spade"], FLAG, "excludes --train_spade"),
    "with-vae_latent_channels": (lambda tmp: [FLAG, str(save_vae(tmp / "v")), "--vae_latent_channels", "4"],
                                 "--vae_latent_channels", "shapes a new VAE"),
    "subfolder-alone": (lambda tmp: ["--pretrained_vae_subfolder", "vae"], "--pretrained_vae_subfolder", FLAG),
    "lone-vae-as-model_checkpoint": (lambda tmp: ["--model_checkpoint", str(pipeline_folder(tmp))],
                                     "--model_checkpoint", FLAG),
}


@pytest.mark.parametrize("case", CHECKS)
def test_bad_pretrained_vae_flags_exit_2_naming_the_flag(case, shapes, tmp_path, capsys):
    flags, named, message = CHECKS[case]
    assert main(argv(shapes, tmp_path / "out", *flags(tmp_path))) == 2
    err = capsys.readouterr().err
    assert named in err and message in err, err
    assert not (tmp_path / "out").exists()  # refused before anything was built


def test_image_sizes_follow_the_pretrained_vaes_downsampling(shapes, tmp_path):
    def check(stages, size):
        load_config(argv(shapes, tmp_path / "out", FLAG, str(save_vae(tmp_path / f"vae{stages}", stages)),
                         "--img_size", str(size)))

    check(2, 20)  # 2x VAE, patch 2: multiples of 4 (the tiny preset's own 8x VAE would need 16)
    with pytest.raises(ConfigError, match=r"--img_size must be a multiple of 16 \(the VAE downsamples 8x"):
        check(4, 40)
