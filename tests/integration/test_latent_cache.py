"""--cache_latents: the same training as encoding on the fly, reused while its inputs are unchanged, rebuilt when
they change or the cache is damaged, exact across a stop and resume."""

import json
import logging
import os

import pytest
from safetensors.torch import load_file

from resume_check import sigterm_after_step

from fluxflow.cli.train import main
from fluxflow.datasets.shapes import write_shapes_dataset
from fluxflow.training.metrics import read_metrics


@pytest.fixture(scope="module")
def stage1(tmp_path_factory):
    """Shapes data and a VAE trained on it for 2 steps (stage 1)."""
    root = tmp_path_factory.mktemp("cache")
    data = write_shapes_dataset(root / "shapes", 8, size=32, seed=0) / "train"
    assert main(["--data_path", str(data), "--img_size", "32", "--model_preset", "tiny", "--batch_size", "4",
                 "--workers", "0", "--seed", "1", "--no_samples", "--train_vae", "--max_train_steps", "2",
                 "--output_path", str(root / "vae")]) == 0
    return data, root / "vae" / "checkpoint.safetensors"


def _flow(stage1, out, cache_dir, *flags):
    data, vae = stage1
    argv = ["--data_path", str(data), "--img_size", "32", "--model_preset", "tiny", "--batch_size", "2",
            "--workers", "0", "--seed", "3", "--no_samples", "--train_diff_full", "--model_checkpoint", str(vae),
            "--log_interval", "1", "--cache_dir", str(cache_dir), "--output_path", str(out), *flags]
    return main(argv)


def _losses(out):
    return [row["loss/flow"] for row in read_metrics(out / "logs" / "metrics.jsonl")]


@pytest.mark.parametrize("flags", [[], ["--random_flip"], ["--train_text_encoder"]],
                         ids=["plain", "random_flip", "trained_text_encoder"])
def test_cached_steps_give_the_losses_of_encoding_on_the_fly(stage1, tmp_path, flags):
    assert _flow(stage1, tmp_path / "fly", tmp_path / "cache", "--max_train_steps", "4", *flags) == 0
    assert _flow(stage1, tmp_path / "cached", tmp_path / "cache", "--max_train_steps", "4", "--cache_latents",
                 *flags) == 0
    assert _losses(tmp_path / "cached") == pytest.approx(_losses(tmp_path / "fly"), rel=1e-4, abs=1e-6)


def test_the_cache_is_reused_rebuilt_on_change_and_never_used_damaged(stage1, tmp_path, caplog):
    cache = tmp_path / "cache"
    with caplog.at_level(logging.INFO, logger="fluxflow.train"):
        assert _flow(stage1, tmp_path / "a", cache, "--max_train_steps", "1", "--cache_latents") == 0
        assert "latent cache: built" in caplog.text
        (folder,) = [p for p in cache.iterdir() if not p.name.startswith(".")]
        manifest = json.loads((folder / "manifest.json").read_text())
        assert manifest["samples"] == 8 and manifest["shards"]
        caplog.clear()
        assert _flow(stage1, tmp_path / "b", cache, "--max_train_steps", "1", "--cache_latents") == 0
        assert f"latent cache: reusing {folder}" in caplog.text
        shard = next(folder.glob("shard-*.safetensors"))  # damaged: cut short
        shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
        caplog.clear()
        assert _flow(stage1, tmp_path / "c", cache, "--max_train_steps", "1", "--cache_latents") == 0
        assert "incomplete or damaged; rebuilding" in caplog.text and "latent cache: built" in caplog.text
        caplog.clear()
        assert _flow(stage1, tmp_path / "d", cache, "--max_train_steps", "1", "--cache_latents", "--img_size",
                     "16") == 0  # another transform: another cache
    assert len([p for p in cache.iterdir() if not p.name.startswith(".")]) == 2


def test_a_build_killed_half_way_is_not_taken_for_a_cache(stage1, tmp_path, caplog):
    """A kill leaves the temporary build folder (no manifest); the next run builds anew beside it."""
    cache = tmp_path / "cache"
    assert _flow(stage1, tmp_path / "a", cache, "--max_train_steps", "1", "--cache_latents") == 0
    (folder,) = list(cache.iterdir())
    os.replace(folder, cache / f".{folder.name}.fluxflow.tmp")  # as a kill before the rename leaves it
    (cache / f".{folder.name}.fluxflow.tmp" / "manifest.json").unlink()
    with caplog.at_level(logging.INFO, logger="fluxflow.train"):
        assert _flow(stage1, tmp_path / "b", cache, "--max_train_steps", "1", "--cache_latents") == 0
    assert "latent cache: built" in caplog.text and (folder / "manifest.json").exists()


