"""FluxFlowPipeline.from_pretrained(repo_id) end to end against the local Hub stand-in (HF_ENDPOINT)."""

import subprocess
import sys
import textwrap

import numpy as np
from hub_server import hub_env, serve_hub
from pipeline_cases import run, tiny_pipeline

SCRIPT = textwrap.dedent("""
    import sys, numpy as np, torch
    from fluxflow import FluxFlowPipeline
    pipe = FluxFlowPipeline.from_pretrained("fake-org/tiny-fluxflow")
    pipe.set_progress_bar_config(disable=True)
    images = pipe("a red circle", num_inference_steps=3, height=32, width=32, output_type="np",
                  generator=torch.Generator().manual_seed(0)).images
    np.save(sys.argv[1], images)
""")


def test_load_by_repo_id_downloads_the_snapshot_and_samples_identically(tmp_path):
    pipe = tiny_pipeline()
    pipe.save_pretrained(tmp_path / "hub" / "models" / "fake-org" / "tiny-fluxflow")
    with serve_hub(tmp_path / "hub") as url:
        result = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "images.npy")],
                                env=hub_env(url, tmp_path / "hf_home"), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert np.array_equal(np.load(tmp_path / "images.npy"), run(pipe))
    cached = list((tmp_path / "hf_home").rglob("model_index.json"))
    assert cached, "the snapshot was not downloaded into the Hub cache"
