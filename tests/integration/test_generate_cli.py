import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pipeline_cases import SIZE, tiny_pipeline

from fluxflow.cli.generate import RECORD, main, slug


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pipeline")
    tiny_pipeline().save_pretrained(folder)
    return folder


def _generate(model, out, *extra):
    return main([*extra, "--model", str(model), "--output_dir", str(out), "--height", str(SIZE),
                 "--width", str(SIZE), "--steps", "2"])


def test_prompts_file_writes_one_image_per_prompt_with_unique_names(model_dir, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# shapes\na red circle\n\na red circle\nA blue square, top left!\n", encoding="utf-8")
    assert _generate(model_dir, tmp_path / "out", "--prompts_file", str(prompts), "--grid", "--seed", "7") == 0
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["0000-a-red-circle-s7.png", "0001-a-red-circle-s8.png", "0002-a-blue-square-top-left-s9.png",
                     RECORD, "grid.png"]
    assert Image.open(tmp_path / "out" / files[0]).size == (SIZE, SIZE)
    assert Image.open(tmp_path / "out" / "grid.png").size == (2 * SIZE, 2 * SIZE)


def test_results_do_not_depend_on_batch_size_and_never_overwrite(model_dir, tmp_path):
    args = ["a red circle", "a green star", "--num_images_per_prompt", "2"]
    _generate(model_dir, tmp_path / "b1", *args, "--batch_size", "1")
    _generate(model_dir, tmp_path / "b3", *args, "--batch_size", "3")
    names = sorted(p.name for p in (tmp_path / "b1").glob("*.png"))
    assert len(names) == 4 and names == sorted(p.name for p in (tmp_path / "b3").glob("*.png"))
    for name in names:
        a = np.asarray(Image.open(tmp_path / "b1" / name), dtype=np.int16)
        b = np.asarray(Image.open(tmp_path / "b3" / name), dtype=np.int16)
        assert np.abs(a - b).max() <= 1  # float batch effects may flip a rounding
    _generate(model_dir, tmp_path / "b1", *args, "--batch_size", "4")  # same names again: new files, no overwrite
    assert len(list((tmp_path / "b1").glob("*.png"))) == 8


def _pixels(path):
    return np.asarray(Image.open(path))


def test_second_run_keeps_the_first_and_the_record_reproduces_every_image(model_dir, tmp_path, capsys):
    """Two runs into one folder: new numbers, nothing replaced; the record names every image with its seed,
    and running an image's recorded command again gives the same pixels, bit for bit."""
    out = tmp_path / "out"
    assert _generate(model_dir, out, "a red circle", "a green star", "--seed", "5", "--grid", "--batch_size", "1") == 0
    first = {p.name: p.read_bytes() for p in out.glob("*.png")}
    assert sorted(first) == ["0000-a-red-circle-s5.png", "0001-a-green-star-s6.png", "grid.png"]
    capsys.readouterr()
    assert _generate(model_dir, out, "a red circle", "a blue square", "--seed", "5", "--grid", "--batch_size", "1",
                     "--guidance_scale", "3", "--negative_prompt=-blurry") == 0
    assert "numbering continues at 0002" in capsys.readouterr().out
    assert {name: (out / name).read_bytes() for name in first} == first  # the first run's files, untouched
    assert sorted(p.name for p in out.glob("*.png")) == sorted(
        [*first, "0002-a-red-circle-s5.png", "0003-a-blue-square-s6.png", "grid-2.png"])

    record = json.loads((out / RECORD).read_text(encoding="utf-8"))
    assert sorted(record["images"]) == sorted(p.name for p in out.glob("0*.png"))
    assert record["grids"] == {"grid.png": ["0000-a-red-circle-s5.png", "0001-a-green-star-s6.png"],
                               "grid-2.png": ["0002-a-red-circle-s5.png", "0003-a-blue-square-s6.png"]}
    entry = record["images"]["0003-a-blue-square-s6.png"]
    assert {k: entry[k] for k in ("prompt", "negative_prompt", "seed", "steps", "guidance_scale", "height", "width",
                                  "model", "device", "dtype")} == {
        "prompt": "a blue square", "negative_prompt": "-blurry", "seed": 6, "steps": 2, "guidance_scale": 3.0,
        "height": SIZE, "width": SIZE, "model": str(model_dir.resolve()), "device": "cpu", "dtype": "fp32"}
    assert record["images"]["0001-a-green-star-s6.png"]["negative_prompt"] is None

    # the recorded command, into a new folder: the same pixels (the same seed alone reproduces the image)
    for name in ("0003-a-blue-square-s6.png", "0001-a-green-star-s6.png"):
        again = tmp_path / f"again-{name}"
        argv = shlex.split(record["images"][name]["command"])
        assert argv[0] == "fluxflow-generate" and main([*argv[1:], "--output_dir", str(again)]) == 0
        (made,) = again.glob("*.png")
        assert made.name == f"0000-{name[5:]}"
        assert np.array_equal(_pixels(made), _pixels(out / name))
    # and a different seed does not
    assert _generate(model_dir, tmp_path / "other", "a blue square", "--seed", "7", "--guidance_scale", "3",
                     "--negative_prompt=-blurry") == 0
    assert not np.array_equal(_pixels(next((tmp_path / "other").glob("*.png"))), _pixels(out / name))


def test_overwrite_numbers_from_0000_and_replaces_same_names(model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    _generate(model_dir, out, "a red circle", "a green star", "--grid")
    old = (out / "0001-a-green-star-s1.png").read_bytes()
    capsys.readouterr()
    assert _generate(model_dir, out, "a red circle", "a green star", "--grid", "--seed", "10", "--overwrite") == 0
    assert "replaced 1 existing file(s)" in capsys.readouterr().out  # the grid; the images have new seeds
    assert sorted(p.name for p in out.glob("*.png")) == ["0000-a-red-circle-s0.png", "0000-a-red-circle-s10.png",
                                                         "0001-a-green-star-s1.png", "0001-a-green-star-s11.png",
                                                         "grid.png"]
    assert (out / "0001-a-green-star-s1.png").read_bytes() == old
    _generate(model_dir, out, "a red circle", "--grid", "--seed", "10", "--overwrite")  # the same name: replaced
    assert "replaced 2 existing file(s)" in capsys.readouterr().out
    record = json.loads((out / RECORD).read_text(encoding="utf-8"))
    assert sorted(record["images"]) == sorted(p.name for p in out.glob("0*.png"))  # old entries kept
    assert record["grids"] == {"grid.png": ["0000-a-red-circle-s10.png"]}


def test_help_documents_naming_overwrite_and_record(capsys):
    assert main(["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--overwrite" in text and RECORD in text and "numbers continue after the highest" in text
    assert "(default: 28)" in text and "(default: generated)" in text


def test_slug():
    assert slug("  A Red, Circle!! ") == "a-red-circle" and slug("!!!") == "prompt"


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "fluxflow-generate"
    out = subprocess.run([str(script), "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--guidance_scale" in out.stdout
