"""A scripted OpenAI-compatible server on loopback for tests: one model, one fixed reply, every request recorded.

    with serve_stub("Hello") as stub:
        OpenAI(base_url=stub.base_url, api_key="k").chat.completions.create(...)
        stub.requests   # [(method, path, headers with lower-case names)]

It stands for a server nobody should trust (it shows what reached it) or for any server that answers with a given
text, streamed (in three pieces, so escape sequences span chunks) or not.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer
from typing import Any


class StubServer(ThreadingHTTPServer):
    """Lists the model `stub` and answers every chat completion with `reply`."""

    def __init__(self, reply: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.reply = reply
        self.requests: list[tuple[str, str, dict[str, str]]] = []

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


@contextmanager
def serve_stub(reply: str) -> Iterator[StubServer]:
    """Run a StubServer in a thread for the duration of the block."""
    server = StubServer(reply)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: StubServer

    def do_GET(self) -> None:
        self._record()
        self._send("application/json", {"object": "list", "data": [{"id": "stub", "object": "model", "created": 0}]})

    def do_POST(self) -> None:
        self._record()
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        reply = self.server.reply
        usage = {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}
        if not body.get("stream"):
            message = {"role": "assistant", "content": reply}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            self._send("application/json", {**_HEAD, "object": "chat.completion", "choices": [choice], "usage": usage})
            return
        third = max(1, len(reply) // 3)
        pieces = [reply[:third], reply[third : 2 * third], reply[2 * third :]]
        chunks = [_chunk({"role": "assistant", "content": piece}, None) for piece in pieces]
        chunks += [_chunk({}, "stop"), {**_HEAD, "object": "chat.completion.chunk", "choices": [], "usage": usage}]
        data = "".join(f"data: {json.dumps(chunk)}\n\n" for chunk in chunks) + "data: [DONE]\n\n"
        self._send("text/event-stream", data)

    def _record(self) -> None:
        self.server.requests.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))

    def _send(self, content_type: str, body: dict[str, Any] | str) -> None:
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


_HEAD = {"id": "c1", "created": 0, "model": "stub"}


def _chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return {**_HEAD, "object": "chat.completion.chunk", "choices": [choice]}


@contextmanager
def models_server(entry: dict[str, Any]) -> Iterator[str]:
    """A server whose /v1/models lists the model `m` with the fields of `entry`."""

    class Models(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"object": "list", "data": [{"id": "m", "object": "model", **entry}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Models)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1"
    finally:
        server.shutdown()
        server.server_close()
