"""The exported gallery opened from disk in headless Chromium (no server): the pages render, hostile text stays text."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from session_samples import HOSTILE, make_session

from autoqwen.workflows import SessionStore, export_sessions

CHROMIUM = next((path for name in ("chromium", "chromium-browser") if (path := shutil.which(name))), None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (`make browser` installs it): gallery not checked in a browser"
)


def rendered_dom(page: Path, profile: Path) -> str:
    """The DOM of a local page after Chromium has loaded it."""
    assert CHROMIUM is not None
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--dump-dom",
        page.as_uri(),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    return result.stdout


def visible_text(dom: str) -> str:
    """The page's text, roughly as a reader sees it: style blocks and tags dropped, entities decoded."""
    import html

    body = re.sub(r"<style>.*?</style>", " ", dom, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", body)).split())


def test_gallery_pages_render_in_chromium(tmp_path: Path) -> None:
    with SessionStore() as store:
        first = make_session(store, "First run")
        second = make_session(store, f"Second {HOSTILE}")
        export_sessions(store, [first.id], tmp_path / "gallery")
        export_sessions(store, [second.id], tmp_path / "gallery")

    index = rendered_dom(tmp_path / "gallery" / "index.html", tmp_path / "profile")
    assert "<script" not in index  # the hostile title did not become an element
    text = visible_text(index)
    assert "autoqwen gallery" in text and "2 sessions, newest first" in text
    assert text.index(f"Second {HOSTILE}") < text.index("First run")
    assert "research" in text and "finished" in text and "demo" in text and "718 tokens" in text
    assert f'href="{first.id}/index.html"' in index

    page = rendered_dom(tmp_path / "gallery" / second.id / "index.html", tmp_path / "profile")
    assert "<script" not in page
    text = visible_text(page)
    assert f"Second {HOSTILE}" in text and "← All sessions" in text
    for shown in ("planner", "tool call", "paper_search", '"max_results": 2', "tool result", "TinyLlama", "handoff"):
        assert shown in text, shown
    assert f"Beware of {HOSTILE} in inputs." in text
    assert '<img src="files/chart.png"' in page and "report draft.txt" in text
