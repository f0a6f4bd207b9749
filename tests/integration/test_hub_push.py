"""``--push_to_hub`` end to end against the local Hub stand-in (tests/hub_server.py, through HF_ENDPOINT).

A real exported pipeline is pushed with :class:`~fluxflow.training.hub.HubPusher` and loaded back by repo id;
checkpoints go in the background; the token reaches the server and nowhere else. huggingface_hub reads
HF_ENDPOINT when imported, so the Hub code runs in a subprocess.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request

import numpy as np
import torch
from hub_server import hub_env, serve_hub
from huggingface_hub import ModelCard
from PIL import Image
from pipeline_cases import run, tiny_pipeline
from safetensors.torch import save_file

from fluxflow.training.export import export_pipeline
from fluxflow.training.hub import TAGS

TOKEN = "hf_fluxflowTestToken0123456789"
REPO = "fake-user/tiny-run"  # the stand-in's user (the token's owner) / the output folder's name

PUSH = """
    import json, logging, os, sys, threading, time
    from pathlib import Path
    import numpy as np, torch
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
    from huggingface_hub import ModelCard
    from fluxflow import FluxFlowPipeline
    from fluxflow.training.hub import HubPusher
    out, repo_folder, images = sys.argv[1:4]
    arrived = lambda: (Path(repo_folder) / "checkpoints" / "checkpoint.safetensors").is_file()
    pusher = HubPusher(out, token=os.environ["FLUXFLOW_TEST_TOKEN"])  # repo: <user>/<output folder name>
    gate = threading.Event()
    pusher.api.run_as_future(gate.wait)  # hold huggingface_hub's upload worker: the push stays in flight
    start = time.perf_counter()
    first = pusher.push_checkpoint(2)
    report = {"seconds": time.perf_counter() - start, "in_flight": not first.done(),
              "arrived_early": arrived()}
    report["second_skipped"] = pusher.push_checkpoint(3) is None  # due while the first is in flight
    gate.set()
    report["waited"] = pusher.wait(60)
    report.update(first_ok=first.exception() is None, arrived=arrived(), repo_id=pusher.repo_id)
    report["commit"] = pusher.push_final(3)
    pipe = FluxFlowPipeline.from_pretrained(pusher.repo_id)
    pipe.set_progress_bar_config(disable=True)
    np.save(images, pipe("a red circle", num_inference_steps=3, height=32, width=32, output_type="np",
                         generator=torch.Generator().manual_seed(0)).images)
    card = ModelCard.load(pusher.repo_id)
    report.update(card=card.data.to_dict(), text=card.text)
    print(json.dumps(report))
"""

FAIL = """
    import json, logging, os, sys
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
    from fluxflow.training.hub import HubPushError, HubPusher
    out = sys.argv[1]
    report = {}
    try:
        HubPusher(out, token="hf_notAValidToken")
    except HubPushError as err:
        report["create"] = str(err)
    pusher = HubPusher(out, token=os.environ["FLUXFLOW_TEST_TOKEN"])
    pusher.api.token = "hf_revokedMidRun"  # the token stops working during the run
    report["returned"] = pusher.push_checkpoint(1) is not None
    report["waited"] = pusher.wait(60)
    try:
        pusher.push_final(1)
    except HubPushError as err:
        report["final"] = str(err)
    print(json.dumps(report))
"""


def python(code: str, args: list, env: dict) -> tuple[dict, str]:
    """Run ``code`` in a fresh interpreter; its last stdout line is a JSON report: that, and all output."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stdout + proc.stderr


def write_run(out, pipe=None) -> None:
    """An output folder as a flow run leaves it: checkpoint, logs, grids and (with ``pipe``) pipeline/."""
    (out / "logs").mkdir(parents=True)
    (out / "samples").mkdir()
    save_file({"w": torch.arange(4.0)}, out / "checkpoint.safetensors")
    (out / "logs" / "metrics.jsonl").write_text('{"step": 2, "loss/flow": 0.5}\n')
    (out / "logs" / "train_config.json").write_text(json.dumps({"push_to_hub": True, "hub_token": "***"}))
    for name in ("flow_grid_0001.webp", "flow_grid_0002.webp", "vae_grid_0002.webp"):
        Image.new("RGB", (16, 16), "green").save(out / "samples" / name)
    if pipe is not None:
        card = {"name": out.name, "backbone": "bert", "steps": 3, "data": "fake-org/shapes", "size": 32,
                "caption": "a red circle", "shift": 3.0, "repo_id": REPO}
        export_pipeline(pipe, out / "pipeline", card, grid=Image.new("RGB", (64, 64), "red"))
    else:
        (out / "pipeline").mkdir()
        (out / "pipeline" / "model_index.json").write_text("{}")


