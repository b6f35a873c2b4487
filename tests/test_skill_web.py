"""web_fetch against a loopback fixture site: content extraction, redirects, paging, limits, errors as text."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from skill_sites import serve, site_routes

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
