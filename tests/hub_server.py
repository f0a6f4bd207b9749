"""A local stand-in for the HuggingFace Hub, for tests that load or push by repo id without the network.

    from hub_server import serve_hub
    with serve_hub(root) as url:        # url = "http://127.0.0.1:PORT" (a str; url.auth: see below)
        ...                              # run the Hub code in a subprocess with HF_ENDPOINT=url

It serves plain folders ``root/datasets/{org}/{name}/`` and ``root/models/{org}/{name}/`` with the endpoints
that datasets 5, huggingface_hub 2 and transformers 5 call to read: repo info (also at a revision), the file
tree, paths-info, and ``resolve`` downloads with ETag / X-Repo-Commit / Range. Every revision is the folder's
content when asked for.

And the ones huggingface_hub 2 calls to write (``create_repo``, ``upload_folder``, ``create_commit``), each
needing a ``Bearer`` token (401 without one, or with one outside ``tokens`` when given):
``GET /api/whoami-v2`` (user ``user``), ``POST /api/repos/create`` (a new folder under the organization or
``user``; 409 with its url when it exists), ``POST /api/{kind}/{repo}/preupload/{rev}`` and ``POST
/api/{kind}/{repo}/commit/{rev}`` (ndjson: ``file`` lines in base64, ``deletedFile`` / ``deletedFolder``;
``lfsFile`` is refused); and, without a token, ``POST /api/validate-yaml`` (400 when the README's front
matter is no YAML mapping). Preupload answers ``uploadMode: "regular"`` for every file (with the git oid of a
file already there, so unchanged files are skipped): huggingface_hub 2.4 takes that answer as it comes, with
no size or extension rule of its own, and sends the content inside the commit; its Xet pipeline (hf_xet
installed) and LFS only start for files answered ``"lfs"``, so nothing else is needed. A commit writes its
files into the folder, each atomically, under one lock, and drops the cached listing. Revisions are ignored:
every write lands in the folder. ``url.auth`` maps each request path to the Authorization headers it came
with (``None``: none), so a test can check a token was sent. ``HF_ENDPOINT`` is read when huggingface_hub is
imported, hence the subprocess.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

_API = re.compile(r"^/api/(?P<kind>datasets|models)/(?P<repo>[^/]+/[^/]+)(?:/(?P<rest>.*))?$")
_RESOLVE = re.compile(r"^/(?:(?P<kind>datasets)/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
_LAST_MODIFIED = "2026-01-01T00:00:00.000Z"
_BAD_TOKEN = "Invalid credentials in Authorization header"  # the Hub's words: huggingface_hub keys on them


_OIDS: dict[tuple[str, int, int], str] = {}  # (path, size, mtime) -> sha1: hash each file version once


def _oid(path: Path) -> str:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _OIDS:
        _OIDS[key] = hashlib.sha1(path.read_bytes()).hexdigest()
    return _OIDS[key]


def _git_oid(path: Path) -> str:
    """The git blob sha1: the Hub's preupload answers it for a file already there (unchanged ones skip)."""
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _write_atomically(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, target)


