"""The exported pipeline's model card: Hub metadata, loading instructions, the sample grid beside it."""

from __future__ import annotations

import ast
import re

import pytest
from huggingface_hub import ModelCard
from PIL import Image

from fluxflow.training.hub import DEFAULT_LICENSE, TAGS, HubPusher, hub_id, model_card, newest_grid

RUN = {"name": "run-7", "backbone": "distilbert", "steps": 1200, "data": "data/shapes/train", "size": 64,
       "shift": 3.0, "caption": "a red circle"}


def code_blocks(card: ModelCard) -> list[str]:
    return re.findall(r"```python\n(.*?)```", card.content, re.S)


def test_metadata_follows_diffusers_training_cards():
    card = model_card(**RUN, repo_id="someone/run-7", grid="samples.webp")
    data = card.data
    assert (data.library_name, data.pipeline_tag) == ("diffusers", "text-to-image")
    assert data.license == DEFAULT_LICENSE == "other"
    assert data.tags == TAGS and {"fluxflow", "diffusers-training", "rectified-flow"} <= set(data.tags)
    assert data.widget == [{"text": "a red circle", "output": {"url": "samples.webp"}}]
    assert "![samples](./samples.webp)" in card.content
    assert data.base_model is None and data.datasets is None  # local data, no pretrained start
    for text in ("distilbert", "1200", "64 px", "3.0", "FlowMatchEulerDiscreteScheduler"):
        assert text in card.text


def test_loads_by_repo_id_when_pushed_and_never_by_the_bare_run_name(tmp_path):
    pushed = code_blocks(model_card(**RUN, repo_id="someone/fluxflow-shapes", folder=tmp_path / "run-7"))[0]
    assert 'FluxFlowPipeline.from_pretrained("someone/fluxflow-shapes")' in pushed
    assert 'pipe("a red circle"' in pushed
    local = code_blocks(model_card(**RUN, folder=tmp_path / "run-7" / "pipeline"))[0]
    assert f'from_pretrained("{(tmp_path / "run-7" / "pipeline").as_posix()}")' in local
    for code in (pushed, local):
        assert 'from_pretrained("run-7")' not in code
        compile(code, "card", "exec")  # the example runs as written
    with pytest.raises(ValueError, match="repo_id .* or folder"):
        model_card(**RUN)


def test_the_example_stays_python_for_any_caption(tmp_path):
    caption = 'a "quoted" circle\\ and a new\nline'
    code = code_blocks(model_card(**{**RUN, "caption": caption}, folder=tmp_path))[0]
    nodes = ast.walk(ast.parse(code))
    calls = [n for n in nodes if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "pipe"]
    assert calls[0].args[0].value == caption


def test_hub_data_base_model_and_license():
    card = model_card(**{**RUN, "data": "someone/shapes"}, repo_id="someone/run-7",
                      base_model="black-forest-labs/FLUX.1-schnell", license="apache-2.0")
    assert card.data.datasets == ["someone/shapes"]
    assert card.data.base_model == "black-forest-labs/FLUX.1-schnell"
    assert card.data.license == "apache-2.0"
    assert "https://huggingface.co/datasets/someone/shapes" in card.text
    forced = model_card(**{**RUN, "data": "shapes"}, repo_id="someone/run-7", data_is_hub_id=False)
    assert forced.data.datasets is None
    default = model_card(**RUN, repo_id="someone/run-7")
    assert "license: other" in str(default) and "Not chosen by the trainer" in default.text


def test_hub_id_tells_repo_ids_from_local_names(tmp_path):
    assert hub_id("someone/shapes") == "someone/shapes"
    assert hub_id("mnist") == "mnist"
    for local in (str(tmp_path), "imagefolder", "./data/x", "data/shapes/train", None, ""):
        assert hub_id(local) is None


def test_saved_card_reloads(tmp_path):
    model_card(**RUN, repo_id="someone/run-7", grid="samples.png").save(tmp_path / "README.md")
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.library_name == "diffusers" and card.data.tags == TAGS
    assert "![samples](./samples.png)" in card.text


def test_export_writes_the_card_and_the_grid(tmp_path):
    from pipeline_cases import tiny_pipeline

    from fluxflow.training.export import export_pipeline

    pipe, folder = tiny_pipeline(), tmp_path / "run-7" / "pipeline"
    export_pipeline(pipe, folder, dict(RUN), grid=Image.new("RGB", (32, 32), "red"))
    card = ModelCard.load(folder / "README.md")
    assert (folder / "samples.webp").is_file() and "![samples](./samples.webp)" in card.text
    assert f'from_pretrained("{folder.resolve().as_posix()}")' in card.text
    assert "FluxFlowVAE" in card.text and (folder / "model_index.json").is_file()
    png = tmp_path / "grid.png"
    Image.new("RGB", (32, 32), "blue").save(png)
    export_pipeline(pipe, folder, {**RUN, "repo_id": "someone/run-7"}, grid=png)
    assert (folder / "samples.png").read_bytes() == png.read_bytes()
    assert not (folder / "samples.webp").exists()
    assert 'from_pretrained("someone/run-7")' in (folder / "README.md").read_text()
    export_pipeline(pipe, folder, dict(RUN))  # no grid: no image line
    assert "![samples]" not in (folder / "README.md").read_text()


def test_staging_never_takes_a_file_holding_the_token(tmp_path, caplog):
    pusher = HubPusher.__new__(HubPusher)  # no Hub needed: only the staging step
    pusher.out, pusher._token = tmp_path, "hf_secret"
    (tmp_path / "leaky.json").write_text('{"hub_token": "hf_secret"}')
    (tmp_path / "clean.json").write_text('{"hub_token": "***"}')
    stage = pusher._stage({"a/leaky.json": tmp_path / "leaky.json", "a/clean.json": tmp_path / "clean.json"})
    assert sorted(p.name for p in stage.rglob("*.json")) == ["clean.json"]
    assert "not pushing a/leaky.json" in caplog.text and "hf_secret" not in caplog.text


def test_newest_grid_goes_by_step_not_by_name(tmp_path):
    assert newest_grid(tmp_path) is None
    for name in ("flow_grid_0100.webp", "flow_grid_9999.webp", "flow_grid_10000.webp", "vae_grid_20000.webp"):
        (tmp_path / name).write_bytes(b"")
    assert newest_grid(tmp_path).name == "flow_grid_10000.webp"
    assert newest_grid(tmp_path, "vae").name == "vae_grid_20000.webp"
