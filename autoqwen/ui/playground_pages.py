"""The Playground page: pick a workflow, fill its inputs, run it and watch its messages (static/ui.js).

/playground?workflow=NAME     the form for that workflow
/playground?session=ID        the same page attached to a session's events: a live run's from its start, then
                              as they come (a reload, a second tab, the Sessions page's Resume), or a stored one
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from autoqwen.local_llm.api_errors import APIError
from autoqwen.ui.pages import Pages
from autoqwen.workflows.catalog import list_workflows
from autoqwen.workflows.http_api import served_workflow

__all__ = ["router"]


def router(pages: Pages) -> APIRouter:
    """The playground's routes."""
    routes = APIRouter(include_in_schema=False)

    @routes.get("/playground")
    async def playground_page(request: Request, workflow: str = "", session: str = "") -> HTMLResponse:
        attached = pages.session(session) if session else None
        if session and attached is None:
            return pages.missing(request, f"no session {session[:100]!r}")
        if attached is not None:
            workflow = workflow or attached.workflow
        entries = [e for e in list_workflows() if e.problem is None]
        chosen = next((e for e in entries if e.name == workflow), entries[0] if entries else None)
        try:
            spec = served_workflow(chosen.name) if chosen is not None else None
        except APIError as exc:  # a workflow that broke since it was listed (a skill file changed, say)
            return pages.page(request, "error.html", exc.status, title="Playground", message=str(exc))
        return pages.page(
            request,
            "playground.html",
            title="Playground",
            nav="playground",
            workflows=entries,
            spec=spec,
            session=attached,
        )

    return routes
