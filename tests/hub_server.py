"""A local stand-in for the HuggingFace Hub, for tests that load by repo id without the network.

    from hub_server import serve_hub
    with serve_hub(root) as url:        # url = "http://127.0.0.1:PORT"
        ...                              # run the loading code in a subprocess with HF_ENDPOINT=url

It serves plain folders ``root/datasets/{org}/{name}/`` and ``root/models/{org}/{name}/`` with the endpoints
that datasets 5, huggingface_hub 2 and transformers 5 call: repo info (also at a revision), the file tree,
paths-info, and ``resolve`` downloads with ETag / X-Repo-Commit / Range. Every revision is the folder's
content when first asked for (build the folders before the loading code runs). ``HF_ENDPOINT`` is read
when huggingface_hub is imported, hence the subprocess.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

_API = re.compile(r"^/api/(?P<kind>datasets|models)/(?P<repo>[^/]+/[^/]+)(?:/(?P<rest>.*))?$")
_RESOLVE = re.compile(r"^/(?:(?P<kind>datasets)/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
_LAST_MODIFIED = "2026-01-01T00:00:00.000Z"


_OIDS: dict[tuple[str, int, int], str] = {}  # (path, size, mtime) -> sha1: hash each file version once


def _oid(path: Path) -> str:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _OIDS:
        _OIDS[key] = hashlib.sha1(path.read_bytes()).hexdigest()
    return _OIDS[key]


class _Repo:
    """One served folder: its files, a commit sha derived from their content, Hub-shaped descriptions."""

    def __init__(self, folder: Path, repo_id: str) -> None:
        self.folder, self.repo_id = folder, repo_id
        self.files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        digest = hashlib.sha1()
        for f in self.files:
            digest.update(f.encode() + b"\0" + _oid(folder / f).encode())
        self.sha = digest.hexdigest()

    def info(self) -> dict:
        siblings = [{"rfilename": f, "size": (self.folder / f).stat().st_size} for f in self.files]
        return {"id": self.repo_id, "modelId": self.repo_id, "sha": self.sha, "private": False,
                "gated": False, "disabled": False, "lastModified": _LAST_MODIFIED, "tags": [], "cardData": {},
                "downloads": 0, "likes": 0, "siblings": siblings}

    def entry(self, rel: str) -> dict | None:
        p = self.folder / rel
        if p.is_file():
            return {"type": "file", "oid": _oid(p), "size": p.stat().st_size, "path": rel}
        if p.is_dir():
            oid = hashlib.sha1(rel.encode()).hexdigest()
            return {"type": "directory", "oid": oid, "size": 0, "path": rel}
        return None

    def tree(self, rel: str, recursive: bool) -> list[dict] | None:
        base = (self.folder / rel) if rel else self.folder
        if not base.is_dir():
            return None
        children = base.rglob("*") if recursive else base.iterdir()
        return [self.entry(c.relative_to(self.folder).as_posix()) for c in sorted(children)]


class _Handler(BaseHTTPRequestHandler):
    root: Path  # these three are set on the subclass made per server
    repos: dict
    lock: threading.Lock
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms delayed-ACK stalls

    def log_message(self, fmt, *args) -> None:  # quiet; set FLUXFLOW_HUB_LOG=1 to see requests
        if os.environ.get("FLUXFLOW_HUB_LOG"):
            super().log_message(fmt, *args)

    # ------------------------------------------------------------------------------------------- helpers
    def _repo(self, kind: str | None, repo_id: str) -> _Repo | None:
        folder = self.root / ("datasets" if kind == "datasets" else "models") / repo_id
        if not folder.is_dir():
            return None
        # Listing and hashing a repo on every request makes a 500-file download take half a minute: read
        # it once, again only when its top folder changes (a file added or removed there).
        key = (str(folder), folder.stat().st_mtime_ns)
        with self.lock:
            if key not in self.repos:
                self.repos[key] = _Repo(folder, repo_id)
            return self.repos[key]

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, head: bool = False) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, status: int, obj, head: bool = False) -> None:
        self._send(status, json.dumps(obj).encode(), {"Content-Type": "application/json"}, head)

    def _not_found(self, code: str, head: bool = False) -> None:
        self._send(404, json.dumps({"error": code}).encode(),
                   {"Content-Type": "application/json", "X-Error-Code": code, "X-Error-Message": code}, head)

    # ------------------------------------------------------------------------------------------- routes
    def do_HEAD(self) -> None:
        self._route(head=True)

    def do_GET(self) -> None:
        self._route(head=False)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        m = _API.match(unquote(urlsplit(self.path).path))
        repo = self._repo(m["kind"], m["repo"]) if m else None
        if repo is None or not (m["rest"] or "").startswith("paths-info/"):
            return self._not_found("RepoNotFound")
        if self.headers.get("Content-Type", "").startswith("application/json"):
            paths = json.loads(body or "{}").get("paths", [])
        else:
            paths = parse_qs(body).get("paths", [])
        paths = [paths] if isinstance(paths, str) else paths
        self._json(200, [e for e in (repo.entry(p.strip("/")) for p in paths) if e is not None])

    def _route(self, head: bool) -> None:
        url = urlsplit(self.path)
        path, query = unquote(url.path), parse_qs(url.query)
        m = _API.match(path)
        if m:
            return self._api(m, query, head)
        m = _RESOLVE.match(path)
        if m:
            return self._resolve(m, head)
        self._not_found("RepoNotFound", head)  # /api/agent-harnesses and anything else we do not serve

    def _api(self, m, query, head: bool) -> None:
        repo = self._repo(m["kind"], m["repo"])
        if repo is None:
            return self._not_found("RepoNotFound", head)
        rest = m["rest"] or ""
        if rest == "" or rest.startswith("revision/"):
            return self._json(200, repo.info(), head)
        tree = re.match(r"^tree/[^/]+/?(?P<sub>.*)$", rest)
        if tree:
            recursive = query.get("recursive", ["false"])[0].lower() == "true"
            entries = repo.tree(tree["sub"].strip("/"), recursive)
            if entries is None:
                return self._not_found("EntryNotFound", head)
            return self._json(200, entries, head)
        self._not_found("EntryNotFound", head)

    def _resolve(self, m, head: bool) -> None:
        repo = self._repo(m["kind"], m["repo"])
        if repo is None:
            return self._not_found("RepoNotFound", head)
        file = repo.folder / m["path"]
        if not file.is_file() or not file.resolve().is_relative_to(repo.folder.resolve()):
            return self._not_found("EntryNotFound", head)
        data = file.read_bytes()
        headers = {"ETag": f'"{_oid(file)}"', "X-Repo-Commit": repo.sha, "Accept-Ranges": "bytes",
                   "Content-Type": "application/octet-stream"}
        rng = re.match(r"^bytes=(\d*)-(\d*)$", self.headers.get("Range", ""))
        if rng and data:
            start = int(rng[1]) if rng[1] else max(0, len(data) - int(rng[2] or 0))
            end = min(int(rng[2]), len(data) - 1) if rng[1] and rng[2] else len(data) - 1
            if start >= len(data):
                return self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"}, head)
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            return self._send(206, data[start:end + 1], headers, head)
        self._send(200, data, headers, head)


@contextlib.contextmanager
def serve_hub(root: str | os.PathLike) -> Iterator[str]:
    """Serve ``root`` as a Hub on ``127.0.0.1`` (a free port) from a daemon thread; yields the base URL."""
    handler = type("HubHandler", (_Handler,), {"root": Path(root), "repos": {}, "lock": threading.Lock()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="fake-hub", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def hub_env(url: str, hf_home: str | os.PathLike) -> dict[str, str]:
    """Environment for a subprocess that should talk to the stand-in: online, no telemetry, fresh cache."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_ENDPOINT=url, HF_HUB_OFFLINE="0", HF_DATASETS_OFFLINE="0", TRANSFORMERS_OFFLINE="0",
               HF_HUB_DISABLE_TELEMETRY="1", HF_HOME=str(hf_home), HF_HUB_DISABLE_PROGRESS_BARS="1",
               HF_DATASETS_DISABLE_PROGRESS_BARS="1",
               NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    return env
