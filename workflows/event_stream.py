"""A session's events as server-sent events: a live run's from its start, or a stored session's as it was kept.

    StreamingResponse(live_events(run, store), media_type="text/event-stream")
    StreamingResponse(stored_events(store, session_id), media_type="text/event-stream")

Both say the same things in the same order: `session` {"session_id", "workflow"}, then each message (`message`,
`tool_call` or `tool_result`: the stored message, a tool result with the session's `files` it names), an
`input_request` while a run waits for a human, and `end` with the run's summary. A run that fails before its
session opens sends one `error` (an OpenAI-style error body) instead.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

from autoqwen.local_llm.api_errors import APIError
from autoqwen.workflows.api_models import RunSummary
from autoqwen.workflows.errors import WorkflowError
from autoqwen.workflows.live_runs import LiveRun, RunEvent
from autoqwen.workflows.records import Message
from autoqwen.workflows.store import SessionStore

__all__ = ["live_events", "message_data", "run_failed", "sse", "stored_events"]


def sse(event: str, data: Any) -> str:
    """One server-sent event: its name and its JSON data."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def run_failed(message: str) -> APIError:
    """The error of a run that could not start, or ended without its session (503 `run_failed`)."""
    return APIError(503, message, type="service_unavailable", code="run_failed")


def message_data(store: SessionStore, session_id: str, message: Message) -> dict[str, Any]:
    """A message as its event carries it; a tool result also lists the session's files it names (`files`: path and
    size), so that a client can show the images a skill made."""
    data = message.model_dump(mode="json")
    if message.type == "tool_result":
        data["files"] = _named_files(store, session_id, message.text())
    return data


async def live_events(run: LiveRun, store: SessionStore) -> AsyncIterator[str]:
    """The SSE lines of a live run from its start; a client that leaves closes this generator, and the run goes on."""
    async for event in run.events():
        yield _line(store, run.session_id, event)


async def stored_events(store: SessionStore, session_id: str) -> AsyncIterator[str]:
    """The SSE lines of a stored session (not running here): `session`, its messages, then `end` as it was kept."""
    record = store.get_record(session_id)
    session = record.session
    yield sse("session", {"session_id": session.id, "workflow": session.workflow})
    for message in record.messages:
        yield _line(store, session_id, ("message", message))
    seconds = (session.ended_at - session.started_at).total_seconds() if session.ended_at else 0.0
    by_cap = (session.stop_reason or "").startswith("Maximum number of turns")
    summary = RunSummary.of(session, by_cap=by_cap, seconds=max(seconds, 0.0))
    yield sse("end", summary.model_dump(mode="json"))


def _line(store: SessionStore, session_id: str | None, event: RunEvent) -> str:
    kind, data = event
    if kind == "message" and isinstance(data, Message):
        name = data.type if data.type in ("tool_call", "tool_result") else "message"
        return sse(name, message_data(store, str(session_id), data))
    if kind == "end" and isinstance(data, RunSummary):
        return sse("end", data.model_dump(mode="json"))
    if kind in ("end", "error"):
        return sse("error", run_failed(str(data or "the run ended without its session")).body().model_dump())
    return sse(kind, data)


def _named_files(store: SessionStore, session_id: str, text: str) -> list[dict[str, Any]]:
    """The session's files whose path (relative to its files folder) the text names, as a path or its tail."""
    try:
        files = store.session_files(session_id)
    except WorkflowError:
        return []
    named = []
    for entry in files:
        # Whole names only: `a.png` is not named by `data.png`.
        if re.search(rf"(?<![\w.-]){re.escape(entry.path)}(?!\.?[\w-])", text):
            named.append({"path": entry.path, "size": entry.size})
    return named
