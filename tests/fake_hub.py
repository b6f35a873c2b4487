"""A fake Hugging Face hub and ModelScope on loopback, for the pull tests: the routes huggingface_hub and our
ModelScope client call, serving models from memory, with faults to inject.

    with FakeHub() as hub:                        # http://127.0.0.1:<free port>
        hub.add_repo("tiny/Tiny-Chat", folder)    # every file of a model folder
        hub.drop_after["model.safetensors"] = 1000   # the next GET of it sends 1000 bytes, then hangs up

Hugging Face routes: `GET /api/models/{repo}/revision/{rev}` (model info, with file sizes, blob ids and LFS
SHA-256s), `HEAD|GET /{repo}/resolve/{rev}/{file}` (ETag, X-Repo-Commit, X-Linked-Size/-Etag, Range).
ModelScope routes: `GET /api/v1/models/{repo}/repo/files` (the listing) and `GET /api/v1/models/{repo}/repo?FilePath=`
(a file, Range honoured). Every request is logged in `hub.requests` as (method, path, Range header).
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

COMMIT = "0123456789abcdef0123456789abcdef01234567"
LFS_SUFFIXES = (".safetensors", ".gguf", ".bin")


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeHub:
    """The fake hub: repositories of in-memory files, a request log and fault switches."""

    def __init__(self) -> None:
        self.repos: dict[str, dict[str, bytes]] = {}
        self.requests: list[tuple[str, str, str | None]] = []
        self.authorizations: set[str | None] = set()  # the Authorization headers requests came with
        self.drop_after: dict[str, int] = {}  # file -> bytes sent before the connection drops (once)
        self.corrupt: set[str] = set()  # files served with one byte changed (same size)
        self.short: set[str] = set()  # files served 10 bytes short of the size the hub lists
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def add_repo(self, repo_id: str, folder: Path | None = None, files: dict[str, bytes] | None = None) -> None:
        """Serve `repo_id` with every file of `folder` (top level) and/or the files given."""
        found = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()} if folder else {}
        self.repos[repo_id] = {**found, **(files or {})}

    def file_requests(self, name: str) -> list[tuple[str, str, str | None]]:
        """The GETs of a file, by either hub's route."""
        return [r for r in self.requests if r[0] == "GET" and (r[1].endswith("/" + name) or f"FilePath={name}" in r[1])]

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_HEAD(self) -> None:
            self._route(head=True)

        def do_GET(self) -> None:
            self._route(head=False)

        def _route(self, *, head: bool) -> None:
            hub.requests.append((self.command, self.path, self.headers.get("Range")))
            hub.authorizations.add(self.headers.get("Authorization"))
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            path = unquote(url.path)
            if match := re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/[^/]+)?", path):
                return self._hf_info(match[1])
            if match := re.fullmatch(r"/([^/]+/[^/]+)/resolve/[^/]+/(.+)", path):
                return self._file(match[1], match[2], head=head, hf=True)
            if match := re.fullmatch(r"/api/v1/models/([^/]+/[^/]+)/repo/files", path):
                return self._ms_listing(match[1])
            if match := re.fullmatch(r"/api/v1/models/([^/]+/[^/]+)/repo", path):
                return self._file(match[1], query.get("FilePath", ""), head=head, hf=False)
            self._json({"error": "no such route"}, 404)

        def _json(self, body: object, status: int = 200, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def _repo(self, repo_id: str) -> dict[str, bytes] | None:
            if repo_id not in hub.repos:
                self._json({"error": "Repository not found"}, 404, {"X-Error-Code": "RepoNotFound"})
                return None
            return hub.repos[repo_id]

        def _hf_info(self, repo_id: str) -> None:
            if (files := self._repo(repo_id)) is None:
                return
            siblings = []
            for name, data in files.items():
                entry: dict[str, Any] = {"rfilename": name, "size": len(data), "blobId": git_blob_id(data)}
                if name.endswith(LFS_SUFFIXES):
                    entry["lfs"] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "pointerSize": 134}
                siblings.append(entry)
            self._json({"id": repo_id, "modelId": repo_id, "sha": COMMIT, "private": False, "siblings": siblings})

        def _ms_listing(self, repo_id: str) -> None:
            if (files := self._repo(repo_id)) is None:
                return
            listing = [
                {
                    "Name": name.rsplit("/", 1)[-1],
                    "Path": name,
                    "Type": "blob",
                    "Size": len(data),
                    "Sha256": hashlib.sha256(data).hexdigest(),
                    "Revision": COMMIT,
                }
                for name, data in files.items()
            ]
            self._json({"Code": 200, "Success": True, "Message": "success", "Data": {"Files": listing}})

        def _file(self, repo_id: str, name: str, *, head: bool, hf: bool) -> None:
            if (files := self._repo(repo_id)) is None:
                return
            if name not in files:
                return self._json({"error": "Entry not found"}, 404, {"X-Error-Code": "EntryNotFound"})
            data = files[name]
            body = bytes([data[0] ^ 0xFF]) + data[1:] if name in hub.corrupt else data
            body = body[:-10] if name in hub.short and not head else body
            start = int(m[1]) if (m := re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")) else 0
            payload = body[start:]
            self.send_response(206 if start else 200)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Accept-Ranges", "bytes")
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            if hf:
                lfs = name.endswith(LFS_SUFFIXES)
                etag = hashlib.sha256(data).hexdigest() if lfs else git_blob_id(data)
                self.send_header("ETag", f'"{etag}"')
                self.send_header("X-Repo-Commit", COMMIT)
                if lfs:
                    self.send_header("X-Linked-Etag", f'"{etag}"')
                    self.send_header("X-Linked-Size", str(len(data)))
            self.end_headers()
            if head:
                return
            drop = hub.drop_after.pop(name, None)
            if drop is not None and drop < len(payload):
                self.wfile.write(payload[:drop])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(payload)

    return Handler


def point_at(hub: FakeHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Send Hugging Face and ModelScope traffic to `hub`, online, with both caches under `tmp_path`."""
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("MODELSCOPE_ENDPOINT", hub.url)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    # huggingface_hub reads these once, when it is imported.
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "ms"))


def write_gguf(path: Path, *, file_type: int, context: int = 2048, template: str = "{{ messages }}") -> Path:
    """A minimal valid GGUF file (one tiny tensor) with a file type, a context length and a chat template."""
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(context)
    writer.add_file_type(file_type)
    writer.add_chat_template(template)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
