"""The Workflows pages: the list, one workflow (its agents, team, termination and YAML), and the editor.

/workflows              every workflow; New workflow, and per row Duplicate (any), Edit and Delete (the user's)
/workflows/new          the editor on a starter YAML
/workflows/{name}       one workflow, read-only
/workflows/{name}/edit  the editor on a user workflow's file (a builtin is read-only: duplicate it)

The editor (static/editor.js) is a client of the editor API (editor_api.py): it validates as you type, saves with
PUT, and switches between the YAML and a form of its common fields.
"""

from __future__ import annotations

import asyncio
import re

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from autoqwen.agents import AGENT_KINDS
from autoqwen.local_llm.api_errors import APIError
from autoqwen.paths import user_workflows_dir
from autoqwen.skills import load_skills
from autoqwen.ui.editor_api import NAME_PATTERN, etag_of
from autoqwen.ui.pages import Pages
from autoqwen.workflows.catalog import BUILTIN_DIR, WorkflowEntry, list_workflows
from autoqwen.workflows.errors import SpecError
from autoqwen.workflows.http_api import served_workflow
from autoqwen.workflows.loader import MAX_YAML_BYTES, read_bounded
from autoqwen.workflows.spec import TEAM_TYPES, WorkflowSpec

__all__ = ["STARTER_YAML", "router"]

STARTER_YAML = """\
name: my-workflow
description: What this workflow does, in one line.
inputs:
  question: {description: What to ask, default: What is a small language model?}
agents:
  - name: assistant
    system_message: You answer questions in a few sentences. End your answer with TERMINATE.
team: {type: round_robin, max_turns: 4}
termination: {text: TERMINATE, max_messages: 10}
task: "Answer this question: {question}"
"""


def router(pages: Pages) -> APIRouter:
    """The workflows pages' routes."""
    routes = APIRouter(include_in_schema=False)

    @routes.get("/workflows")
    async def workflows_page(request: Request) -> HTMLResponse:
        return pages.page(request, "workflows.html", title="Workflows", nav="workflows", workflows=list_workflows())

    @routes.get("/workflows/new")
    async def new_page(request: Request) -> HTMLResponse:
        return await _editor(pages, request, name=None, text=STARTER_YAML)

    @routes.get("/workflows/{name}")
    async def workflow_page(request: Request, name: str, saved: bool = False) -> HTMLResponse:
        entry = _entry(name)
        if entry is None:
            return pages.missing(request, f"no workflow named {name[:100]!r}")
        spec: WorkflowSpec | None = None
        problem, status = None, 200
        try:
            spec = served_workflow(name)
        except APIError as exc:  # a broken user file: its problem, its YAML, and Edit to fix it
            problem, status = str(exc), exc.status
        context = {"entry": entry, "spec": spec, "problem": problem, "saved": saved, "yaml": _text(entry)}
        return pages.page(request, "workflow.html", status, title=name, nav="workflows", **context)

    @routes.get("/workflows/{name}/edit")
    async def edit_page(request: Request, name: str) -> HTMLResponse:
        if (BUILTIN_DIR / f"{name}.yaml").is_file():
            message = f"{name!r} is a builtin workflow, read-only: duplicate it (Workflows list) and edit the copy"
            return pages.page(request, "error.html", 409, title="Edit workflow", nav="workflows", message=message)
        path = user_workflows_dir() / f"{name}.yaml"
        if not re.fullmatch(NAME_PATTERN, name) or not path.is_file():
            return pages.missing(request, f"no user workflow named {name[:100]!r}")
        try:
            raw = read_bounded(path, MAX_YAML_BYTES, SpecError, "a workflow file is far smaller")
        except SpecError as exc:
            return pages.page(request, "error.html", 400, title="Edit workflow", nav="workflows", message=str(exc))
        text = raw.decode("utf-8", errors="replace")
        return await _editor(pages, request, name=name, text=text, etag=etag_of(raw))

    return routes


async def _editor(pages: Pages, request: Request, *, name: str | None, text: str, etag: str = "") -> HTMLResponse:
    """The editor page: `name` None for a new workflow; `etag` is the file's as read, sent back when saving."""
    registry = await asyncio.to_thread(load_skills, warn=False)
    return pages.page(
        request,
        "workflow_edit.html",
        title=f"Edit {name}" if name else "New workflow",
        nav="workflows",
        workflow_name=name,
        yaml=text,
        etag=etag,
        skills=registry.names(),
        agent_kinds=list(AGENT_KINDS),
        team_types=list(TEAM_TYPES),
    )


def _entry(name: str) -> WorkflowEntry | None:
    return next((e for e in list_workflows() if e.name == name), None)


def _text(entry: WorkflowEntry) -> str:
    try:
        return read_bounded(entry.path, MAX_YAML_BYTES, SpecError).decode("utf-8", errors="replace")
    except SpecError as exc:
        return f"# {exc}"
