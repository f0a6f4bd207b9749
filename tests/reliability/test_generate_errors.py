"""fluxflow-generate's checks: a bad --model, size, count, device, prompts file or output folder.

Every case runs the real command line (``main(argv)``) with a tiny real pipeline and must return 2 with one
``fluxflow-generate: error:`` line on stderr (no traceback) that names the flag and the value or file. What
can be checked without the model is checked before it is loaded (the loader is replaced by a stub that fails
the test) and leaves nothing behind; the size and the weights themselves are checked right after loading,
before any sampling.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from data_helpers import safetensors_bytes
from pipeline_cases import SIZE, tiny_pipeline

from fluxflow import FluxFlowPipeline
from fluxflow.cli.generate import RECORD, main
from fluxflow.pipelines.single_file import save_single_file


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, pipe):
    folder = tmp_path_factory.mktemp("pipeline")
    pipe.save_pretrained(folder)
    return folder


def vae_only(pipe, path: Path) -> None:
    save_single_file(path, {"vae": pipe.vae}, tokenizer=pipe.tokenizer)


def no_tokenizer(pipe, path: Path) -> None:
    save_single_file(path, {"vae": pipe.vae, "transformer": pipe.transformer, "text_encoder": pipe.text_encoder})


def truncated_pipeline(pipe, path: Path) -> None:
    pipe.save_pretrained(path)
    weights = path / "transformer" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])


def truncated_checkpoint(pipe, path: Path) -> None:
    pipe.save_single_file(path)
    path.write_bytes(path.read_bytes()[:-100])


# (argv after the prompt, {name under tmp: text | bytes | None (a folder) | callable(pipe, path)}, what the
# error must name); {tmp} is the case's folder, {model} the good pipeline folder
BEFORE_LOADING = {
    "model-missing-path": ("--model {tmp}/nope", {}, ("--model", "{tmp}/nope", "no such file")),
    "model-missing-checkpoint": ("--model {tmp}/out/checkpoint.safetensors", {},
                                 ("--model", "{tmp}/out/checkpoint.safetensors", "no such file")),
    "model-missing-not-on-hub": ("--model no-such-owner/no-such-pipeline", {},
                                 ("--model", "no-such-owner/no-such-pipeline", "no such file", "Hub")),
    "model-empty-folder": ("--model {tmp}/empty", {"empty": None}, ("--model", "{tmp}/empty", "model_index.json")),
    "model-data-folder": ("--model {tmp}/data", {"data/a.png": b"\x89PNG", "data/a.txt": "a circle"},
                          ("--model", "{tmp}/data", "not a saved pipeline")),
    "model-other-pipeline": ("--model {tmp}/sd", {"sd/model_index.json": '{"_class_name": "StableDiffusionPipeline"}'},
                             ("--model", "{tmp}/sd", "StableDiffusionPipeline", "not a FluxFlowPipeline")),
    "model-index-not-json": ("--model {tmp}/bad", {"bad/model_index.json": "{not json"},
                             ("--model", "{tmp}/bad", "model_index.json", "JSON")),
    "model-text-file": ("--model {tmp}/notes.txt", {"notes.txt": "a red circle\n"},
                        ("--model", "{tmp}/notes.txt", "not a fluxflow checkpoint")),
    "model-other-safetensors": ("--model {tmp}/lora.safetensors", {"lora.safetensors": safetensors_bytes()},
                                ("--model", "{tmp}/lora.safetensors", "without fluxflow metadata")),
    "model-vae-checkpoint": ("--model {tmp}/vae.safetensors", {"vae.safetensors": vae_only},
                             ("--model", "{tmp}/vae.safetensors", "transformer", "VAE-stage")),
    "model-no-tokenizer": ("--model {tmp}/c.safetensors", {"c.safetensors": no_tokenizer},
                           ("--model", "{tmp}/c.safetensors", "tokenizer")),
    "height-zero": ("--model {model} --height 0", {}, ("--height", "0", "> 0")),
    "width-negative": ("--model {model} --width -32", {}, ("--width", "-32", "> 0")),
    "steps-zero": ("--model {model} --steps 0", {}, ("--steps", "0", ">= 1")),
    "batch-size-zero": ("--model {model} --batch_size 0", {}, ("--batch_size", "0", ">= 1")),
    "images-per-prompt-zero": ("--model {model} --num_images_per_prompt 0", {}, ("--num_images_per_prompt", "0")),
    "guidance-nan": ("--model {model} --guidance_scale nan", {}, ("--guidance_scale", "nan")),
    "prompts-file-missing": ("--model {model} --prompts_file {tmp}/prompts.txt", {},
                             ("--prompts_file", "{tmp}/prompts.txt", "no such file")),
    "prompts-file-folder": ("--model {model} --prompts_file {tmp}/prompts", {"prompts": None},
                            ("--prompts_file", "{tmp}/prompts", "folder")),
    "prompts-file-utf16": ("--model {model} --prompts_file {tmp}/p.txt", {"p.txt": "a red circle\n".encode("utf-16")},
                           ("--prompts_file", "{tmp}/p.txt", "not UTF-8", "0xff")),
    "prompts-file-latin1": ("--model {model} --prompts_file {tmp}/p.txt", {"p.txt": "a café sign\n".encode("latin-1")},
                            ("--prompts_file", "{tmp}/p.txt", "not UTF-8", "0xe9", "offset 5")),
    "prompts-file-only-comments": ("--model {model} --prompts_file {tmp}/p.txt", {"p.txt": "# todo\n\n"},
                                   ("--prompts_file", "{tmp}/p.txt", "no prompts")),
    "output-parent-is-file": ("--model {model} --output_dir {tmp}/afile/images", {"afile": "x"},
                              ("--output_dir", "{tmp}/afile/images", "{tmp}/afile is a file")),
    "output-is-file": ("--model {model} --output_dir {tmp}/afile", {"afile": "x"},
                       ("--output_dir", "{tmp}/afile", "is a file")),
    "output-record-corrupt": ("--model {model} --output_dir {tmp}/out", {f"out/{RECORD}": "{half a rec"},
                              ("--output_dir", "{tmp}/out", RECORD, "move it away")),
    "device-unknown": ("--model {model} --device cdua", {}, ("--device", "cdua")),
}
AFTER_LOADING = {  # need the model's numbers or its weights: checked right after loading, before sampling
    "height-not-multiple": ("--model {model} --height 33", {}, ("--height", "33", "multiple of 16", "32 or 48")),
    "width-not-multiple": ("--model {model} --width 8", {}, ("--width", "8", "multiple of 16", "e.g. 16")),
    "model-truncated-folder": ("--model {tmp}/pipe", {"pipe": truncated_pipeline},
                               ("--model", "{tmp}/pipe", "cannot be loaded")),
    "model-truncated-checkpoint": ("--model {tmp}/c.safetensors", {"c.safetensors": truncated_checkpoint},
                                   ("--model", "{tmp}/c.safetensors")),
}


def _plant(tmp: Path, files: dict, pipe) -> None:
    for name, content in files.items():
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            path.mkdir()
        elif callable(content):
            content(pipe, path)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


def _run_case(case, tmp_path, model_dir, pipe, capsys) -> tuple[int, list[str], tuple[str, ...], bool]:
    """Plant the case's files, run it: exit code, stderr lines, the names its error must hold, and whether
    the run changed anything under ``tmp_path``."""
    argv, files, names = case
    _plant(tmp_path, files, pipe)
    before = sorted(tmp_path.rglob("*"))
    fill = {"tmp": str(tmp_path), "model": str(model_dir)}
    args = [a.format(**fill) for a in argv.split()]
    if "--output_dir" not in args:
        args += ["--output_dir", str(tmp_path / "images")]
    capsys.readouterr()
    code = main(["a red circle", *args, "--steps", "1"] if "--steps" not in args else ["a red circle", *args])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    changed = sorted(tmp_path.rglob("*")) != before
    return code, err.strip().splitlines(), tuple(n.format(**fill) for n in names), changed


@pytest.fixture
def no_loading(monkeypatch):
    def refuse(cls, *args, **kwargs):
        raise AssertionError("the model was loaded before the mistake was reported")

    monkeypatch.setattr(FluxFlowPipeline, "from_pretrained", classmethod(refuse))


@pytest.mark.parametrize("case", BEFORE_LOADING.values(), ids=BEFORE_LOADING.keys())
def test_mistakes_found_before_loading_are_one_line_and_exit_2(case, tmp_path, model_dir, pipe, capsys,
                                                                no_loading):
    code, lines, names, changed = _run_case(case, tmp_path, model_dir, pipe, capsys)
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("fluxflow-generate: error: ")
    assert all(name in lines[0] for name in names), (lines[0], names)
    assert not changed  # no output folder, no record


@pytest.mark.parametrize("case", AFTER_LOADING.values(), ids=AFTER_LOADING.keys())
def test_mistakes_found_by_loading_are_one_line_and_exit_2(case, tmp_path, model_dir, pipe, capsys):
    code, lines, names, changed = _run_case(case, tmp_path, model_dir, pipe, capsys)
    assert code == 2 and lines, lines
    errors = [line for line in lines if "error" in line]  # above it only the loader's progress bar
    assert len(errors) == 1 and lines[-1] == errors[0] and errors[0].startswith("fluxflow-generate: error: ")
    assert all(name in errors[0] for name in names), (errors[0], names)
    assert not changed  # nothing sampled, no output folder


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_unavailable_cuda_is_named(tmp_path, model_dir, capsys, no_loading):
    assert main(["a red circle", "--model", str(model_dir), "--device", "cuda:1"]) == 2
    assert capsys.readouterr().err == "fluxflow-generate: error: --device cuda:1: CUDA is not available on this " \
                                      "machine\n"


def test_no_prompts_is_one_line_and_exit_2(model_dir, capsys, no_loading):
    assert main(["--model", str(model_dir)]) == 2
    assert capsys.readouterr().err == ("fluxflow-generate: error: no prompts: pass them as arguments or with "
                                       "--prompts_file\n")


def test_argparse_mistakes_and_help_return_their_codes(model_dir, capsys, no_loading):
    assert main(["a", "--model", str(model_dir), "--height", "big"]) == 2
    assert "--height: invalid int value: 'big'" in capsys.readouterr().err
    assert main(["--help"]) == 0
    assert "--overwrite" in capsys.readouterr().out


def test_console_script_exits_2_with_one_line(tmp_path):
    script = Path(sys.executable).parent / "fluxflow-generate"
    out = subprocess.run([str(script), "a red circle", "--model", str(tmp_path / "nope")], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert out.stderr == f"fluxflow-generate: error: --model {tmp_path / 'nope'}: no such file or folder\n"


def test_good_run_exits_0(model_dir, tmp_path, capsys):
    """The checks let a correct run through: the same flags, valid."""
    prompts = tmp_path / "p.txt"
    prompts.write_text("# a comment\na café sign\n", encoding="utf-8-sig")  # with a BOM, as Notepad saves it
    out = tmp_path / "new" / "images"
    code = main(["--prompts_file", str(prompts), "--model", str(model_dir), "--height", str(SIZE), "--width",
                 str(SIZE), "--steps", "1", "--device", "cpu", "--output_dir", str(out)])
    assert code == 0 and [p.name for p in out.glob("*.png")] == ["0000-a-caf-sign-s0.png"]
    record = json.loads((out / RECORD).read_text(encoding="utf-8"))
    assert record["images"]["0000-a-caf-sign-s0.png"]["prompt"] == "a café sign"
