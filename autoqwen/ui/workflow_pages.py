"""The Workflows pages: /workflows (the list) and /workflows/{name} (its agents, team, termination and YAML)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from autoqwen.local_llm.api_errors import APIError
from autoqwen.ui.pages import Pages
from autoqwen.workflows.catalog import WorkflowEntry, list_workflows
from autoqwen.workflows.http_api import served_workflow

__all__ = ["router"]


def router(pages: Pages) -> APIRouter:
    """The workflows pages' routes."""
    routes = APIRouter(include_in_schema=False)

    @routes.get("/workflows")
    async def workflows_page(request: Request) -> HTMLResponse:
        return pages.page(request, "workflows.html", title="Workflows", nav="workflows", workflows=list_workflows())

    @routes.get("/workflows/{name}")
    async def workflow_page(request: Request, name: str) -> HTMLResponse:
        entry = _entry(name)
        if entry is None:
            return pages.missing(request, f"no workflow named {name[:100]!r}")
        try:
            spec = served_workflow(name)
        except APIError as exc:
            return pages.page(request, "error.html", exc.status, title="Workflow", message=str(exc))
        text = entry.path.read_text(encoding="utf-8", errors="replace")
        return pages.page(request, "workflow.html", title=spec.name, nav="workflows", spec=spec, entry=entry, yaml=text)

    return routes


def _entry(name: str) -> WorkflowEntry | None:
    return next((e for e in list_workflows() if e.name == name), None)
