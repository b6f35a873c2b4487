"""The Playground page: pick a workflow, fill its inputs, run it and watch its messages (static/ui.js)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from autoqwen.ui.pages import Pages
from autoqwen.workflows.catalog import list_workflows
from autoqwen.workflows.http_api import served_workflow

__all__ = ["router"]


def router(pages: Pages) -> APIRouter:
    """The playground's routes."""
    routes = APIRouter(include_in_schema=False)

    @routes.get("/playground")
    async def playground_page(request: Request, workflow: str = "") -> HTMLResponse:
        entries = [e for e in list_workflows() if e.problem is None]
        chosen = next((e for e in entries if e.name == workflow), entries[0] if entries else None)
        spec = served_workflow(chosen.name) if chosen is not None else None
        title = "Playground"
        return pages.page(request, "playground.html", title=title, nav="playground", workflows=entries, spec=spec)

    return routes
