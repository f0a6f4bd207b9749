"""The README's main job in its quick form: data -> VAE -> flow -> pipeline -> judged held-out images."""

import importlib.util
import json
from pathlib import Path

from PIL import Image

DEMO = Path(__file__).parents[2] / "examples" / "shapes_demo.py"


def test_quick_shapes_demo_runs_end_to_end(tmp_path):
    spec = importlib.util.spec_from_file_location("shapes_demo", DEMO)
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    assert demo.main(["--quick", "--out", str(tmp_path), "--flow_steps", "30"]) == 0
    result = json.loads((tmp_path / "result.json").read_text(encoding="utf-8"))
    assert result["n"] == demo.QUICK["n_test"] and 0.0 <= result["accuracy"] <= 1.0
    assert result["vae_ceiling"]["n"] == demo.QUICK["n_test"] and 0.0 <= result["vae_ceiling"]["shape"] <= 1.0
    assert Image.open(tmp_path / "grid.png").size == (8 * 64, 2 * 64)
    assert (tmp_path / "flow" / "pipeline" / "model_index.json").exists()
    from fluxflow.training.checkpoint import state_folders

    assert state_folders(tmp_path / "flow")[-1].name == "checkpoint-30"  # --flow_steps overrides the plan
