"""The web UI's FastAPI app: server-rendered pages over the workflows HTTP API, which it mounts under /api.

    app = create_ui_app(LiveRuns(target), GuardConfig(token=None))
    uvicorn.run(app, host="127.0.0.1", port=8081)

Pages: /workflows (list), /workflows/{name} (its agents, team, termination and YAML), /playground (run one and
watch its messages live; static/ui.js streams POST /api/v1/workflows/{name}/runs), /sessions and /sessions/{id}.
Everything shown from a workflow, a model or a skill goes through Jinja's autoescape (and textContent in ui.js).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from autoqwen.local_llm.api_errors import APIError, add_error_handlers
from autoqwen.ui.guard import AccessGuard, GuardConfig
from autoqwen.workflows.catalog import WorkflowEntry, list_workflows
from autoqwen.workflows.errors import SessionNotFound
from autoqwen.workflows.http_api import served_workflow, workflow_router
from autoqwen.workflows.live_runs import LiveRuns
from autoqwen.workflows.records import SESSION_ID_PATTERN

__all__ = ["API_PREFIX", "create_ui_app"]

API_PREFIX = "/api"
_HERE = Path(__file__).resolve().parent


def create_ui_app(runs: LiveRuns, guard: GuardConfig | None = None, *, model_label: str = "") -> FastAPI:
    """The UI app over `runs` (its store and its model target); `guard` sets the access token and hosts."""
    app = FastAPI(title="autoqwen UI", docs_url=f"{API_PREFIX}/docs", openapi_url=f"{API_PREFIX}/openapi.json")
    templates = Jinja2Templates(directory=str(_HERE / "templates"))
    templates.env.globals["model_label"] = model_label
    app.mount("/static", StaticFiles(directory=str(_HERE / "static")), name="static")
    app.include_router(workflow_router(runs), prefix=API_PREFIX)
    app.add_middleware(AccessGuard, config=guard or GuardConfig())
    store = runs.store

    add_error_handlers(app)

    def page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        return templates.TemplateResponse(request, name, context, status_code=status)

    def missing(request: Request, message: str) -> HTMLResponse:
        return page(request, "error.html", 404, title="Not found", message=message)

    @app.get("/", include_in_schema=False)
    async def home() -> Response:
        return RedirectResponse("/workflows", status_code=303)

    @app.get("/workflows", include_in_schema=False)
    async def workflows_page(request: Request) -> HTMLResponse:
        return page(request, "workflows.html", title="Workflows", nav="workflows", workflows=list_workflows())

    @app.get("/workflows/{name}", include_in_schema=False)
    async def workflow_page(request: Request, name: str) -> HTMLResponse:
        entry = _entry(name)
        if entry is None:
            return missing(request, f"no workflow named {name[:100]!r}")
        try:
            spec = served_workflow(name)
        except APIError as exc:
            return page(request, "error.html", exc.status, title="Workflow", message=str(exc))
        text = entry.path.read_text(encoding="utf-8", errors="replace")
        return page(request, "workflow.html", title=spec.name, nav="workflows", spec=spec, entry=entry, yaml=text)

    @app.get("/playground", include_in_schema=False)
    async def playground_page(request: Request, workflow: str = "") -> HTMLResponse:
        entries = [e for e in list_workflows() if e.problem is None]
        chosen = next((e for e in entries if e.name == workflow), entries[0] if entries else None)
        spec = served_workflow(chosen.name) if chosen is not None else None
        return page(request, "playground.html", title="Playground", nav="playground", workflows=entries, spec=spec)

    @app.get("/sessions", include_in_schema=False)
    async def sessions_page(request: Request) -> HTMLResponse:
        sessions = store.list_sessions(limit=200)
        return page(request, "sessions.html", title="Sessions", nav="sessions", sessions=sessions)

    @app.get("/sessions/{session_id}", include_in_schema=False)
    async def session_page(request: Request, session_id: str) -> HTMLResponse:
        if not SESSION_ID_PATTERN.match(session_id):
            return missing(request, f"no session {session_id[:100]!r}")
        try:
            record = store.get_record(session_id)
        except SessionNotFound:
            return missing(request, f"no session {session_id[:100]!r}")
        return page(request, "session.html", title=record.session.title, nav="sessions", record=record)

    return app


def _entry(name: str) -> WorkflowEntry | None:
    return next((e for e in list_workflows() if e.name == name), None)
