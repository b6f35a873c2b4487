"""web_fetch against a loopback fixture site: content extraction, redirects, paging, limits, errors as text."""

from __future__ import annotations

import socket
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import httpx
import pytest
from skill_sites import ARTICLE, gzipped_zeros, redirect, send, serve, site_routes, trickle_headers

from autoqwen.skills.builtins._html import html_to_markdown
from autoqwen.skills.builtins.web import web_fetch


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    with serve(site_routes()) as base:
        yield base


def test_main_content_becomes_markdown_without_page_chrome(site: str) -> None:
    text = web_fetch(f"{site}/article")
    assert text.startswith(f"Contents of {site}/article:")
    assert "# Agents on a laptop" in text
    assert "**multi-agent**" in text and "- offline" in text
    assert f"[guide]({site}/docs/guide.html)" in text  # relative links resolved against the page
    for chrome in ("Menu item", "Sponsored", "footer", "tracking", "color: red", "Search"):
        assert chrome not in text


def test_redirects_are_followed_and_the_final_url_reported(site: str) -> None:
    text = web_fetch(f"{site}/old")
    assert text.startswith(f"Contents of {site}/article:") and "multi-agent" in text


def test_redirect_loop_and_redirect_to_other_schemes_are_errors(site: str) -> None:
    loop = web_fetch(f"{site}/loop", max_redirects=3)
    assert loop.startswith("Error:") and "redirected more than 3 times" in loop
    ftp = web_fetch(f"{site}/to-ftp")
    assert ftp.startswith("Error:") and "only http:// and https://" in ftp


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/x", "file:///etc/passwd", "127.0.0.1/page", "http://"])
def test_bad_urls_are_errors_the_model_can_fix(url: str) -> None:
    text = web_fetch(url)
    assert text.startswith("Error:")


def test_long_pages_come_in_pieces(site: str) -> None:
    first = web_fetch(f"{site}/large", max_length=1000)
    assert "Paragraph 0000" in first and "Paragraph 0399" not in first
    assert "(characters 0-1000 of " in first
    assert "Call web_fetch with start_index=1000 to read more." in first
    pieces, start = [], 0
    while True:
        page = web_fetch(f"{site}/large", max_length=20_000, start_index=start)
        pieces.append(page)
        if "start_index=" not in page:
            break
        start = int(page.rsplit("start_index=", 1)[1].split(" ", 1)[0])
    assert "Paragraph 0399" in pieces[-1] and len(pieces) > 1
    past = web_fetch(f"{site}/large", start_index=10_000_000)
    assert past.startswith("Error: start_index 10000000 is past the end")


def test_download_size_is_capped(site: str) -> None:
    text = web_fetch(f"{site}/huge", max_length=100_000, max_bytes=50_000)
    assert "only that much was downloaded" in text
    assert text.count("A") < 50_100


def test_binary_content_is_refused_with_its_type(site: str) -> None:
    png = web_fetch(f"{site}/image.png")
    assert png.startswith("Error:") and "image/png" in png
    blob = web_fetch(f"{site}/blob")
    assert blob.startswith("Error:") and "binary" in blob


def test_plain_text_and_json_pass_through_with_their_charset(site: str) -> None:
    assert "plain notes: café" in web_fetch(f"{site}/notes.txt")
    assert '{"answer": 42}' in web_fetch(f"{site}/data.json")


@pytest.mark.parametrize(("path", "expected"), [("/missing", "HTTP 404 Not Found"), ("/broken", "HTTP 500")])
def test_http_errors_are_returned_as_text(site: str, path: str, expected: str) -> None:
    text = web_fetch(f"{site}{path}")
    assert text.startswith("Error:") and expected in text


def test_slow_servers_time_out(site: str) -> None:
    slow = web_fetch(f"{site}/slow", timeout=0.3)
    assert slow.startswith("Error: timed out after 0.3 s")
    trickle = web_fetch(f"{site}/trickle", timeout=0.5)  # bytes keep coming, but the total time is capped
    assert trickle.startswith("Error: timed out after 0.5 s")


def test_pages_without_text_say_so(site: str) -> None:
    assert "has no readable text" in web_fetch(f"{site}/empty")


def test_an_injected_client_is_used_without_any_socket() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, html="<html><title>T</title><body><p>mocked page</p></body></html>")

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        text = web_fetch("https://example.invalid/page", client=client)
    assert seen == ["https://example.invalid/page"] and "mocked page" in text and "# T" in text


