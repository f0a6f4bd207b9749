"""The README's main job in its quick form: data -> VAE -> flow -> pipeline -> judged held-out images."""

import importlib.util
import json
import re
from pathlib import Path

import pytest
from PIL import Image

from fluxflow.training.metrics import read_metrics

DEMO = Path(__file__).parents[2] / "examples" / "shapes_demo.py"


def load_demo():
    spec = importlib.util.spec_from_file_location("shapes_demo", DEMO)
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    return demo


def test_help_states_the_plans_defaults(capsys):
    """--help names the step counts the script really runs (it once said 1,000/2,000 for 2,000/3,000)."""
    demo = load_demo()
    with pytest.raises(SystemExit) as exit_info:
        demo.main(["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # undo argparse's line wrapping
    number = r"(\d[\d,]*)"

    def stated(pattern: str, where: str = text) -> list[int]:
        match = re.search(pattern, where, re.IGNORECASE)
        assert match, f"--help does not state {pattern!r}: {where}"
        return [int(g.replace(",", "")) for g in match.groups()]

    options = text.split("options:")[-1]
    for stage in ("vae", "flow"):
        default, quick = stated(rf"--{stage}_steps \S+ {stage} training steps \(default:? {number}; "
                                rf"(?:with --quick:?|quick) {number}\)", options)
        assert (default, quick) == (demo.FULL[f"{stage}_steps"], demo.QUICK[f"{stage}_steps"])
    quick_help = re.search(r"--quick (.*?) --out", options).group(1)
    assert stated(rf"{number} images, VAE {number} steps, flow {number} steps", quick_help) == [
        demo.QUICK["n"], demo.QUICK["vae_steps"], demo.QUICK["flow_steps"]]
    assert demo.QUICK_TIME in quick_help and demo.FULL_TIME in quick_help
    # the measured run in the docstring is of the full plan
    assert stated(rf"VAE {number} steps \d+ s, flow {number} steps") == [
        demo.FULL["vae_steps"], demo.FULL["flow_steps"]]


def test_quick_shapes_demo_runs_end_to_end_and_a_stop_in_the_vae_stage_waits(tmp_path, monkeypatch):
    """A SIGTERM during the VAE stage stops the demo there (it once went on to train the flow processor on the
    unfinished VAE); run again, it finishes that stage, then the flow stage."""
    from resume_check import sigterm_in

    demo = load_demo()
    sigterm_in(monkeypatch, "1-vae", 10)
    assert demo.main(["--quick", "--out", str(tmp_path), "--flow_steps", "30", "--seed", "5"]) == 1
    assert (tmp_path / "stages" / "1-vae" / "state" / "checkpoint-11").is_dir()  # the step in progress
    assert not (tmp_path / "stages" / "2-flow").exists()
    assert demo.main(["--quick", "--out", str(tmp_path), "--flow_steps", "30", "--seed", "5"]) == 0
    result = json.loads((tmp_path / "result.json").read_text(encoding="utf-8"))
    assert result["n"] == demo.QUICK["n_test"] and 0.0 <= result["accuracy"] <= 1.0
    assert result["vae_ceiling"]["n"] == demo.QUICK["n_test"] and 0.0 <= result["vae_ceiling"]["shape"] <= 1.0
    assert Image.open(tmp_path / "grid.png").size == (8 * 64, 2 * 64)
    assert (tmp_path / "pipeline" / "model_index.json").exists()
    from fluxflow.training.checkpoint import state_folders

    stages = tmp_path / "stages"
    assert state_folders(stages / "2-flow")[-1].name == "checkpoint-30"  # --flow_steps overrides the plan
    vae_rows = read_metrics(stages / "1-vae" / "logs" / "metrics.jsonl")
    assert [r["step"] for r in vae_rows if "loss/vae" in r] == [25, 30]  # --log_interval 25, and the end
    rows = read_metrics(stages / "2-flow" / "logs" / "metrics.jsonl")
    assert [r["step"] for r in rows if "val/flow/loss" in r and "val/judge/accuracy" in r] == [30]
    assert "val/vae/psnr" in vae_rows[-1]
    assert all((stages / stage / "report.html").is_file() for stage in ("1-vae", "2-flow"))
    for stage in ("1-vae", "2-flow"):  # --seed reaches both stages
        assert json.loads((stages / stage / "logs" / "train_config.json").read_text(encoding="utf-8"))["seed"] == 5
    # the exported models have the shapes the pipeline file asks for
    import yaml

    vae_stage, flow_stage = yaml.safe_load(demo.PIPELINE.read_text(encoding="utf-8"))["stages"]
    config = {name: json.loads((tmp_path / "pipeline" / name / "config.json").read_text(encoding="utf-8"))
              for name in ("vae", "transformer")}
    assert config["vae"]["block_out_channels"] == vae_stage["vae_block_out_channels"]
    assert config["vae"]["latent_channels"] == vae_stage["vae_latent_channels"] == config["transformer"]["in_channels"]
    assert config["transformer"]["patch_size"] == flow_stage["flow_patch_size"]