def test_push_final_loads_by_repo_id_and_checkpoints_go_in_the_background(tmp_path):
    pipe, out, hub = tiny_pipeline(), tmp_path / "tiny-run", tmp_path / "hub"
    write_run(out, pipe)
    with serve_hub(hub) as url:
        env = {**hub_env(url, tmp_path / "hf_home"), "FLUXFLOW_TEST_TOKEN": TOKEN}
        report, output = python(PUSH, [out, hub / "models" / REPO, tmp_path / "images.npy"], env)
        auth = dict(url.auth)

    # checkpoints: the call returns at once, a push due meanwhile is skipped, the files arrive afterwards
    assert report["in_flight"] and not report["arrived_early"] and report["seconds"] < 2
    assert report["second_skipped"] and report["waited"] and report["first_ok"] and report["arrived"]
    repo = hub / "models" / REPO
    for rel in ("checkpoint.safetensors", "logs/metrics.jsonl", "logs/train_config.json",
                "samples/flow_grid_0002.webp", "samples/vae_grid_0002.webp"):
        assert (repo / "checkpoints" / rel).read_bytes() == (out / rel).read_bytes(), rel
    assert not (repo / "checkpoints" / "samples" / "flow_grid_0001.webp").exists()  # only the newest grids
    assert not list(out.glob(".hub-push-*"))  # staging folders go

    # the pipeline at the root: loads by repo id and samples like the exported one
    assert report["repo_id"] == REPO and "/commit/" in report["commit"]
    assert np.array_equal(np.load(tmp_path / "images.npy"), run(pipe))
    card = report["card"]
    assert card["license"] == "other" and card["library_name"] == "diffusers" and card["tags"] == TAGS
    assert card["pipeline_tag"] == "text-to-image" and card["datasets"] == ["fake-org/shapes"]
    assert "![samples](./samples.webp)" in report["text"] and (repo / "samples.webp").is_file()
    assert f'FluxFlowPipeline.from_pretrained("{REPO}")' in report["text"]
    assert ModelCard.load(repo / "README.md").data.widget[0]["output"]["url"] == "samples.webp"

    # the token: sent with every write, nowhere in the output folder or the (debug-level) logs
    writes = [p for p in auth if p == "/api/repos/create" or p.startswith(f"/api/models/{REPO}/")]
    assert {f"/api/models/{REPO}/preupload/main", f"/api/models/{REPO}/commit/main"} <= set(writes)
    assert all(set(auth[p]) == {f"Bearer {TOKEN}"} for p in writes if "preupload" in p or "commit" in p)
    assert auth["/api/repos/create"] == [f"Bearer {TOKEN}"]
    assert TOKEN not in output
    assert not [p for p in out.rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]


def test_a_refused_token_is_a_clear_error_and_a_failed_checkpoint_push_only_a_warning(tmp_path):
    out = tmp_path / "run"
    write_run(out)
    with serve_hub(tmp_path / "hub", tokens={TOKEN}) as url:
        env = {**hub_env(url, tmp_path / "hf_home"), "FLUXFLOW_TEST_TOKEN": TOKEN}
        report, output = python(FAIL, [out], env)
    assert "--hub_token" in report["create"] and "hf auth login" in report["create"]
    assert report["returned"] and report["waited"]  # a failing background push does not raise
    assert "pushing the checkpoint to the Hub failed (training goes on)" in output and "--hub_token" in output
    final = report["final"]
    assert "--hub_token" in final and f"retry with `hf upload fake-user/run {out / 'pipeline'} ." in final
    for token in (TOKEN, "hf_notAValidToken", "hf_revokedMidRun"):
        assert token not in output
    assert (out / "pipeline" / "model_index.json").is_file()  # the local files stay


def test_the_stand_in_lists_files_a_commit_adds_in_subfolders(tmp_path):
    """The stand-in caches a repo's listing by its top folder's mtime: a commit must drop that cache. Writes and
    whoami need a token."""
    (tmp_path / "models" / REPO / "sub").mkdir(parents=True)
    (tmp_path / "models" / REPO / "sub" / "a.txt").write_text("a")

    def call(url: str, body: bytes | None = None, token: str | None = TOKEN) -> dict:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        with urllib.request.urlopen(urllib.request.Request(url, data=body, headers=headers)) as r:
            return json.loads(r.read())

    with serve_hub(tmp_path) as url:
        before = call(f"{url}/api/models/{REPO}")
        line = {"key": "file", "value": {"path": "sub/b.txt", "encoding": "base64",
                                         "content": base64.b64encode(b"b").decode()}}
        header = {"key": "header", "value": {"summary": "s"}}
        body = b"\n".join(json.dumps(x).encode() for x in (header, line))
        commit = call(f"{url}/api/models/{REPO}/commit/main", body)
        after = call(f"{url}/api/models/{REPO}")
        whoami = call(f"{url}/api/whoami-v2")["name"]
        refused = []
        for path, data in ((f"/api/models/{REPO}/commit/main", body), ("/api/whoami-v2", None)):
            try:
                call(url + path, data, token=None)
            except urllib.error.HTTPError as err:
                refused.append(err.code)
    assert [s["rfilename"] for s in before["siblings"]] == ["sub/a.txt"]
    assert [s["rfilename"] for s in after["siblings"]] == ["sub/a.txt", "sub/b.txt"]
    assert commit["commitOid"] == after["sha"] != before["sha"] and commit["pullRequestUrl"] is None
    assert whoami == "fake-user" and refused == [401, 401] and url.auth[f"/api/models/{REPO}/commit/main"] == [f"Bearer {TOKEN}", None]
