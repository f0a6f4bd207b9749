import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pipeline_cases import SIZE, tiny_pipeline

from fluxflow.cli.generate import main, slug


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
                     "grid.png"]
    assert Image.open(tmp_path / "out" / files[0]).size == (SIZE, SIZE)
    assert Image.open(tmp_path / "out" / "grid.png").size == (2 * SIZE, 2 * SIZE)


def test_results_do_not_depend_on_batch_size_and_never_overwrite(model_dir, tmp_path):
    args = ["a red circle", "a green star", "--num_images_per_prompt", "2"]
    _generate(model_dir, tmp_path / "b1", *args, "--batch_size", "1")
    _generate(model_dir, tmp_path / "b3", *args, "--batch_size", "3")
    names = sorted(p.name for p in (tmp_path / "b1").iterdir())
    assert len(names) == 4 and names == sorted(p.name for p in (tmp_path / "b3").iterdir())
    for name in names:
        a = np.asarray(Image.open(tmp_path / "b1" / name), dtype=np.int16)
        b = np.asarray(Image.open(tmp_path / "b3" / name), dtype=np.int16)
        assert np.abs(a - b).max() <= 1  # float batch effects may flip a rounding
    _generate(model_dir, tmp_path / "b1", *args, "--batch_size", "4")  # same names again: new files, no overwrite
    assert len(list((tmp_path / "b1").iterdir())) == 8


def test_no_prompts_is_a_clear_error(model_dir, tmp_path):
    with pytest.raises(SystemExit, match="no prompts"):
        _generate(model_dir, tmp_path)


def test_slug():
    assert slug("  A Red, Circle!! ") == "a-red-circle" and slug("!!!") == "prompt"


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "fluxflow-generate"
    out = subprocess.run([str(script), "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--guidance_scale" in out.stdout