class _Repo:
    """One served folder: its files, a commit sha derived from their content, Hub-shaped descriptions."""

    def __init__(self, folder: Path, repo_id: str, private: bool = False) -> None:
        self.folder, self.repo_id, self.private = folder, repo_id, private
        self.files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        digest = hashlib.sha1()
        for f in self.files:
            digest.update(f.encode() + b"\0" + _oid(folder / f).encode())
        self.sha = digest.hexdigest()

    def info(self) -> dict:
        siblings = [{"rfilename": f, "size": (self.folder / f).stat().st_size} for f in self.files]
        return {"id": self.repo_id, "modelId": self.repo_id, "sha": self.sha, "private": self.private,
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
    root: Path  # these are set on the subclass made per server
    repos: dict  # (folder, mtime) -> _Repo
    lock: threading.Lock  # guards repos and auth, and serializes commits
    auth: dict  # request path -> [Authorization header or None, ...]
    tokens: frozenset | None  # the tokens accepted for writes (None: any)
    user: str  # whoami's name: the namespace of a repo created without an organization
    private: dict  # repo folder -> private flag given at creation
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
        # it once, again only when its top folder changes (a file added or removed there) or a commit lands
        # (it drops the folder's entries: files it writes in subfolders leave the top folder's mtime alone).
        key = (str(folder), folder.stat().st_mtime_ns)
        with self.lock:
            if key not in self.repos:
                self.repos[key] = _Repo(folder, repo_id, self.private.get(str(folder), False))
            return self.repos[key]

    def _forget(self, folder: Path) -> None:
        """Drop the cached listings of ``folder`` (call with ``lock`` held)."""
        for key in [k for k in self.repos if k[0] == str(folder)]:
            del self.repos[key]

    def _record(self, path: str) -> None:
        with self.lock:
            self.auth.setdefault(path, []).append(self.headers.get("Authorization"))

    def _user(self) -> str | None:
        """The user of the request's Bearer token; answers 401 (and returns ``None``) without a valid one."""
        token = re.match(r"^Bearer (\S+)$", self.headers.get("Authorization", ""))
        if token and (self.tokens is None or token[1] in self.tokens):
            return self.user
        self._send(401, json.dumps({"error": _BAD_TOKEN}).encode(),
                   {"Content-Type": "application/json", "X-Error-Message": _BAD_TOKEN})
        return None

    def _base(self) -> str:
        return f"http://{self.headers.get('Host') or '127.0.0.1:%d' % self.server.server_address[1]}"

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
        path = unquote(urlsplit(self.path).path)
        self._record(path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if path == "/api/repos/create":
            return self._create(json.loads(body or b"{}"))
        if path == "/api/validate-yaml":
            return self._validate_yaml(json.loads(body or b"{}").get("content", ""))
        m = _API.match(path)
        repo = self._repo(m["kind"], m["repo"]) if m else None
        rest = (m["rest"] or "") if m else ""
        if rest.startswith(("preupload/", "commit/")):
            if self._user() is None:
                return None
            if repo is None:
                return self._not_found("RepoNotFound")
            if rest.startswith("preupload/"):
                return self._preupload(repo, json.loads(body or b"{}"))
            return self._commit(repo, body)
        if repo is None or not rest.startswith("paths-info/"):
            return self._not_found("RepoNotFound")
        text = body.decode()
        if self.headers.get("Content-Type", "").startswith("application/json"):
            paths = json.loads(text or "{}").get("paths", [])
        else:
            paths = parse_qs(text).get("paths", [])
        paths = [paths] if isinstance(paths, str) else paths
        self._json(200, [e for e in (repo.entry(p.strip("/")) for p in paths) if e is not None])

    # ------------------------------------------------------------------------------------------- writes
    def _create(self, payload: dict) -> None:
        user = self._user()
        if user is None:
            return None
        kind = {"dataset": "datasets", "model": "models", None: "models"}.get(payload.get("type"))
        if kind is None:
            return self._send(400, json.dumps({"error": f"repo type {payload.get('type')!r}"}).encode())
        repo_id = f"{payload.get('organization') or user}/{payload['name']}"
        folder = self.root / kind / repo_id
        url = f"{self._base()}/{'datasets/' if kind == 'datasets' else ''}{repo_id}"
        with self.lock:
            if folder.is_dir():
                return self._json(409, {"error": "You already created this model repo", "url": url})
            folder.mkdir(parents=True)
            self.private[str(folder)] = payload.get("visibility") == "private" or bool(payload.get("private"))
        self._json(200, {"url": url, "name": repo_id, "id": repo_id})

    def _validate_yaml(self, readme: str) -> None:
        """400 with the parser's message when the README's front matter is not a YAML mapping."""
        front = re.match(r"^---\n(.*?)\n---\n", readme, re.S)
        try:
            if front and not isinstance(yaml.safe_load(front[1]), dict):
                raise yaml.YAMLError("the metadata is not a mapping")
        except yaml.YAMLError as err:
            return self._json(400, {"errors": [{"message": str(err)}], "warnings": []})
        self._json(200, {"errors": [], "warnings": []})

    def _preupload(self, repo: _Repo, payload: dict) -> None:
        files = []
        for f in payload.get("files", []):
            there = repo.folder / f["path"]
            oid = _git_oid(there) if there.is_file() else None
            files.append({"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": oid})
        self._json(200, {"files": files, "commitOid": repo.sha})

    def _commit(self, repo: _Repo, body: bytes) -> None:
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        folder = repo.folder.resolve()
        targets = []
        for line in lines:
            if line["key"] == "header":
                continue
            if line["key"] not in ("file", "deletedFile", "deletedFolder"):
                return self._send(400, json.dumps({"error": f"{line['key']} is not served here"}).encode())
            target = (folder / line["value"]["path"]).resolve()
            if target == folder or not target.is_relative_to(folder):
                return self._send(400, json.dumps({"error": f"bad path {line['value']['path']!r}"}).encode())
            targets.append((line, target))
        with self.lock:
            for line, target in targets:
                if line["key"] == "file":
                    _write_atomically(target, base64.b64decode(line["value"]["content"]))
                elif line["key"] == "deletedFile":
                    target.unlink(missing_ok=True)
                else:
                    shutil.rmtree(target, ignore_errors=True)
            self._forget(repo.folder)
            sha = _Repo(repo.folder, repo.repo_id).sha
        self._json(200, {"commitUrl": f"{self._base()}/{repo.repo_id}/commit/{sha}", "commitOid": sha,
                         "pullRequestUrl": None})

    def _route(self, head: bool) -> None:
        url = urlsplit(self.path)
        path, query = unquote(url.path), parse_qs(url.query)
        self._record(path)
        if path == "/api/whoami-v2":
            user = self._user()
            if user is not None:
                self._json(200, {"type": "user", "name": user, "fullname": user, "orgs": [],
                                 "auth": {"type": "access_token", "accessToken": {"role": "write"}}}, head)
            return None
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


class HubUrl(str):
    """The base URL ``serve_hub`` yields; ``auth`` maps each request path to its Authorization headers."""

    auth: dict[str, list[str | None]]


@contextlib.contextmanager
def serve_hub(root: str | os.PathLike, tokens: set[str] | None = None,
              user: str = "fake-user") -> Iterator[HubUrl]:
    """Serve ``root`` as a Hub on ``127.0.0.1`` (a free port) from a daemon thread; yields the base URL.

    Writes need a Bearer token: any one, or one of ``tokens`` when given; ``user`` owns the token."""
    auth: dict[str, list[str | None]] = {}
    accepted = None if tokens is None else frozenset(tokens)
    handler = type("HubHandler", (_Handler,), {"root": Path(root), "repos": {}, "lock": threading.Lock(),
                                               "auth": auth, "tokens": accepted, "user": user, "private": {}})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="fake-hub", daemon=True)
    thread.start()
    url = HubUrl(f"http://127.0.0.1:{server.server_address[1]}")
    url.auth = auth
    try:
        yield url
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
