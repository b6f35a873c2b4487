"""The Gallery page: the gallery folder's exported sessions, an import form, and the static export served read-only.

/gallery                       the sessions the folder's index.json lists (title, workflow, date, turns, tokens)
/gallery/static/{path}         the folder's files, as `autoqwen export` wrote them (open index.html)

The folder is `AUTOQWEN_GALLERY` when set (as for `autoqwen export --gallery`), else `<data dir>/gallery`. The
export's pages are our own generated HTML (Jinja, autoescaped, no script); they are served under a policy that
allows no script, no form and nothing from elsewhere. Every other file of the folder follows the rules of
autoqwen.ui.files: images inline, anything else a download; hidden files (the lock, unfinished exports) never.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from autoqwen.ui.files import FileRefused, file_response, open_inside
from autoqwen.ui.pages import Pages
from autoqwen.workflows.errors import GalleryError
from autoqwen.workflows.gallery import GalleryEntry, read_index
from autoqwen.workflows.records import SESSION_ID_PATTERN

__all__ = ["EXPORT_CSP", "GALLERY_ENV", "gallery_dir", "router"]

GALLERY_ENV = "AUTOQWEN_GALLERY"
# The export's pages need their inline style sheet and their own images, nothing else; `sandbox` gives them an
# origin of their own, so even a page someone else wrote into the folder could not act as the UI.
EXPORT_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; script-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'self'; sandbox"
)
# The files an export writes for itself (not a session's files): shown in the browser, as the export means them.
_OWN_FILES = {
    "index.html": "text/html; charset=utf-8",
    "index.json": "application/json",
    "session.json": "application/json",
    "transcript.md": "text/plain; charset=utf-8",
}


def gallery_dir(pages: Pages) -> Path:
    """The gallery folder the UI exports into and shows: `AUTOQWEN_GALLERY`, else `<data dir>/gallery`."""
    if folder := os.environ.get(GALLERY_ENV):
        return Path(folder).expanduser()
    return pages.store.home / "gallery"


def router(pages: Pages) -> APIRouter:
    """The gallery page's routes."""
    routes = APIRouter(include_in_schema=False)

    @routes.get("/gallery")
    async def gallery_page(request: Request) -> HTMLResponse:
        folder = gallery_dir(pages)
        entries: tuple[GalleryEntry, ...] = ()
        problem = None
        try:
            entries = read_index(folder).sessions
        except GalleryError as exc:
            problem = str(exc)
        stored = {session.id for session in pages.store.list_sessions()}
        return pages.page(
            request,
            "gallery.html",
            title="Gallery",
            nav="gallery",
            folder=folder,
            entries=entries,
            stored=stored,
            problem=problem,
            has_export=(folder / "index.html").is_file(),
        )

    @routes.get("/gallery/static")
    @routes.get("/gallery/static/")
    async def gallery_home() -> Response:
        return RedirectResponse("/gallery/static/index.html", status_code=303)

    @routes.get("/gallery/static/{path:path}")
    async def gallery_file(request: Request, path: str) -> Response:
        try:
            opened = open_inside(gallery_dir(pages), path, hidden=False)
        except FileRefused:
            return pages.missing(request, f"no file {path[:200]!r} in the gallery")
        own = _own_type(path)
        if own is None:
            return file_response(opened)
        csp = EXPORT_CSP if own.startswith("text/html") else "default-src 'none'; sandbox"
        return file_response(opened, media_type=own, inline=True, csp=csp)

    return routes


def _own_type(path: str) -> str | None:
    """The media type of a file the export wrote itself (`index.html`, `<id>/session.json`, ...), else None."""
    parts = path.split("/")
    if len(parts) == 1 and parts[0] in ("index.html", "index.json"):
        return _OWN_FILES[parts[0]]
    if len(parts) == 2 and SESSION_ID_PATTERN.match(parts[0]) and parts[1] in _OWN_FILES and parts[1] != "index.json":
        return _OWN_FILES[parts[1]]
    return None