def test_a_stop_and_resume_on_the_cache_is_exact(stage1, tmp_path, monkeypatch):
    flags = ["--max_train_steps", "5", "--checkpoint_save_interval", "1", "--cache_latents", "--random_flip"]
    assert _flow(stage1, tmp_path / "straight", tmp_path / "cache", *flags) == 0
    sigterm_after_step(monkeypatch, 2)
    assert _flow(stage1, tmp_path / "stopped", tmp_path / "cache", *flags) == 0
    monkeypatch.undo()
    assert _flow(stage1, tmp_path / "stopped", tmp_path / "cache", *flags, "--resume_from_checkpoint", "latest") == 0
    a, b = (load_file(p / "checkpoint.safetensors") for p in (tmp_path / "straight", tmp_path / "stopped"))
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)


@pytest.mark.parametrize("flags,message", [
    (["--train_vae"], "--cache_latents needs flow training with a frozen VAE"),
    (["--random_crop"], "--cache_latents cannot hold a new random crop"),
    (["--dataset_name", "imagefolder", "--streaming", "--max_train_steps", "2"], "not --streaming"),
    (["--cache_dir", "/dev/null/cache"], "--cache_dir '/dev/null/cache' cannot be created"),
])
def test_what_the_cache_cannot_hold_is_refused_up_front(stage1, tmp_path, capsys, flags, message):
    assert _flow(stage1, tmp_path / "out", tmp_path / "cache", "--cache_latents", *flags) == 2
    assert message in capsys.readouterr().err


def test_buckets_and_a_captions_file_are_cached(tmp_path):
    """Images of three aspect ratios in a captions-file folder: cached per bucket shape, trained on."""
    from PIL import Image

    data = tmp_path / "data"
    data.mkdir()
    lines = []
    for i, (w, h) in enumerate([(64, 32), (32, 64), (48, 48)] * 2):
        Image.new("RGB", (w, h), (40 * i, 90, 160)).save(data / f"{i}.png")
        lines.append(f"{i}.png\tpicture {i}")
    (data / "captions.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    common = ["--data_path", str(data), "--captions_file", str(data / "captions.txt"), "--img_size", "48",
              "--model_preset", "tiny", "--batch_size", "2", "--workers", "0", "--seed", "3", "--no_samples",
              "--aspect_buckets", "--bucket_step", "16"]
    assert main([*common, "--train_vae", "--max_train_steps", "1", "--output_path", str(tmp_path / "vae")]) == 0
    flow = [*common, "--train_diff_full", "--model_checkpoint", str(tmp_path / "vae" / "checkpoint.safetensors"),
            "--max_train_steps", "3", "--log_interval", "1", "--cache_dir", str(tmp_path / "cache")]
    assert main([*flow, "--output_path", str(tmp_path / "fly")]) == 0
    assert main([*flow, "--cache_latents", "--output_path", str(tmp_path / "cached")]) == 0
    assert _losses(tmp_path / "cached") == pytest.approx(_losses(tmp_path / "fly"), rel=1e-4, abs=1e-6)
    (cache,) = (tmp_path / "cache").iterdir()
    shapes = {tuple(t.shape) for t in load_file(next(cache.glob("shard-*.safetensors"))).values()}
    assert len(shapes) == 3  # a latent shape per bucket: 64x32, 32x64, 48x48


def test_a_datasets_source_is_cached_by_its_bytes(stage1, tmp_path):
    """A parquet repo (`datasets` rows with encoded images): the same losses as encoding on the fly."""
    from data_helpers import write_parquet_repo

    repo = write_parquet_repo(tmp_path / "repo", n_train=6, n_test=1)
    _, vae = stage1
    argv = ["--dataset_name", str(repo), "--img_size", "32", "--model_preset", "tiny", "--batch_size", "2",
            "--workers", "0", "--seed", "3", "--no_samples", "--train_diff_full", "--model_checkpoint", str(vae),
            "--log_interval", "1", "--max_train_steps", "3", "--cache_dir", str(tmp_path / "cache")]
    assert main([*argv, "--output_path", str(tmp_path / "fly")]) == 0
    assert main([*argv, "--cache_latents", "--output_path", str(tmp_path / "cached")]) == 0
    assert _losses(tmp_path / "cached") == pytest.approx(_losses(tmp_path / "fly"), rel=1e-4, abs=1e-6)
