"""Workflows and sessions over HTTP: a FastAPI router over the runner and the store, mounted by `autoqwen serve`.

    runs = LiveRuns(RunTarget("http://127.0.0.1:1234/v1", model="SmolLM2-135M-Instruct"))
    app.include_router(workflow_router(runs))

GET  /v1/workflows                    the named workflows, their inputs
POST /v1/workflows/{name}/runs        run one: its events as SSE (`stream: true`) or one JSON result
GET  /v1/sessions                     stored sessions, newest first
GET  /v1/sessions/{id}                one session with its messages and files
GET  /v1/sessions/{id}/events         its events as SSE: a live run's from its start, or the stored ones
POST /v1/sessions/{id}/input          answer a run's human input request
POST /v1/sessions/{id}/resume         continue a stored session as a live run
POST /v1/sessions/{id}/cancel         stop a run of this server; the session ends `stopped`

Only named workflows run (builtin or in the user's workflows folder), never a path a client sends. Errors are
OpenAI-style bodies raised as `APIError`; the app's handlers (local_llm.server) write them, and its request guard
(API key, Host, body size) covers every route under /v1.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query
from fastapi.responses import StreamingResponse

from autoqwen.local_llm.api_errors import APIError
from autoqwen.workflows.api_models import (
    InputAccepted,
    InputAnswer,
    InputInfo,
    ResumeRequest,
    ResumeStarted,
    RunOutcome,
    RunRequest,
    RunSummary,
    SessionList,
    WorkflowInfo,
    WorkflowList,
)
from autoqwen.workflows.catalog import WorkflowEntry, list_workflows
from autoqwen.workflows.errors import SessionNotFound, SpecError
from autoqwen.workflows.event_stream import live_events, run_failed, sse, stored_events
from autoqwen.workflows.human_input import InputNotPending
from autoqwen.workflows.live_runs import AlreadyRunning, LiveRun, LiveRuns, NotRunning, RunEvent
from autoqwen.workflows.records import SESSION_ID_PATTERN, Session, SessionRecord
from autoqwen.workflows.spec import WorkflowSpec
from autoqwen.workflows.store import SessionStore

__all__ = [
    "MODEL_PREFIX",
    "begin_run",
    "check_inputs",
    "check_session_id",
    "ended",
    "opened",
    "served_workflow",
    "session_not_found",
    "sse",
    "workflow_router",
]

MODEL_PREFIX = "workflow:"
# Proxies must pass events on as they come, and clients must not cache a stream.
_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "with `stream: true`: SSE events"}
}
_EVENTS_DOC: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "SSE events, up to `end`"}
}
_SessionId = Annotated[str, Path(max_length=200)]


def workflow_router(runs: LiveRuns) -> APIRouter:
    """The /v1/workflows and /v1/sessions routes over `runs` and its store."""
    router = APIRouter(prefix="/v1", tags=["workflows"])
    store = runs.store

    @router.get("/workflows", summary="List the named workflows")
    async def list_named() -> WorkflowList:
        return WorkflowList(data=[_info(entry) for entry in list_workflows()])

    @router.post("/workflows/{name}/runs", response_model=RunOutcome, responses=_STREAM_DOC, summary="Run a workflow")
    async def start_run(name: str, body: RunRequest) -> RunOutcome | StreamingResponse:
        spec = served_workflow(name)
        check_inputs(spec, body.inputs)
        run, _ = await begin_run(runs, spec, body)
        if body.stream:
            return _stream(run, store)
        return await _outcome(store, run)

    @router.get("/sessions", summary="List stored sessions, newest first")
    async def list_sessions(limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> SessionList:
        return SessionList(data=store.list_sessions(limit=limit))

    @router.get("/sessions/{session_id}", summary="One session with its messages")
    async def get_session(session_id: _SessionId) -> SessionRecord:
        check_session_id(session_id)
        try:
            return store.get_record(session_id)
        except SessionNotFound as exc:
            raise session_not_found(session_id) from exc

    @router.get("/sessions/{session_id}/events", responses=_EVENTS_DOC, summary="A session's events, live or stored")
    async def session_events(session_id: _SessionId) -> StreamingResponse:
        check_session_id(session_id)
        run = runs.get(session_id)
        if run is not None:
            return _stream(run, store)
        try:
            store.get_session(session_id)  # a 404 now, not an error mid-stream
        except SessionNotFound as exc:
            raise session_not_found(session_id) from exc
        return StreamingResponse(
            stored_events(store, session_id),
            media_type="text/event-stream",
            headers={**_SSE_HEADERS, "X-Autoqwen-Session": session_id},
        )

    @router.post("/sessions/{session_id}/input", summary="Answer a run's human input request")
    async def answer_input(session_id: _SessionId, body: InputAnswer) -> InputAccepted:
        check_session_id(session_id)
        try:
            runs.answer(session_id, body.request_id, body.text)
        except SessionNotFound as exc:
            raise session_not_found(session_id) from exc
        except NotRunning as exc:
            raise _not_running(exc) from exc
        except InputNotPending as exc:
            raise APIError(
                409, str(exc), type="invalid_request_error", param="request_id", code="input_not_pending"
            ) from exc
        return InputAccepted(session_id=session_id, request_id=body.request_id)

    @router.post(
        "/sessions/{session_id}/resume", response_model=ResumeStarted, responses=_STREAM_DOC, summary="Resume a session"
    )
    async def resume(
        session_id: _SessionId, body: Annotated[ResumeRequest | None, Body()] = None
    ) -> ResumeStarted | StreamingResponse:
        check_session_id(session_id)
        body = body or ResumeRequest()
        try:
            run = runs.resume(session_id, body)
        except SessionNotFound as exc:
            raise session_not_found(session_id) from exc
        except AlreadyRunning as exc:
            raise APIError(
                409, str(exc), type="invalid_request_error", param="session_id", code="session_running"
            ) from exc
        await opened(run)
        if body.stream:
            return _stream(run, store)
        return ResumeStarted(session_id=session_id, workflow=run.workflow)

    @router.post("/sessions/{session_id}/cancel", summary="Stop a running session")
    async def cancel(session_id: _SessionId) -> Session:
        check_session_id(session_id)
        try:
            return await asyncio.to_thread(runs.cancel, session_id)
        except SessionNotFound as exc:
            raise session_not_found(session_id) from exc
        except NotRunning as exc:
            raise _not_running(exc) from exc

    return router


def served_workflow(name: str, *, param: str = "name") -> WorkflowSpec:
    """A named workflow (builtin or the user's, never a path), loaded; 404 when there is none, 400 if it is broken."""
    from autoqwen.skills import load_skills
    from autoqwen.workflows.loader import load_workflow

    entry = next((e for e in list_workflows() if e.name == name and e.problem is None), None)
    if entry is None:
        known = ", ".join(e.name for e in list_workflows() if e.problem is None)
        raise APIError(
            404,
            f"no workflow named {name[:100]!r} (known: {known})",
            type="invalid_request_error",
            param=param,
            code="workflow_not_found",
        )
    try:
        return load_workflow(entry.path, skills=load_skills())
    except SpecError as exc:
        raise APIError(
            400, f"workflow {name!r} cannot run: {exc}", type="invalid_request_error", code="workflow_invalid"
        ) from exc


async def begin_run(runs: LiveRuns, spec: WorkflowSpec, body: RunRequest) -> tuple[LiveRun, RunEvent]:
    """Start a run and return it once its session exists, with its first event (the session); a run that cannot
    start is an OpenAI-style error."""
    run = runs.start(spec, body)
    return run, await opened(run)


async def opened(run: LiveRun) -> RunEvent:
    """Wait for a run's first event (its session, once it exists); a run that could not start is a 503 error."""
    first = await anext(aiter(run.events()))
    if first[0] == "error":
        raise run_failed(str(first[1]))
    return first


def check_inputs(spec: WorkflowSpec, inputs: dict[str, str]) -> None:
    """400 naming the field for an input the workflow does not take, or a required one left out."""
    for given in inputs:
        if given not in spec.inputs:
            takes = ", ".join(spec.inputs) or "none"
            raise APIError(
                400,
                f"inputs.{given[:100]}: workflow {spec.name!r} takes no such input (it takes: {takes})",
                type="invalid_request_error",
                param=f"inputs.{given[:100]}",
                code="unknown_input",
            )
    for name, input_spec in spec.inputs.items():
        if input_spec.default is None and name not in inputs:
            raise APIError(
                400,
                f"inputs.{name}: required by workflow {spec.name!r} ({input_spec.description or 'no default'})",
                type="invalid_request_error",
                param=f"inputs.{name}",
                code="missing_input",
            )


def _info(entry: WorkflowEntry) -> WorkflowInfo:
    """What the workflow list says of one catalog entry (its problem when it cannot be loaded)."""
    from autoqwen.workflows.loader import load_workflow

    info = WorkflowInfo(
        name=entry.name,
        source=entry.source,
        description=entry.description,
        model=MODEL_PREFIX + entry.name,
        problem=entry.problem,
    )
    if entry.problem is not None:
        return info
    try:
        spec = load_workflow(entry.path)
    except SpecError as exc:
        return info.model_copy(update={"problem": str(exc)})
    inputs = {
        key: InputInfo(description=value.description, default=value.default, required=value.default is None)
        for key, value in spec.inputs.items()
    }
    return info.model_copy(update={"inputs": inputs})


def _stream(run: LiveRun, store: SessionStore) -> StreamingResponse:
    """A live run's events, from its start, as the answer."""
    return StreamingResponse(
        live_events(run, store),
        media_type="text/event-stream",
        headers={**_SSE_HEADERS, "X-Autoqwen-Session": str(run.session_id)},
    )


async def ended(run: LiveRun) -> RunSummary:
    """Wait for the run's end (past its messages) and return its summary."""
    async for kind, data in run.events():
        if kind == "end" and isinstance(data, RunSummary):
            return data
        if kind in ("end", "error"):
            raise run_failed(str(data or "the run ended without its session"))
    raise run_failed("the run ended without its session")


async def _outcome(store: SessionStore, run: LiveRun) -> RunOutcome:
    """Wait for the run's end and return its summary with every stored message."""
    summary = await ended(run)
    return RunOutcome(**summary.model_dump(), messages=store.get_messages(summary.session_id))


def check_session_id(session_id: str) -> None:
    """404 `session_not_found` for an id that no session can have (checked before the store is asked)."""
    if not SESSION_ID_PATTERN.match(session_id):
        raise session_not_found(session_id)


def _not_running(exc: NotRunning) -> APIError:
    return APIError(409, str(exc), type="invalid_request_error", param="session_id", code="session_not_running")


def session_not_found(session_id: str) -> APIError:
    """404 `session_not_found` for an id no stored session has."""
    return APIError(
        404,
        f"no session {session_id[:100]!r}",
        type="invalid_request_error",
        param="session_id",
        code="session_not_found",
    )
