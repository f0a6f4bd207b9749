"""fluxflow-train --lora_rank: an adapter trained on a subset over a frozen base, saved alone, loaded back by
FluxFlowPipeline and fluxflow-generate; resume is exact; bad LoRA flags are named before anything is built."""

import hashlib
import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from fluxflow import FluxFlowPipeline
from fluxflow.cli.generate import main as generate
from fluxflow.cli.train import main
from fluxflow.datasets.shapes import write_shapes_dataset
from fluxflow.training.arguments import load_config
from fluxflow.training.errors import ConfigError

pytest.importorskip("peft", reason="LoRA needs peft (pip install 'fluxflow[lora]')")
CAPTION = "a red circle in the top left on a white background"


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return write_shapes_dataset(tmp_path_factory.mktemp("data") / "shapes", 16, size=32, seed=0) / "train"


@pytest.fixture(scope="module")
def subset(shapes, tmp_path_factory):
    """Four of the images, all captioned alike: what the adapter learns."""
    folder = tmp_path_factory.mktemp("subset")
    names = sorted(p.name for p in shapes.glob("*.png"))[:4]
    for name in names:
        shutil.copyfile(shapes / name, folder / name)
    (folder / "captions.txt").write_text("".join(f"{n}\ta striped pattern\n" for n in names), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def base(shapes, tmp_path_factory):
    out = tmp_path_factory.mktemp("base")
    _train(shapes, out, "--train_vae", "--train_diff_full", "--max_train_steps", "8", "--lr", "5e-3", "--no_samples")
    return out / "pipeline"


def _train(data, out, *flags, captions=None):
    argv = ["--data_path", str(data), "--img_size", "32", "--model_preset", "tiny", "--batch_size", "4",
            "--workers", "0", "--seed", "5", "--output_path", str(out), "--sample_steps", "2",
            "--sample_captions", CAPTION, *(["--captions_file", str(captions)] if captions else []), *flags]
    assert main(argv) == 0


def _lora_run(subset, out, *flags, base):
    _train(subset, out, "--train_diff_full", "--model_checkpoint", str(base), "--lora_rank", "4",
           "--lora_alpha", "8", "--max_train_steps", "4", "--checkpoint_save_interval", "2", "--lr", "1e-2",
           *flags, captions=subset / "captions.txt")


def _digest(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _image(pipe):
    return pipe(CAPTION, num_inference_steps=2, guidance_scale=1.0, output_type="pt",
                generator=torch.Generator().manual_seed(0)).images


@pytest.fixture(scope="module")
def lora_run(subset, base, tmp_path_factory):
    before = _digest(base)
    out = tmp_path_factory.mktemp("lora")
    _lora_run(subset, out, base=base)
    assert _digest(base) == before  # the base on disk is untouched
    return out


def test_only_the_adapter_is_saved(lora_run, base):
    exported = lora_run / "lora" / "pytorch_lora_weights.safetensors"
    assert exported.is_file() and (lora_run / "pytorch_lora_weights.safetensors").is_file()
    assert not (lora_run / "checkpoint.safetensors").exists() and not (lora_run / "pipeline").exists()
    with safe_open(str(exported), "pt") as f:
        keys = list(f.keys())
    assert keys and all(k.startswith("transformer.") and (".lora_A." in k or ".lora_B." in k) for k in keys)
    base_size = (base / "transformer" / "diffusion_pytorch_model.safetensors").stat().st_size
    assert exported.stat().st_size < base_size / 3
    card = (lora_run / "lora" / "README.md").read_text(encoding="utf-8")
    assert "load_lora_weights" in card and str(base) in card
    assert "train_config.json" in {p.name for p in (lora_run / "logs").iterdir()}


def test_the_adapter_trained_and_the_base_weights_did_not(lora_run, base):
    trained = load_file(lora_run / "lora" / "pytorch_lora_weights.safetensors")
    assert any(k.endswith("lora_B.weight") and v.abs().max() > 0 for k, v in trained.items())  # B starts at zero
    state = sorted((lora_run / "state").glob("checkpoint-*"))[-1]
    (saved,) = [w for w in map(load_file, state.glob("model*.safetensors")) if any("lora_A" in k for k in w)]
    bases = {k.replace(".base_layer", ""): v for k, v in saved.items() if "lora_" not in k}
    original = FluxFlowPipeline.from_pretrained(base).transformer.state_dict()
    assert bases.keys() == original.keys()  # the run's flow processor as Accelerate saved it at the last step
    assert all(torch.equal(bases[k], original[k]) for k in original)


def test_the_adapter_changes_the_images_and_scale_zero_gives_the_base(lora_run, base):
    pipe = FluxFlowPipeline.from_pretrained(base)
    before = _image(pipe)
    pipe.load_lora_weights(str(lora_run / "lora"), adapter_name="subset")
    assert not torch.allclose(_image(pipe), before, atol=1e-4)
    pipe.set_adapters(["subset"], [0.0])
    assert torch.allclose(_image(pipe), before, atol=1e-6)


def test_generate_applies_the_lora_at_its_scale(lora_run, base, tmp_path):
    weights = lora_run / "lora" / "pytorch_lora_weights.safetensors"
    runs = {"base": [], "zero": ["--lora", f"{weights}:0"], "full": ["--lora", str(weights)]}
    images = {}
    for name, flags in runs.items():
        out = tmp_path / name
        assert generate(["--model", str(base), "--output_dir", str(out), "--steps", "2", "--guidance_scale", "1",
                         "--format", "png", *flags, CAPTION]) == 0
        (image,) = sorted(out.glob("*.png"))
        images[name] = image.read_bytes()
        record = (out / "fluxflow-generate.json").read_text(encoding="utf-8")
        assert ("--lora" in record) == bool(flags)  # the command that makes it again names the adapter
    assert images["zero"] == images["base"]
    assert images["full"] != images["base"]


def test_generate_names_a_missing_lora(base, tmp_path, capsys):
    assert generate(["--model", str(base), "--output_dir", str(tmp_path), "--lora", str(tmp_path / "no.safetensors"),
                     "x"]) == 2
    assert "--lora" in capsys.readouterr().err


def test_a_lora_run_resumes_exactly(subset, base, tmp_path):
    _lora_run(subset, tmp_path / "straight", base=base)
    resumed = tmp_path / "resumed"
    (resumed / "state").mkdir(parents=True)
    (tmp_path / "straight" / "state" / "checkpoint-2").rename(resumed / "state" / "checkpoint-2")
    _lora_run(subset, resumed, "--resume_from_checkpoint", "latest", base=base)
    a = load_file(tmp_path / "straight" / "lora" / "pytorch_lora_weights.safetensors")
    b = load_file(resumed / "lora" / "pytorch_lora_weights.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("flags, expected", [
    (["--train_diff_full", "--lora_rank", "4"], "give its base with --model_checkpoint"),
    (["--train_vae", "--lora_rank", "4", "--model_checkpoint", "BASE"], "--lora_rank 4 trains an adapter"),
    (["--train_diff_full", "--lora_rank", "4", "--model_checkpoint", "BASE", "--lora_target_modules", "to_qq"],
     "'to_qq' names no Linear layer"),
    (["--train_diff_full", "--lora_rank", "4", "--model_checkpoint", "BASE", "--use_ema"], "--use_ema"),
    (["--train_diff_full", "--lora_alpha", "4", "--model_checkpoint", "BASE"], "--lora_alpha needs --lora_rank"),
])
def test_bad_lora_flags_are_named_before_anything_is_built(shapes, base, tmp_path, flags, expected):
    flags = [str(base) if f == "BASE" else f for f in flags]
    with pytest.raises(ConfigError, match=expected.replace("-", r"\-").replace("(", r"\(")):
        load_config(["--data_path", str(shapes), "--img_size", "32", "--model_preset", "tiny",
                     "--output_path", str(tmp_path), *flags])


def test_pretrained_model_name_or_path_is_the_diffusers_name_of_the_base(shapes, base, tmp_path):
    cfg, _ = load_config(["--data_path", str(shapes), "--img_size", "32", "--model_preset", "tiny",
                          "--output_path", str(tmp_path), "--train_diff_full", "--lora_rank", "2",
                          "--pretrained_model_name_or_path", str(base)])
    assert cfg.model_checkpoint == str(base) and cfg.lora_rank == 2


def test_the_base_can_be_a_hub_repo_id(subset, base, tmp_path):
    """--pretrained_model_name_or_path org/name downloads the base pipeline (the local Hub stand-in) and the
    adapter's card names it as its base_model."""
    import subprocess
    import sys

    from hub_server import hub_env, serve_hub

    shutil.copytree(base, tmp_path / "hub" / "models" / "fake-org" / "base")
    out = tmp_path / "run"
    argv = ["--data_path", str(subset), "--captions_file", str(subset / "captions.txt"), "--img_size", "32",
            "--model_preset", "tiny", "--batch_size", "4", "--workers", "0", "--seed", "5", "--output_path", str(out),
            "--no_samples", "--train_diff_full", "--pretrained_model_name_or_path", "fake-org/base",
            "--lora_rank", "2", "--max_train_steps", "1"]
    code = "import sys; from fluxflow.cli.train import main; sys.exit(main(sys.argv[1:]))"
    with serve_hub(tmp_path / "hub") as url:
        result = subprocess.run([sys.executable, "-c", code, *argv], env=hub_env(url, tmp_path / "hf_home"),
                                capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    card = (out / "lora" / "README.md").read_text(encoding="utf-8")
    assert "base_model: fake-org/base" in card
    assert (out / "lora" / "pytorch_lora_weights.safetensors").is_file()
