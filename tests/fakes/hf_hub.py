"""A loopback HTTP server speaking the Hugging Face Hub endpoints ``huggingface_hub`` uses to
commit to a repo, for testing ``kiln.apps.media.processing.hf_sink`` without the network.

Endpoints (``{kind}`` is ``models``/``datasets``/``spaces``; repos are created on demand by
``FakeHub.create_repo``, any other repo answers 404 ``X-Error-Code: RepoNotFound``):
* ``POST /api/{kind}/{owner}/{name}/preupload/{rev}`` -> ``{"files": [{path, uploadMode, ...}]}``.
  Every file is "regular" (content inlined in the commit), as the Hub does for small files;
  the LFS/Xet transfer path is not modelled;
* ``POST /api/{kind}/{owner}/{name}/commit/{rev}`` — the NDJSON commit (header, ``file``
  base64 additions, ``deletedFile``/``deletedFolder``); a deleted path that does not exist is
  404 ``EntryNotFound`` like the Hub;
* ``POST /api/{kind}/{owner}/{name}/paths-info/{rev}`` (form ``paths``) -> existing files;
* ``GET /api/{kind}/{owner}/{name}/revision/{rev}`` -> minimal repo info with the head ``sha``.

Model discovery and downloads (public reads, no token needed, as on the Hub):
* ``GET /api/models?search=&pipeline_tag=&limit=`` -> ``[{id, downloads, likes, tags, pipeline_tag}]``;
* ``GET /api/models/{owner}/{name}`` -> ``{id, sha, tags, pipeline_tag, siblings[{rfilename, size}]}``;
* ``GET /{owner}/{name}/resolve/{rev}/{path}`` -> the file's bytes (``hub.slow_bytes`` per second
  throttles it so a test can cancel mid-download).
Models are made with ``hub.add_model(repo_id, files, downloads=..., tags=..., pipeline_tag=...)``.

Files live in memory: ``hub.files(repo_id)`` returns ``{path: bytes}``, ``hub.commits`` lists
every commit received. ``hub.fail_next(status, headers)`` makes the next commit answer an error
(e.g. 429 with ``Retry-After``). The token, when set, must arrive as ``Bearer`` or 401.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

import pytest

TOKEN = "hf_fake_token"


def git_blob_oid(data: bytes) -> str:
    # What the Hub reports as a regular file's oid (and what the client compares to skip no-ops).
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Commit:
    repo_id: str
    oid: str
    summary: str
    added: list[str]
    deleted: list[str]


@dataclass
class FakeHub:
    endpoint: str = ""
    token: str | None = TOKEN
    repos: dict[str, dict[str, bytes]] = field(default_factory=dict)
    heads: dict[str, str] = field(default_factory=dict)
    commits: list[Commit] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)
    _fail: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    meta: dict[str, dict] = field(default_factory=dict)
    slow_bytes: int | None = None
    downloads: list[str] = field(default_factory=list)
    cdn_redirect: bool = False  # resolve answers 302 to another origin (localhost), as the Hub does for LFS
    cdn_auth: list[str | None] = field(default_factory=list)

    def add_model(
        self,
        repo_id: str,
        files: dict[str, bytes],
        *,
        downloads: int = 0,
        likes: int = 0,
        tags: tuple[str, ...] = (),
        pipeline_tag: str | None = None,
    ) -> None:
        key = f"models/{repo_id}"
        with self.lock:
            self.repos[key] = dict(files)
            self.heads[key] = hashlib.sha1(repo_id.encode()).hexdigest()
            self.meta[key] = {"downloads": downloads, "likes": likes, "tags": list(tags), "pipeline_tag": pipeline_tag}

    def create_repo(self, repo_id: str, kind: str = "datasets") -> str:
        with self.lock:
            self.repos.setdefault(f"{kind}/{repo_id}", {})
            self.heads.setdefault(f"{kind}/{repo_id}", "0" * 40)
        return repo_id

    def files(self, repo_id: str, kind: str = "datasets") -> dict[str, bytes]:
        with self.lock:
            return dict(self.repos[f"{kind}/{repo_id}"])

    def fail_next(self, status: int, headers: dict[str, str] | None = None) -> None:
        self._fail.append((status, headers or {}))


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def _send(self, status: int, body: object = None, headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(body if body is not None else {}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(payload)

    def _error(self, status: int, code: str | None, message: str) -> None:
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self._send(status, {"error": message}, headers)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _route(self) -> tuple[str, str, str, str] | None:
        # /api/{kind}/{owner}/{name}/{action}/{rev}
        parts = [unquote(p) for p in urlparse(self.path).path.split("/")]
        if len(parts) < 7 or parts[1] != "api":
            return None
        kind, repo, action, rev = parts[2], f"{parts[3]}/{parts[4]}", parts[5], "/".join(parts[6:])
        return kind, repo, action, rev

    def _authorized(self) -> bool:
        if self.hub.token is None:
            return True
        return self.headers.get("Authorization") == f"Bearer {self.hub.token}"

    def _dispatch(self, method: str) -> None:
        hub = self.hub
        hub.requests.append((method, self.path))
        body = self._body() if method == "POST" else b""
        route = self._route()
        if route is None:
            return self._error(404, None, "Not Found")
        kind, repo, action, rev = route
        if not self._authorized():
            return self._error(401, None, "Invalid credentials in Authorization header")
        key = f"{kind}/{repo}"
        if key not in hub.repos:
            return self._error(404, "RepoNotFound", "Repository not found")
        if rev != "main":
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        handler = getattr(self, f"_{method.lower()}_{action.replace('-', '_')}", None)
        if handler is None:
            return self._error(404, None, "Not Found")
        return handler(key, repo, kind, body)

    def do_GET(self) -> None:  # noqa: N802
        parsed = urlparse(self.path)
        parts = [unquote(p) for p in parsed.path.split("/")][1:]
        if parts[:2] == ["api", "models"] and len(parts) in (2, 4):
            self.hub.requests.append(("GET", self.path))
            return (
                self._model_list(parse_qs(parsed.query))
                if len(parts) == 2
                else self._model_info(f"{parts[2]}/{parts[3]}")
            )
        if len(parts) >= 5 and parts[2] == "resolve":
            self.hub.requests.append(("GET", self.path))
            if self.hub.cdn_redirect:
                port = self.server.server_address[1]
                location = f"http://localhost:{port}/cdn/{parts[0]}/{parts[1]}/{'/'.join(parts[4:])}"
                self.send_response(302)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            return self._resolve(f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]))
        if len(parts) >= 4 and parts[0] == "cdn":
            self.hub.cdn_auth.append(self.headers.get("Authorization"))
            return self._resolve(f"{parts[1]}/{parts[2]}", "main", "/".join(parts[3:]))
        self._dispatch("GET")

    def _model_list(self, query: dict[str, list[str]]) -> None:
        search = (query.get("search") or [""])[0].lower()
        task = (query.get("pipeline_tag") or [None])[0]
        limit = int((query.get("limit") or ["20"])[0])
        with self.hub.lock:
            items = [
                {"id": key.split("/", 1)[1], **meta}
                for key, meta in self.hub.meta.items()
                if search in key.lower() and (task is None or meta["pipeline_tag"] == task)
            ]
        items.sort(key=lambda item: -item["downloads"])
        self._send(200, items[:limit])

    def _model_info(self, repo: str) -> None:
        key = f"models/{repo}"
        with self.hub.lock:
            if key not in self.hub.meta:
                return self._error(404, "RepoNotFound", "Repository not found")
            files = self.hub.repos[key]
            body = {
                "id": repo,
                "sha": self.hub.heads[key],
                **self.hub.meta[key],
                "siblings": [{"rfilename": p, "size": len(b)} for p, b in sorted(files.items())],
            }
        self._send(200, body)

    def _resolve(self, repo: str, rev: str, path: str) -> None:
        import time

        key = f"models/{repo}"
        with self.hub.lock:
            data = self.hub.repos.get(key, {}).get(path)
        if data is None or rev != "main":
            return self._error(404, "EntryNotFound", "File not found")
        self.hub.downloads.append(f"{repo}/{path}")
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        step = self.hub.slow_bytes or len(data) or 1
        try:
            for start in range(0, len(data), step):
                self.wfile.write(data[start : start + step])
                self.wfile.flush()
                if self.hub.slow_bytes:
                    time.sleep(1)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def _get_revision(self, key: str, repo: str, kind: str, body: bytes) -> None:
        with self.hub.lock:
            files = sorted(self.hub.repos[key])
            sha = self.hub.heads[key]
        self._send(200, {"id": repo, "sha": sha, "private": False, "siblings": [{"rfilename": p} for p in files]})

    def _post_preupload(self, key: str, repo: str, kind: str, body: bytes) -> None:
        files = json.loads(body)["files"]
        with self.hub.lock:
            stored = self.hub.repos[key]
            answer = [
                {
                    "path": f["path"],
                    "uploadMode": "regular",
                    "shouldIgnore": False,
                    "oid": git_blob_oid(stored[f["path"]]) if f["path"] in stored else None,
                }
                for f in files
            ]
        self._send(200, {"files": answer, "commitOid": self.hub.heads[key]})

    def _post_paths_info(self, key: str, repo: str, kind: str, body: bytes) -> None:
        form = parse_qs(body.decode())
        with self.hub.lock:
            stored = self.hub.repos[key]
            found = [
                {"type": "file", "path": p, "size": len(stored[p]), "oid": git_blob_oid(stored[p])}
                for p in form.get("paths", [])
                if p in stored
            ]
        self._send(200, found)

    def _post_commit(self, key: str, repo: str, kind: str, body: bytes) -> None:
        hub = self.hub
        if hub._fail:
            status, headers = hub._fail.pop(0)
            return self._send(status, {"error": "injected failure"}, headers)
        if "ndjson" not in (self.headers.get("Content-Type") or ""):
            return self._error(400, None, "expected application/x-ndjson")
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            return self._error(400, None, "first line must be the commit header")
        with hub.lock:
            stored = dict(hub.repos[key])
            added, deleted = [], []
            for item in lines[1:]:
                value = item["value"]
                if item["key"] == "file":
                    stored[value["path"]] = base64.b64decode(value["content"])
                    added.append(value["path"])
                elif item["key"] == "deletedFile":
                    if value["path"] not in stored:
                        return self._error(404, "EntryNotFound", "A file with this name doesn't exist")
                    del stored[value["path"]]
                    deleted.append(value["path"])
                elif item["key"] == "deletedFolder":
                    prefix = value["path"].rstrip("/") + "/"
                    gone = [p for p in stored if p.startswith(prefix)]
                    for p in gone:
                        del stored[p]
                    deleted.extend(gone)
                else:
                    return self._error(400, None, f"unsupported operation {item['key']}")
            oid = hashlib.sha1(hub.heads[key].encode() + body).hexdigest()
            hub.repos[key], hub.heads[key] = stored, oid
            hub.commits.append(Commit(repo, oid, lines[0]["value"]["summary"], added, deleted))
        prefix = "" if kind == "models" else f"/{kind}"
        self._send(200, {"success": True, "commitOid": oid, "commitUrl": f"{hub.endpoint}{prefix}/{repo}/commit/{oid}"})


def start_fake_hub(token: str | None = TOKEN) -> tuple[FakeHub, ThreadingHTTPServer]:
    hub = FakeHub(token=token)
    handler = type("BoundHandler", (_Handler,), {"hub": hub})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    hub.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-hf-hub", daemon=True
    ).start()
    return hub, server


@pytest.fixture
def fake_hub() -> Iterator[FakeHub]:
    hub, server = start_fake_hub()
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
