"""A workflow as an OpenAI model: `model: "workflow:NAME"` on /v1/chat/completions runs it.

    app = create_app(engine, config, providers=[WorkflowModels(runs)])
    client.chat.completions.create(model="workflow:write-review", messages=[{"role": "user", "content": "..."}])

The last user message is the task (the workflow's task template and inputs are left aside); the answer, streamed
or not, is the team's final message, and the run is a session like any other. The session id is in the
completion's id (`chatcmpl-workflow-<session id>`) and in the extra field `autoqwen: {session_id, status, turns}`.
A stream sends the session in its first chunk, SSE comments (which clients ignore) while agents speak, then the
final message.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi.responses import JSONResponse

from autoqwen.local_llm.api_errors import APIError
from autoqwen.local_llm.model_provider import ProviderReply
from autoqwen.local_llm.protocol import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChunkChoice,
    Delta,
    ModelCard,
    ResponseMessage,
    Usage,
)
from autoqwen.workflows.api_models import RunRequest, RunSummary
from autoqwen.workflows.catalog import list_workflows
from autoqwen.workflows.http_api import MODEL_PREFIX, begin_run, ended, served_workflow
from autoqwen.workflows.live_runs import LiveRun, LiveRuns
from autoqwen.workflows.records import Message
from autoqwen.workflows.store import SessionStore

__all__ = ["WorkflowModels"]


class WorkflowModels:
    """The local_llm server's model provider for `workflow:NAME` (see local_llm.model_provider)."""

    prefix = MODEL_PREFIX

    def __init__(self, runs: LiveRuns) -> None:
        self.runs = runs

    def models(self) -> list[ModelCard]:
        """Every runnable named workflow, as a model; a workflow takes no client tools and no output format."""
        return [
            ModelCard(
                id=MODEL_PREFIX + entry.name,
                owned_by="autoqwen-workflow",
                function_calling=False,
                json_output=False,
                structured_output=False,
                vision=False,
                family="unknown",
            )
            for entry in list_workflows()
            if entry.problem is None
        ]

    async def complete(
        self, body: ChatCompletionRequest, is_disconnected: Callable[[], Awaitable[bool]]
    ) -> ProviderReply:
        """Run the workflow on the last user message; answer with the team's final message."""
        del is_disconnected  # the run goes on without its client, like any run of this server
        spec = served_workflow(body.model.removeprefix(MODEL_PREFIX), param="model")
        if body.tools:
            raise APIError(
                400,
                "a workflow model takes no tools: its agents have their own",
                type="invalid_request_error",
                param="tools",
            )
        task = _last_user_text(body)
        # The task template's {placeholders} are the workflow's; the user's braces are text.
        escaped = task.replace("{", "{{").replace("}", "}}")
        spec = spec.model_copy(update={"task": escaped, "inputs": {}})
        run, _ = await begin_run(self.runs, spec, RunRequest(seed=body.seed))
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return self._stream(body.model, run, include_usage)
        summary = await ended(run)
        if summary.status == "failed":
            raise APIError(
                500,
                f"the workflow run failed: {summary.error} (session {summary.session_id})",
                type="internal_server_error",
                code="run_failed",
            )
        completion = ChatCompletion(
            id=_completion_id(summary.session_id),
            model=body.model,
            choices=[Choice(message=ResponseMessage(content=self._final(summary.session_id)), finish_reason="stop")],
            usage=_usage(summary),
        )
        return JSONResponse(completion.model_dump(mode="json") | {"autoqwen": _extra(summary)})

    async def _stream(self, model: str, run: LiveRun, include_usage: bool) -> AsyncIterator[str]:
        session_id = str(run.session_id)
        head: dict[str, Any] = {"id": _completion_id(session_id), "created": int(time.time()), "model": model}

        def chunk(delta: Delta, finish: Any = None, **extra: Any) -> str:
            data = ChatCompletionChunk(**head, choices=[ChunkChoice(delta=delta, finish_reason=finish)])
            return f"data: {json.dumps(data.model_dump(mode='json', exclude_none=True) | extra)}\n\n"

        yield chunk(Delta(role="assistant", content=""), autoqwen={"session_id": session_id, "status": "running"})
        summary: RunSummary | None = None
        async for kind, data in run.events():
            if kind == "message" and isinstance(data, Message):  # keeps the connection alive: clients skip comments
                yield f": {data.type} from {data.source[:64]!r}\n\n"
            elif kind == "end" and isinstance(data, RunSummary):
                summary = data
        if summary is None:
            error = APIError(503, "the run ended without its session", type="service_unavailable", code="run_failed")
            yield f"data: {json.dumps(error.body().model_dump())}\n\n"
            return
        if summary.status == "failed":
            error = APIError(500, f"the workflow run failed: {summary.error}", type="internal_server_error")
            yield f"data: {json.dumps(error.body().model_dump())}\n\n"
            return
        yield chunk(Delta(content=self._final(session_id)))
        yield chunk(Delta(), "stop", autoqwen=_extra(summary))
        if include_usage:
            usage = ChatCompletionChunk(**head, choices=[], usage=_usage(summary))
            yield f"data: {json.dumps(usage.model_dump(mode='json', exclude_none=True))}\n\n"
        yield "data: [DONE]\n\n"

    def _final(self, session_id: str) -> str:
        """The team's final message: the last text an agent said (not the task)."""
        store: SessionStore = self.runs.store
        texts = [m for m in store.get_messages(session_id) if m.type == "text" and m.seq > 1]
        return texts[-1].text() if texts else ""


def _last_user_text(body: ChatCompletionRequest) -> str:
    for i in range(len(body.messages) - 1, -1, -1):
        message = body.messages[i]
        if message.role == "user":
            try:
                text = message.text()
            except ValueError as exc:
                raise APIError(400, str(exc), type="invalid_request_error", param=f"messages.{i}.content") from exc
            if text.strip():
                return text
    raise APIError(
        400,
        "a workflow model needs a user message: its text is the task",
        type="invalid_request_error",
        param="messages",
    )


def _completion_id(session_id: str) -> str:
    return f"chatcmpl-workflow-{session_id}"


def _usage(summary: RunSummary) -> Usage:
    total = summary.prompt_tokens + summary.completion_tokens
    return Usage(prompt_tokens=summary.prompt_tokens, completion_tokens=summary.completion_tokens, total_tokens=total)


def _extra(summary: RunSummary) -> dict[str, Any]:
    return {"session_id": summary.session_id, "status": summary.status, "turns": summary.turns}
