"""``--report_to``: real tracker files hold the scalars and the sample grids (TensorBoard always; W&B offline
where it is installed)."""

import pytest
from PIL import Image

from fluxflow.cli.train import main
from fluxflow.datasets.shapes import write_shapes_dataset

CAPTIONS = ["a red circle in the top left on a white background", "a blue star on the right on a black background"]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return write_shapes_dataset(tmp_path_factory.mktemp("data") / "shapes", 16, size=32, seed=0) / "train"


def _train(data, out, *flags):
    argv = ["--data_path", str(data), "--img_size", "32", "--model_preset", "tiny", "--batch_size", "4",
            "--workers", "0", "--seed", "3", "--output_path", str(out), "--train_vae", "--train_diff_full",
            "--max_train_steps", "4", "--checkpoint_save_interval", "2", "--log_interval", "2",
            "--sample_steps", "2", "--sample_captions", *CAPTIONS, *flags]
    assert main(argv) == 0


def _events(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runs = [p.parent for p in folder.rglob("events.out.tfevents.*")]
    accumulators = [EventAccumulator(str(run), size_guidance={"images": 0, "scalars": 0}).Reload() for run in runs]
    scalars = {tag: [e.step for e in acc.Scalars(tag)] for acc in accumulators for tag in acc.Tags()["scalars"]}
    images = {tag: acc.Images(tag) for acc in accumulators for tag in acc.Tags()["images"]}
    return scalars, images


def test_tensorboard_event_files_hold_scalars_and_sample_grids(shapes, tmp_path):
    pytest.importorskip("tensorboard")
    _train(shapes, tmp_path, "--report_to", "tensorboard", "--tracker_project_name", "shapes-tb")
    scalars, images = _events(tmp_path / "logs" / "shapes-tb")
    assert scalars["loss/vae"] == [2, 4] and scalars["loss/flow"] == [2, 4]
    assert set(images) == {"samples/vae", "samples/flow"}
    for tag, events in images.items():
        assert [e.step for e in events] == [0, 2, 4]
        grid = Image.open(tmp_path / "samples" / f"{tag.split('/')[1]}_grid_0004.webp")
        assert (events[-1].width, events[-1].height) == grid.size  # the grid written beside the samples


def test_wandb_offline_run_holds_the_grids(shapes, tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="W&B is the optional extra fluxflow[wandb]; not installed here")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    _train(shapes, tmp_path / "out", "--report_to", "wandb", "--tracker_run_name", "grid-check")
    media = [p.name for p in (tmp_path / "wandb").rglob("*") if p.suffix == ".png"]
    assert any(name.startswith("samples/flow") or "flow" in name for name in media), media
