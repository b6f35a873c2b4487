"""The Sessions pages: the store's sessions, one session's transcript and files, and those files themselves.

/sessions?q=&status=&workflow=   the sessions, newest first, filtered on the server (so it works without script)
/sessions/{id}                   one session: its transcript (Markdown rendered by /static/markdown.js), its files
/sessions/{id}/files/{path}      one file of its work folder (images inline, anything else a download)

Deleting, exporting and resuming are calls to the API (autoqwen.ui.session_api and the workflows API) made by
/static/sessions.js; the pages read fine without it.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any, get_args
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from autoqwen.paths import session_work_dir
from autoqwen.ui.files import IMAGE_TYPES, FileRefused, file_response, open_inside
from autoqwen.ui.pages import Pages
from autoqwen.workflows.errors import SessionNotFound
from autoqwen.workflows.records import SESSION_ID_PATTERN, Session, SessionStatus

__all__ = ["MAX_LISTED", "STATUSES", "matches", "router"]

MAX_LISTED = 500  # rows on one page; the filters find the others
STATUSES: tuple[str, ...] = get_args(SessionStatus)


def matches(session: Session, *, q: str = "", status: str = "", workflow: str = "") -> bool:
    """Whether a session passes the Sessions page's filters: text in its title or workflow (any case), its status,
    its workflow (exactly); an empty filter passes everything."""
    if status and session.status != status:
        return False
    if workflow and session.workflow != workflow:
        return False
    needle = q.strip().casefold()
    return not needle or needle in session.title.casefold() or needle in session.workflow.casefold()


def router(pages: Pages) -> APIRouter:
    """The sessions pages' routes."""
    routes = APIRouter(include_in_schema=False)

    @routes.get("/sessions")
    async def sessions_page(request: Request, q: str = "", status: str = "", workflow: str = "") -> HTMLResponse:
        q, status, workflow = q[:200], status[:50], workflow[:200]
        every = pages.store.list_sessions()
        found = [s for s in every if matches(s, q=q, status=status, workflow=workflow)]
        return pages.page(
            request,
            "sessions.html",
            title="Sessions",
            nav="sessions",
            sessions=found[:MAX_LISTED],
            found=len(found),
            total=len(every),
            q=q,
            status_filter=status,  # `status` is the HTTP status of Pages.page
            workflow=workflow,
            statuses=STATUSES,
            workflows=sorted({s.workflow for s in every}),
        )

    @routes.get("/sessions/{session_id}")
    async def session_page(request: Request, session_id: str) -> HTMLResponse:
        if not SESSION_ID_PATTERN.match(session_id):
            return pages.missing(request, f"no session {session_id[:100]!r}")
        try:
            record = pages.store.get_record(session_id)
        except SessionNotFound:
            return pages.missing(request, f"no session {session_id[:100]!r}")
        files = [_file_view(session_id, entry.path, entry.size) for entry in record.files]
        live = pages.runs.get(session_id) is not None
        return pages.page(
            request, "session.html", title=record.session.title, nav="sessions", record=record, files=files, live=live
        )

    @routes.get("/sessions/{session_id}/files/{path:path}")
    async def session_file(request: Request, session_id: str, path: str) -> Response:
        if not SESSION_ID_PATTERN.match(session_id):
            return pages.missing(request, f"no session {session_id[:100]!r}")
        try:
            opened = open_inside(session_work_dir(session_id, pages.store.home), path)
        except FileRefused:
            return pages.missing(request, f"no file {path[:200]!r} in session {session_id!r}")
        return file_response(opened)

    return routes


def _file_view(session_id: str, path: str, size: int) -> dict[str, Any]:
    return {
        "path": path,
        "size": _size(size),
        "image": PurePosixPath(path).suffix.lower() in IMAGE_TYPES,
        "url": f"/sessions/{session_id}/files/{quote(path)}",
    }


def _size(size: int) -> str:
    """A file size for people: 512 B, 3.4 KB, 12.0 MB."""
    amount = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if amount < 1024 or unit == "GB":
            return f"{size} B" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{size} B"
