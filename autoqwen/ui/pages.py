"""What every page module of the UI shares: the templates, the runs and their store, the model in use.

    pages = Pages(runs, model=lazy, model_label="SmolLM2 (embedded)")
    app.include_router(workflow_pages.router(pages))

A page module builds an APIRouter of HTML routes (left out of the OpenAPI schema) from a `Pages`; its JSON routes,
if any, go in a router the app mounts under /api.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from autoqwen.workflows.errors import SessionNotFound
from autoqwen.workflows.live_runs import LiveRuns
from autoqwen.workflows.records import SESSION_ID_PATTERN, Session

if TYPE_CHECKING:
    from autoqwen.ui.model import LazyModel

__all__ = ["Pages"]

_HERE = Path(__file__).resolve().parent


class Pages:
    """The templates and the state the pages read: `runs` (and its `store`), the `model` when it is embedded."""

    def __init__(self, runs: LiveRuns, *, model: LazyModel | None = None, model_label: str = "") -> None:
        self.runs = runs
        self.store = runs.store
        self.model = model
        self.model_label = model_label
        self.templates = Jinja2Templates(directory=str(_HERE / "templates"))
        self.templates.env.globals["model_label"] = model_label

    def page(self, request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        """Render template `name` with `context` (which names `title` and `nav`, the highlighted navigation entry)."""
        return self.templates.TemplateResponse(request, name, context, status_code=status)

    def session(self, session_id: str) -> Session | None:
        """The stored session of that id, or None (an id of the wrong shape included)."""
        if not SESSION_ID_PATTERN.match(session_id):
            return None
        try:
            return self.store.get_session(session_id)
        except SessionNotFound:
            return None

    def missing(self, request: Request, message: str) -> HTMLResponse:
        """The 404 page saying what was not found."""
        return self.page(request, "error.html", 404, title="Not found", message=message)
