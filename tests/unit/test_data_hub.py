"""Loading by Hub repo id, against the local stand-in server (tests/hub_server.py) through HF_ENDPOINT.

huggingface_hub reads HF_ENDPOINT when it is imported, so the loading code runs in a subprocess.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from data_helpers import write_imagefolder, write_parquet_repo
from hub_server import hub_env, serve_hub


def run_python(code: str, env: dict, timeout: float = 120) -> list[dict]:
    """Run ``code`` in a fresh interpreter; it prints one JSON object per line, returned as a list."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


LOAD_BY_ID = """
    import json, os
    import datasets
    from fluxflow.training.data import DataConfig, build_dataset
    for name, streaming in (("fake-org/pq", False), ("fake-org/pq", True), ("fake-org/folder", False),
                            ("fake-org/folder", True)):
        ds = build_dataset(DataConfig(dataset_name=name, img_size=16, streaming=streaming, shuffle_buffer_size=0))
        rows = list(ds) if streaming else [ds[i] for i in range(len(ds))]
        print(json.dumps({"name": name, "streaming": streaming, "type": type(ds).__name__,
                          "captions": [c for _, c in rows], "shapes": sorted({tuple(x.shape) for x, _ in rows}),
                          "skipped": ds.skips.total()}))
    try:
        build_dataset(DataConfig(dataset_name="fake-org/absent", img_size=16))
    except Exception as e:
        print(json.dumps({"error": type(e).__name__, "message": str(e)}))
"""

LOAD_FROM_CACHE = """
    import json
    from fluxflow.training.data import DataConfig, build_dataset
    ds = build_dataset(DataConfig(dataset_name="fake-org/pq", dataset_split="test", img_size=16))
    print(json.dumps({"captions": [ds[i][1] for i in range(len(ds))]}))
"""

SNAPSHOT_MODEL = """
    import json, os
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import RepositoryNotFoundError
    from safetensors.torch import load_file
    path = snapshot_download("fake-org/tiny-model")
    weights = load_file(os.path.join(path, "model.safetensors"))
    config = json.load(open(hf_hub_download("fake-org/tiny-model", "config.json")))
    try:
        snapshot_download("fake-org/no-such-model")
        missing = None
    except RepositoryNotFoundError as e:
        missing = type(e).__name__
    print(json.dumps({"files": sorted(os.listdir(path)), "weight": weights["proj.weight"].tolist(),
                      "config": config, "missing": missing}))
"""


@pytest.fixture(scope="module")
def hub_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    write_parquet_repo(root / "datasets" / "fake-org" / "pq", n_train=4, n_test=2, size=24)
    write_imagefolder(root / "datasets" / "fake-org" / "folder", n=3, size=24)
    return root


def test_dataset_by_repo_id_map_style_and_streaming(hub_root, tmp_path):
    with serve_hub(hub_root) as url:
        out = run_python(LOAD_BY_ID, hub_env(url, tmp_path / "hf_home"))
    results = {(r["name"], r["streaming"]): r for r in out if "name" in r}
    train = [f"train caption {i}" for i in range(4)]
    assert results["fake-org/pq", False]["captions"] == train
    assert results["fake-org/pq", False]["type"] == "ImageCaptionDataset"
    assert results["fake-org/pq", True]["captions"] == train
    assert results["fake-org/pq", True]["type"] == "StreamingImageCaptionDataset"
    folder = [f"folder caption {i}" for i in range(3)]
    assert results["fake-org/folder", False]["captions"] == folder
    assert results["fake-org/folder", True]["captions"] == folder  # images fetched by URL while streaming
    assert all(r["shapes"] == [[3, 16, 16]] and r["skipped"] == 0 for r in results.values())
    error = next(r for r in out if "error" in r)
    assert error["error"] == "DataError" and "--dataset_name 'fake-org/absent' could not be loaded" in error["message"]

    # the first run filled the cache: an offline process now loads the same repo without the server
    env = hub_env("http://127.0.0.1:9", tmp_path / "hf_home")
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    assert run_python(LOAD_FROM_CACHE, env)[0]["captions"] == ["test caption 0", "test caption 1"]


def test_model_snapshot_download(tmp_path):
    import torch
    from safetensors.torch import save_file

    repo = tmp_path / "hub" / "models" / "fake-org" / "tiny-model"
    (repo / "sub").mkdir(parents=True)
    save_file({"proj.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3)}, str(repo / "model.safetensors"))
    (repo / "config.json").write_text(json.dumps({"_class_name": "Tiny", "width": 3}))
    (repo / "sub" / "extra.json").write_text("{}")
    with serve_hub(tmp_path / "hub") as url:
        (result,) = run_python(SNAPSHOT_MODEL, hub_env(url, tmp_path / "hf_home"))
    assert result["files"] == ["config.json", "model.safetensors", "sub"]
    assert result["weight"] == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    assert result["config"] == {"_class_name": "Tiny", "width": 3}
    assert result["missing"] == "RepositoryNotFoundError"


def test_server_answers_ranges_and_clean_404s(tmp_path):
    import urllib.error
    import urllib.request

    repo = tmp_path / "datasets" / "o" / "d"
    repo.mkdir(parents=True)
    (repo / "f.bin").write_bytes(bytes(range(100)))
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via an HTTP(S)_PROXY
    with serve_hub(tmp_path) as url:
        req = urllib.request.Request(f"{url}/datasets/o/d/resolve/main/f.bin", headers={"Range": "bytes=10-19"})
        with direct.open(req) as r:
            assert r.status == 206 and r.read() == bytes(range(10, 20))
            assert r.headers["Content-Range"] == "bytes 10-19/100" and len(r.headers["X-Repo-Commit"]) == 40
        with direct.open(f"{url}/api/datasets/o/d/tree/main?recursive=true") as r:
            assert [e["path"] for e in json.load(r)] == ["f.bin"]
        for path, code in (("/datasets/o/d/resolve/main/nope.txt", "EntryNotFound"),
                           ("/api/datasets/o/missing", "RepoNotFound"), ("/api/agent-harnesses", "RepoNotFound")):
            with pytest.raises(urllib.error.HTTPError) as err:
                direct.open(url + path)
            assert err.value.code == 404 and err.value.headers["X-Error-Code"] == code
