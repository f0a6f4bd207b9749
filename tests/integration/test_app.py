"""``fluxflow-app`` end to end through ``gradio_client``: images with the settings that make them again,
readable refusals (bad or outside models, oversize requests) after which the app keeps serving, the Runs tab's
data from live run folders, nothing served or written outside what it was pointed at, a loopback server."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import urllib.error
import urllib.request

import numpy as np
import pytest
from app_helpers import GENERATE_DEFAULTS, LIMITS, make_runs, serve, tree_state
from PIL import Image

gradio_client = pytest.importorskip("gradio_client", reason="the app extra: pip install 'fluxflow[app]'")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:gradio.queueing")  # gradio's pandas use


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    paths = make_runs(tmp_path_factory.mktemp("app"))
    before = tree_state(paths["runs"])
    demo = serve("--runs", str(paths["runs"]), "--model", str(paths["model"]), "--no_hub", *LIMITS)
    downloads = str(paths["runs"].parent / "downloads")
    client = gradio_client.Client(demo.local_url, verbose=False, download_files=downloads)
    yield {**paths, "demo": demo, "client": client, "before": before}
    client.close()
    demo.close()


def generate(app, **inputs):
    values = {**GENERATE_DEFAULTS, "model": str(app["shapes"] / "pipeline"), **inputs}
    return app["client"].predict(*values.values(), api_name="/generate")


def refused(app, **inputs) -> str:
    """The message of a refused generation (gradio_client raises it as an AppError)."""
    with pytest.raises(gradio_client.exceptions.AppError) as error:
        generate(app, **inputs)
    message = str(error.value)
    assert "Traceback" not in message and message.strip()
    return message


def pixels(gallery) -> list[np.ndarray]:
    return [np.asarray(Image.open(item["image"]).convert("RGB")) for item in gallery]


def test_images_come_with_the_settings_that_make_them_again(app):
    gallery, settings, seed, status = generate(app, seed=7, num_images=2)
    images = pixels(gallery)
    assert [im.shape for im in images] == [(32, 32, 3)] * 2 and images[0].std() > 0
    assert [item["caption"] for item in gallery] == ["seed 7", "seed 8"]
    assert (settings["seed"], settings["seeds"], settings["steps"], settings["height"]) == (7, [7, 8], 2, 32)
    assert "--seed 8" in settings["images"][1]["command"] and seed == 7 and "multiples of 16" in status
    again = pixels(generate(app, seed=7, num_images=2)[0])
    assert all(np.array_equal(a, b) for a, b in zip(images, again))  # same seed, same images
    assert not np.array_equal(images[0], images[1])  # each image its own seed
    assert not np.array_equal(images[0], pixels(generate(app, seed=9)[0])[0])


def test_the_recorded_command_makes_the_same_image(app, tmp_path):
    from fluxflow.cli.generate import main as generate_main

    gallery, settings, _, _ = generate(app, seed=5, prompt="a blue star")
    command = shlex.split(settings["images"][0]["command"])
    assert command[0] == "fluxflow-generate"
    assert settings["model"] == str((app["shapes"] / "pipeline").resolve())
    assert generate_main([*command[1:], "--output_dir", str(tmp_path)]) == 0
    (made,) = tmp_path.glob("*.png")
    assert np.array_equal(np.asarray(Image.open(made).convert("RGB")), pixels(gallery)[0])


def test_a_random_seed_is_reported_and_reproduces_the_image(app):
    gallery, settings, seed, _ = generate(app, random_seed=True, seed=0)
    assert settings["random_seed"] is True and settings["seed"] == seed and settings["seeds"] == [seed]
    again = generate(app, seed=seed)[0]
    assert np.array_equal(pixels(gallery)[0], pixels(again)[0])


def test_the_training_size_is_the_default_and_the_model_named_by_model_loads(app):
    gallery, settings, _, _ = generate(app, model=str(app["model"]), height=0, width=0)
    assert (settings["height"], settings["width"]) == (64, 64) and pixels(gallery)[0].shape == (64, 64, 3)


def test_bad_models_are_messages_and_the_app_keeps_serving(app):
    assert "without model_index.json" in refused(app, model=str(app["shapes"] / "samples"))
    broken = app["runs"] / "broken"
    (broken / "pipeline").mkdir(parents=True)
    (broken / "pipeline" / "model_index.json").write_text('{"_class_name": "FluxFlowPipeline"}')
    try:
        assert "cannot be loaded" in refused(app, model=str(broken / "pipeline"))
        status = app["client"].predict(str(broken / "pipeline"), api_name="/load_model")[0]
        assert status.startswith("**Not loaded.**") and "cannot be loaded" in status
    finally:
        shutil.rmtree(broken)
    assert "Choose a model" in refused(app, model="")
    assert pixels(generate(app)[0])[0].shape == (32, 32, 3)  # still serving


def test_requests_beyond_the_limits_are_refused(app):
    assert "64" in refused(app, height=128)  # --max_size 64
    assert "2" in refused(app, num_images=3)  # --max_images 2
    assert "5" in refused(app, steps=50)  # --max_steps 5
    assert "multiple of 16" in refused(app, width=40)
    assert "Write a prompt" in refused(app, prompt="  ")


def test_paths_outside_the_runs_and_the_model_are_refused(app):
    outside = str(app["outside"])  # a valid pipeline, but the app was not pointed at it
    assert "refused" in refused(app, model=outside)
    link = app["runs"] / "link"
    link.symlink_to(app["outside"], target_is_directory=True)
    try:
        assert "refused" in refused(app, model=str(link))  # a link inside --runs that leads out
    finally:
        link.unlink()
    assert "--no_hub" in refused(app, model="someone/some-model")
    weights = app["outside"] / "transformer" / "diffusion_pytorch_model.safetensors"
    assert "refused" in refused(app, lora=str(weights))
    metrics = app["shapes"] / "logs" / "metrics.jsonl"
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(f"{app['demo'].local_url}gradio_api/file={metrics}", timeout=10)
    assert error.value.code in (403, 404)


def test_the_runs_data_lists_every_run_with_its_step_and_metrics(app):
    table, choices = app["client"].predict(api_name="/runs")
    rows = {row[0]: dict(zip(table["headers"], row)) for row in table["data"]}
    assert set(rows) == {"runs/shapes", "runs/staged/stages/1-vae"}
    shapes, stage = rows["runs/shapes"], rows["runs/staged/stages/1-vae"]
    assert (shapes["step"], stage["step"]) == (30, 3)  # the torn last line and the foreign one skipped
    assert "vae 0.09129" in shapes["last losses"] and "vae/psnr 24" in shapes["validation"]
    assert stage["stage"] == "1-vae: train_vae" and stage["last losses"] == "vae 0.3333"
    about, values, *charts = app["client"].predict("runs/shapes", api_name="/run")
    assert "step 30" in about and "| val/judge/accuracy | 0.75 |" in values
    loss_choice, loss_plot, val_choice, val_plot = charts[:4]
    assert loss_choice["value"] == "loss" and val_choice["value"] == "val/flow"
    assert {row[2] for row in loss_plot["data"]} == {"loss/flow", "loss/kl", "loss/vae"}
    vae_slider, vae_image, flow_slider, flow_image = charts[4:]
    assert (flow_slider["maximum"], flow_slider["value"]) == (2, 2) and "step 30" in flow_slider["label"]
    assert Image.open(flow_image).size == (192, 62)  # the grid as written
    _, _, *stage_charts = app["client"].predict("runs/staged/stages/1-vae", api_name="/run")
    assert "step 2 (1 of 2)" in stage_charts[4]["label"]  # the grid being written is skipped


def test_the_runs_data_follows_a_run_while_it_trains(app):
    live = app["runs"] / "live"
    (live / "logs").mkdir(parents=True)
    (live / "samples").mkdir()
    metrics = live / "logs" / "metrics.jsonl"
    try:
        metrics.write_text('{"step": 1, "loss/flow": 2.0}\n{"step": 2, "loss/flow": 1.5}\n')
        grids = app["shapes"] / "samples"
        shutil.copy(grids / "flow_grid_0010.webp", live / "samples" / "flow_grid_0001.webp")
        assert step_of(app, "runs/live") == 2
        with open(metrics, "a") as f:
            f.write('{"step": 3, "loss/flow": 1.25}\n{"step": 4, "loss/fl')  # step 4 is being written
        shutil.copy(grids / "flow_grid_0020.webp", live / "samples" / "flow_grid_0002.webp")
        assert step_of(app, "runs/live") == 3
        flow_slider = app["client"].predict("runs/live", api_name="/run")[-2]
        assert (flow_slider["maximum"], flow_slider["value"]) == (1, 1)
        assert "step 2 (2 of 2)" in flow_slider["label"]
    finally:
        shutil.rmtree(live)


def step_of(app, label: str):
    table, _ = app["client"].predict(api_name="/runs")
    return {row[0]: row[3] for row in table["data"]}[label]


def test_a_run_is_named_never_a_path(app):
    with pytest.raises(gradio_client.exceptions.AppError):
        app["client"].predict(str(app["outside"].parent), api_name="/run")


def test_one_generation_or_model_load_at_a_time(app):
    events = {fn.api_name: fn for fn in app["demo"].fns.values()}
    generate_event, load_event = events["generate"], events["load_model"]
    assert generate_event.concurrency_limit == load_event.concurrency_limit == 1
    assert generate_event.concurrency_id == load_event.concurrency_id


def test_nothing_was_written_into_the_runs_and_the_server_listens_on_loopback_only(app):
    assert tree_state(app["runs"]) == app["before"]
    sockets = [s.getsockname()[0] for server in app["demo"].server.servers for s in server.sockets]
    assert sockets == ["127.0.0.1"] and app["demo"].local_url.startswith("http://127.0.0.1:")


def test_flags_are_checked_and_a_missing_gradio_names_the_extra(tmp_path, capsys):
    from fluxflow.cli.app import main

    assert main(["--runs", str(tmp_path / "nope")]) == 2
    assert main(["--model", str(tmp_path / "nope")]) == 2
    assert main(["--runs", str(tmp_path), "--max_size", "0"]) == 2
    err = capsys.readouterr().err
    assert "--runs" in err and "not a folder" in err and "no such file or folder" in err
    assert "--max_size must be >= 1" in err
    code = ("import sys; sys.modules['gradio'] = None\n"  # as if gradio were not installed
            "from fluxflow.cli.app import main; sys.exit(main(['--runs', sys.argv[1]]))")
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 2 and "pip install 'fluxflow[app]'" in run.stderr


def test_a_lora_from_the_runs_changes_the_images_at_its_scale(app):
    pytest.importorskip("peft", reason="LoRA needs peft (pip install 'fluxflow[lora]')")
    lora = str(app["shapes"] / "lora" / "pytorch_lora_weights.safetensors")
    base = pixels(generate(app, seed=3)[0])[0]
    gallery, settings, _, _ = generate(app, seed=3, lora=lora, lora_scale=1.0)
    assert not np.array_equal(pixels(gallery)[0], base)
    assert settings["lora"] == lora and f"--lora {lora}:1" in settings["images"][0]["command"]
    assert np.array_equal(pixels(generate(app, seed=3, lora=lora, lora_scale=0.0)[0])[0], base)
    assert np.array_equal(pixels(generate(app, seed=3)[0])[0], base)  # cleared: the base weights, as saved
