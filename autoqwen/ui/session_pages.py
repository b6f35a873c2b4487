"""The Sessions pages: /sessions (the store's sessions) and /sessions/{id} (one transcript)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from autoqwen.ui.pages import Pages
from autoqwen.workflows.errors import SessionNotFound
from autoqwen.workflows.records import SESSION_ID_PATTERN

__all__ = ["router"]


def router(pages: Pages) -> APIRouter:
    """The sessions pages' routes."""
    routes = APIRouter(include_in_schema=False)

    @routes.get("/sessions")
    async def sessions_page(request: Request) -> HTMLResponse:
        sessions = pages.store.list_sessions(limit=200)
        return pages.page(request, "sessions.html", title="Sessions", nav="sessions", sessions=sessions)

    @routes.get("/sessions/{session_id}")
    async def session_page(request: Request, session_id: str) -> HTMLResponse:
        if not SESSION_ID_PATTERN.match(session_id):
            return pages.missing(request, f"no session {session_id[:100]!r}")
        try:
            record = pages.store.get_record(session_id)
        except SessionNotFound:
            return pages.missing(request, f"no session {session_id[:100]!r}")
        return pages.page(request, "session.html", title=record.session.title, nav="sessions", record=record)

    return routes
