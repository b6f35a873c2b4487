"""The web UI's FastAPI app: server-rendered pages over a JSON API, which it mounts under /api.

    app = create_ui_app(LiveRuns(target), GuardConfig(token=None), model=lazy, model_label="auto (embedded)")
    uvicorn.run(app, host="127.0.0.1", port=8081)

The API is the workflows HTTP API (runs, sessions) plus the UI's own routers (editing workflows, managing sessions
and the gallery, skills). Each page module owns its pages: workflows, playground, sessions, gallery, skills, model.
Everything shown from a workflow, a model or a skill goes through Jinja's autoescape (and textContent in scripts).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from autoqwen.local_llm.api_errors import add_error_handlers
from autoqwen.ui import (
    editor_api,
    gallery_pages,
    model_api,
    model_pages,
    playground_pages,
    session_api,
    session_pages,
    skills_api,
    skills_pages,
    workflow_pages,
)
from autoqwen.ui.guard import AccessGuard, GuardConfig
from autoqwen.ui.model import LazyModel
from autoqwen.ui.pages import Pages
from autoqwen.workflows.http_api import workflow_router
from autoqwen.workflows.live_runs import LiveRuns

__all__ = ["API_PREFIX", "create_ui_app"]

API_PREFIX = "/api"
_HERE = Path(__file__).resolve().parent
_PAGES = (workflow_pages, playground_pages, session_pages, gallery_pages, skills_pages, model_pages)
_APIS = (editor_api, session_api, skills_api, model_api)


def create_ui_app(
    runs: LiveRuns, guard: GuardConfig | None = None, *, model: LazyModel | None = None, model_label: str = ""
) -> FastAPI:
    """The UI app over `runs` (its store and its model target); `guard` sets the access token and hosts; `model`
    is the embedded engine when the UI starts one (None with an external server)."""
    app = FastAPI(title="autoqwen UI", docs_url=f"{API_PREFIX}/docs", openapi_url=f"{API_PREFIX}/openapi.json")
    pages = Pages(runs, model=model, model_label=model_label)
    app.mount("/static", StaticFiles(directory=str(_HERE / "static")), name="static")
    app.include_router(workflow_router(runs), prefix=API_PREFIX)
    for api in _APIS:
        app.include_router(api.router(pages), prefix=API_PREFIX)
    for module in _PAGES:
        app.include_router(module.router(pages))
    app.add_middleware(AccessGuard, config=guard or GuardConfig())
    add_error_handlers(app)

    @app.get("/", include_in_schema=False)
    async def home() -> Response:
        return RedirectResponse("/workflows", status_code=303)

    return app
