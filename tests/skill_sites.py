"""Loopback HTTP fixture servers for the network skills: a small web site and a fake arXiv API (127.0.0.1 only)."""

from __future__ import annotations

import functools
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

DATA = Path(__file__).parent / "data"

Route = Callable[[BaseHTTPRequestHandler], None]

ARTICLE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Agents on a laptop</title><script>var tracking = 1;</script>
<style>body { color: red }</style></head>
<body>
<header><a href="/">Home</a> | <a href="/about">About</a></header>
<nav><ul><li><a href="/a">Menu item one</a></li><li><a href="/b">Menu item two</a></li></ul></nav>
<main>
  <h1>Agents on a laptop</h1>
  <p>Small models can run <strong>multi-agent</strong> workflows. Read the <a href="/docs/guide.html">guide</a>.</p>
  <ul><li>offline</li><li>private</li></ul>
  <form><input name="q"><button>Search</button></form>
</main>
<aside>Sponsored: buy things</aside>
<footer>Copyright 2024 Example footer</footer>
</body></html>"""


def send(handler: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str | None, **headers: str) -> None:
    """Write a whole response."""
    handler.send_response(status)
    if content_type:
        handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    for name, value in headers.items():
        handler.send_header(name.replace("_", "-"), value)
    handler.end_headers()
    handler.wfile.write(body)


def redirect(to: str, status: int = 302) -> Route:
    return lambda h: send(h, status, b"", "text/html", Location=to)


def slow(h: BaseHTTPRequestHandler) -> None:
    time.sleep(1.5)
    send(h, 200, b"<p>finally</p>", "text/html")


def trickle(h: BaseHTTPRequestHandler) -> None:
    """Headers at once, then a byte every 0.1 s: no read timeout fires, only the total time limit."""
    h.send_response(200)
    h.send_header("Content-Type", "text/plain")
    h.end_headers()
    for _ in range(30):
        h.wfile.write(b"x")
        h.wfile.flush()
        time.sleep(0.1)


def trickle_headers(h: BaseHTTPRequestHandler) -> None:
    """A status line, then header bytes one every 0.05 s for 15 s: every read gets data, the headers never end."""
    h.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
    for _ in range(300):
        h.wfile.write(b"a")
        h.wfile.flush()
        time.sleep(0.05)


@functools.lru_cache(maxsize=4)
def gzipped_zeros(size: int, *, times: int = 1) -> bytes:
    """`size` zero bytes gzipped `times` times, compressed a megabyte at a time (never `size` bytes in memory)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    block = bytes(1 << 20)
    data = b"".join(packer.compress(block[: min(len(block), size - done)]) for done in range(0, size, len(block)))
    data += packer.flush()
    for _ in range(times - 1):
        data = zlib.compress(data, 9, wbits=zlib.MAX_WBITS | 16)
    return data


def site_routes() -> dict[str, Route]:
    """A small site: an article page, redirect chains, a loop, a large page, a binary file, slow endpoints."""
    large = "".join(f"<p>Paragraph {i:04d}: {'lorem ipsum ' * 8}</p>\n" for i in range(400))
    huge = b"<html><body><p>" + b"A" * 300_000 + b"</p></body></html>"
    return {
        "/article": lambda h: send(h, 200, ARTICLE.encode(), "text/html; charset=utf-8"),
        "/old": redirect("/older", 301),
        "/older": redirect("/article", 302),
        "/loop": redirect("/loop"),
        "/to-ftp": redirect("ftp://127.0.0.1/file"),
        "/large": lambda h: send(h, 200, f"<html><body><main>{large}</main></body></html>".encode(), "text/html"),
        "/huge": lambda h: send(h, 200, huge, "text/html"),
        "/image.png": lambda h: send(h, 200, b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "image/png"),
        "/blob": lambda h: send(h, 200, b"\x00\x01\x02binary\x00" * 50, None),
        "/notes.txt": lambda h: send(h, 200, "plain notes: café".encode("latin-1"), "text/plain; charset=latin-1"),
        "/data.json": lambda h: send(h, 200, b'{"answer": 42}', "application/json"),
        "/missing": lambda h: send(h, 404, b"<h1>Not Found</h1>", "text/html"),
        "/broken": lambda h: send(h, 500, b"oops", "text/plain"),
        "/slow": slow,
        "/trickle": trickle,
        "/empty": lambda h: send(h, 200, b"<html><body><script>app()</script></body></html>", "text/html"),
    }


class FakeArxiv:
    """Serves `tests/data/arxiv_search.xml` at /api/query and records each request's query parameters."""

    def __init__(self) -> None:
        self.requests: list[dict[str, list[str]]] = []
        self.status = 200
        self.body = (DATA / "arxiv_search.xml").read_bytes()
        self.headers: dict[str, str] = {}

    def __call__(self, h: BaseHTTPRequestHandler) -> None:
        self.requests.append(parse_qs(urlsplit(h.path).query))
        send(h, self.status, self.body, "application/atom+xml; charset=UTF-8", **self.headers)


@contextmanager
def serve(routes: dict[str, Route], host: str = "127.0.0.1") -> Iterator[str]:
    """Serve `routes` (path → handler) on `host` (a loopback address) in a thread; yields the base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            route = routes.get(urlsplit(self.path).path)
            try:
                if route is None:
                    send(self, 404, b"no such fixture", "text/plain")
                else:
                    route(self)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up first (timeouts, size limits): expected

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((host, 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