def test_connection_errors_are_returned_as_text() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        text = web_fetch("http://example.invalid/", client=client)
    assert text.startswith("Error: could not fetch") and "connection refused" in text


# --- Hostile sites: internal addresses, bombs, slow servers, deep pages ------------------------------------------

INTERNAL = "127.0.0.2"  # stands in for an internal host: loopback, but not in the allow-list
two_loopbacks = pytest.mark.allow_hosts(["127.0.0.1", INTERNAL])  # pytest-socket lets these through


@pytest.fixture
def internal() -> Iterator[tuple[str, list[str]]]:
    """A server on 127.0.0.2 with a secret at /secret; yields its base URL and the paths it was asked for."""
    hits: list[str] = []

    def secret(h: BaseHTTPRequestHandler) -> None:
        hits.append(h.path)
        send(h, 200, b"TOP SECRET instance credentials", "text/plain")

    with serve({"/secret": secret}, host=INTERNAL) as base:
        yield base, hits


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """A resolver answering from a table (name → addresses, each a list popped in turn); IP literals pass."""
    table: dict[str, list[str]] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name in table:
            answers = table[name]
            address = answers.pop(0) if len(answers) > 1 else answers[0]
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]
        if name == INTERNAL:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (name, port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return table


@two_loopbacks
def test_the_stand_in_internal_server_is_reachable_when_allowed(
    internal: tuple[str, list[str]], dns: dict[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    base, hits = internal
    monkeypatch.setenv("AUTOQWEN_ALLOW_HOSTS", f"127.0.0.1,{INTERNAL}")
    assert "TOP SECRET" in web_fetch(f"{base}/secret") and hits == ["/secret"]


@two_loopbacks
@pytest.mark.parametrize(
    "url",
    [
        "{internal}/secret",
        "http://[::1]:{port}/secret",
        "http://[::ffff:127.0.0.2]:{port}/secret",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://169.254.169.254/latest/meta-data/",
        "http://2852039166/latest/meta-data/",
        "http://0x7f.2:{port}/secret",
        "http://2130706434:{port}/secret",  # 127.0.0.2
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://evil.example:{port}/secret",  # a public-looking name that resolves to the internal address
    ],
)
def test_internal_addresses_are_refused_directly_and_through_dns(
    internal: tuple[str, list[str]], dns: dict[str, list[str]], url: str
) -> None:
    base, hits = internal
    dns["evil.example"] = [INTERNAL]
    text = web_fetch(url.format(internal=base, port=base.rsplit(":", 1)[1]))
    assert text.startswith("Error: refused to fetch") and "AUTOQWEN_ALLOW_HOSTS" in text, text
    assert hits == []


@two_loopbacks
@pytest.mark.parametrize("last_hop", ["{internal}/secret", "http://evil.example:{port}/secret"])
def test_a_redirect_chain_ending_inside_is_refused_at_its_last_hop(
    internal: tuple[str, list[str]], dns: dict[str, list[str]], last_hop: str
) -> None:
    base, hits = internal
    dns["evil.example"] = [INTERNAL]
    target = last_hop.format(internal=base, port=base.rsplit(":", 1)[1])
    routes = {f"/hop{i}": redirect(f"/hop{i + 1}") for i in range(1, 5)} | {"/hop5": redirect(target)}
    with serve(routes) as site:
        text = web_fetch(f"{site}/hop1")  # 5 redirects: within the default limit
    assert text.startswith("Error: refused to fetch") and INTERNAL in text, text
    assert hits == []


@two_loopbacks
def test_the_checked_address_is_the_one_connected_to(
    internal: tuple[str, list[str]], dns: dict[str, list[str]]
) -> None:
    # A rebinding name: public (allowed) at the first lookup, internal at any later one.
    hosts: list[str] = []

    def page(h: BaseHTTPRequestHandler) -> None:
        hosts.append(h.headers["Host"])
        send(h, 200, ARTICLE.encode(), "text/html; charset=utf-8")

    _, hits = internal
    with serve({"/article": page}) as site:
        port = site.rsplit(":", 1)[1]
        dns["rebind.example"] = ["127.0.0.1", INTERNAL]
        text = web_fetch(f"http://rebind.example:{port}/article")
    assert "Agents on a laptop" in text and hits == []
    assert hosts == [f"rebind.example:{port}"]  # the Host header keeps the name


@two_loopbacks
def test_an_allowed_name_may_resolve_inside(
    internal: tuple[str, list[str]], dns: dict[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    base, hits = internal
    dns["wiki.corp.internal"] = [INTERNAL]
    monkeypatch.setenv("AUTOQWEN_ALLOW_HOSTS", "wiki.corp.internal")
    assert "TOP SECRET" in web_fetch(f"http://wiki.corp.internal:{base.rsplit(':', 1)[1]}/secret")
    assert hits == ["/secret"]


def bomb_routes() -> dict[str, Any]:
    def gzip_twice(h: BaseHTTPRequestHandler) -> None:
        send(h, 200, gzipped_zeros(100_000_000, times=2), "text/plain", Content_Encoding="gzip, gzip")

    def gzip_once(h: BaseHTTPRequestHandler) -> None:
        send(h, 200, gzipped_zeros(50_000_000), "text/plain", Content_Encoding="gzip")

    page = ARTICLE.encode()
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    raw = packer.compress(page) + packer.flush()  # deflate without the zlib wrapper, as some servers send it
    return {
        "/gzip-twice": gzip_twice,
        "/gzip-once": gzip_once,
        "/deflate": lambda h: send(h, 200, zlib.compress(page), "text/html", Content_Encoding="deflate"),
        "/raw-deflate": lambda h: send(h, 200, raw, "text/html", Content_Encoding="deflate"),
        "/brotli": lambda h: send(h, 200, b"\x1b\x00", "text/html", Content_Encoding="br"),
    }


@pytest.fixture(scope="module")
def bombs() -> Iterator[str]:
    gzipped_zeros(100_000_000, times=2), gzipped_zeros(50_000_000)  # built before any memory is measured
    with serve(bomb_routes()) as base:
        yield base


def peak_memory(call: Any) -> tuple[Any, int]:
    tracemalloc.start()
    try:
        result = call()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_stacked_content_codings_are_refused_unread(bombs: str) -> None:
    text, peak = peak_memory(lambda: web_fetch(f"{bombs}/gzip-twice"))
    assert text.startswith("Error: could not read") and "encoded 2 times" in text, text
    assert peak < 5_000_000, peak


def test_a_gzip_bomb_is_decoded_only_up_to_the_byte_cap(bombs: str) -> None:
    text, peak = peak_memory(lambda: web_fetch(f"{bombs}/gzip-once", max_bytes=1_000_000))
    assert "[The page is larger than 1000000 bytes; only that much was downloaded.]" in text
    assert peak < 15_000_000, peak  # 50 MB once decoded


@pytest.mark.parametrize("path", ["/deflate", "/raw-deflate"])
def test_deflate_pages_are_decoded(bombs: str, path: str) -> None:
    assert "**multi-agent**" in web_fetch(f"{bombs}{path}")


def test_a_coding_that_cannot_be_decoded_is_an_error(bombs: str) -> None:
    text = web_fetch(f"{bombs}/brotli")
    assert text.startswith("Error: could not read") and "'br'" in text


@pytest.mark.parametrize("path", ["/trickle-headers", "/slow-hop"])
def test_one_deadline_covers_headers_and_every_redirect(path: str) -> None:
    def slow_hop(h: BaseHTTPRequestHandler) -> None:
        time.sleep(0.4)  # each hop alone is well within the limit
        redirect("/slow-hop")(h)

    with serve({"/trickle-headers": trickle_headers, "/slow-hop": slow_hop}) as base:
        start = time.monotonic()
        text = web_fetch(f"{base}{path}", timeout=1.0, max_redirects=10)
        took = time.monotonic() - start
    assert text.startswith("Error: timed out after 1 s"), text
    assert took < 1.5, took


@pytest.mark.parametrize("depth", [500, 5000])
def test_deeply_nested_pages_are_flattened_not_a_recursion_error(site: str, depth: int) -> None:
    page = "<html><body><main>" + "<div><b>level</b>" * depth + "deep text" + "</div>" * depth + "</main></body></html>"
    markdown = html_to_markdown(page, base_url="http://example.org/")
    assert markdown.startswith("**level**") and markdown.endswith("deep text")
    with serve({"/deep": lambda h: send(h, 200, page.encode(), "text/html")}) as base:
        assert "deep text" in web_fetch(f"{base}/deep", max_length=100_000)
