"""The /v1/responses pipeline (OpenAI's Responses API), over the chat completions pipeline.

    responses = ResponsesServing(ResponseStore())
    reply = await responses.create(body, complete)   # a ResponsesResponse, or the SSE lines of a stream

A request becomes a chat completion request (`responses_chat`), so tools, `tool_choice` and the server's tool
policies (constrained decoding, call-then-answer, channel selection) apply exactly as they do for chat. `complete`
(the server's chat dispatch: the engine's `ChatServing`, or a model provider) answers it, and its reply becomes
output items (`reasoning` with `reasoning_text` for a thinking model, `message` with `output_text`,
`function_call`) or, streamed, the Responses events. A response made
with `store: true` is kept (`ResponseStore`), with its conversation, for a later `previous_response_id`.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from autoqwen.local_llm.api_errors import APIError
from autoqwen.local_llm.protocol import ChatCompletion, Usage
from autoqwen.local_llm.protocol_responses import (
    FunctionCallItem,
    IncompleteDetails,
    InputTokensDetails,
    OutputItem,
    OutputMessage,
    OutputText,
    ReasoningItem,
    ReasoningText,
    ResponsesRequest,
    ResponsesResponse,
    ResponseUsage,
)
from autoqwen.local_llm.response_store import ResponseStore
from autoqwen.local_llm.responses_chat import (
    ChatCall,
    ChatChunk,
    bad_request,
    call_chat,
    chat_chunks,
    chat_request,
    check_supported,
    input_messages,
    whole_completion,
)

__all__ = ["ResponsesServing"]


class ResponsesServing:
    """Serves the Responses API through the chat pipeline, keeping stored responses in `store`."""

    def __init__(self, store: ResponseStore) -> None:
        self.store = store

    async def create(
        self, body: ResponsesRequest, complete: ChatCall, *, scope: str | None = None
    ) -> ResponsesResponse | AsyncIterator[str]:
        """Answer one Responses request: the whole response, or (when `body.stream`) its SSE events. `scope` (the
        API key's digest, None without keys) is where `previous_response_id` is looked up and the response kept."""
        check_supported(body)
        history = self._history(body, scope)
        messages = [*history, *input_messages(body)]
        if not messages:
            raise bad_request(
                "input: give the input (text or items), or a previous_response_id to continue from", "input"
            )
        shell = _shell(body)
        reply = await call_chat(complete, chat_request(body, messages))
        if body.stream:
            return self._stream(shell, chat_chunks(reply), messages, scope, store=body.store)
        response = _finished(shell, whole_completion(reply))
        if body.store:
            self.store.put(scope, response, [*messages, _as_message(response.output)])
        return response

    def retrieve(self, response_id: str, scope: str | None = None) -> ResponsesResponse:
        """A kept response (GET /v1/responses/{id}); 404 when it is not kept."""
        kept = self.store.get(scope, response_id)
        if kept is None:
            raise APIError(
                404,
                f"no response {response_id!r} is kept by this server",
                type="invalid_request_error",
                param="response_id",
                code="not_found",
            )
        return kept.response

    def _history(self, body: ResponsesRequest, scope: str | None) -> list[dict[str, Any]]:
        if body.previous_response_id is None:
            return []
        kept = self.store.get(scope, body.previous_response_id)
        if kept is None:
            raise APIError(
                400,
                f"previous_response_id: no response {body.previous_response_id[:100]!r} is kept by this server; it "
                f"keeps the last {self.store.max_responses} responses created with store true, in memory, per API "
                "key, until it restarts (or send the whole conversation as input items)",
                type="invalid_request_error",
                param="previous_response_id",
                code="previous_response_not_found",
            )
        return [dict(message) for message in kept.messages]

    async def _stream(
        self,
        shell: ResponsesResponse,
        chunks: AsyncGenerator[ChatChunk, None],
        messages: list[dict[str, Any]],
        scope: str | None,
        *,
        store: bool,
    ) -> AsyncIterator[str]:
        """The Responses streaming events of a chat stream: the lifecycle (created, in_progress, completed or
        incomplete), each output item (added, its text or arguments, done), and `data: [DONE]` last, as chat's
        stream ends (OpenAI's SDKs stop there)."""
        sequence = itertools.count()

        def event(kind: str, **fields: Any) -> str:
            data = {"type": kind, "sequence_number": next(sequence), **fields}
            return f"event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"

        output: list[OutputItem] = []
        message: OutputMessage | None = None
        thought: ReasoningItem | None = None  # the reasoning item being streamed
        usage: Usage | None = None
        finish: str | None = None

        def open_message() -> list[str]:
            nonlocal message
            message = OutputMessage(status="in_progress")
            output.append(message)
            where = {"item_id": message.id, "output_index": len(output) - 1}
            part = OutputText(text="").model_dump(mode="json")
            return [
                event("response.output_item.added", output_index=where["output_index"], item=message.model_dump()),
                event("response.content_part.added", **where, content_index=0, part=part),
            ]

        def think(delta: str) -> list[str]:
            nonlocal thought
            lines = []
            if thought is None:
                thought = ReasoningItem(status="in_progress", content=[ReasoningText(text="")])
                output.append(thought)
                added = thought.model_dump()
                lines.append(event("response.output_item.added", output_index=len(output) - 1, item=added))
            thought.content[0].text += delta
            where = {"item_id": thought.id, "output_index": output.index(thought), "content_index": 0}
            return [*lines, event("response.reasoning_text.delta", **where, delta=delta)]

        def close_thought() -> list[str]:
            nonlocal thought
            if thought is None:
                return []
            done, thought = thought, None
            done.status = "incomplete" if finish == "length" else "completed"
            where = {"item_id": done.id, "output_index": output.index(done)}
            return [
                event("response.reasoning_text.done", **where, content_index=0, text=done.text),
                event("response.output_item.done", output_index=where["output_index"], item=done.model_dump()),
            ]

        def close_message() -> list[str]:
            nonlocal message
            if message is None:
                return []
            done, message = message, None
            text = done.content[0].text if done.content else ""
            done.content = [OutputText(text=text)]
            done.status = "incomplete" if finish == "length" else "completed"
            where = {"item_id": done.id, "output_index": output.index(done)}
            part = done.content[0].model_dump(mode="json")
            return [
                event("response.output_text.done", **where, content_index=0, text=text, logprobs=[]),
                event("response.content_part.done", **where, content_index=0, part=part),
                event("response.output_item.done", output_index=where["output_index"], item=done.model_dump()),
            ]

        try:
            yield event("response.created", response=shell.model_dump(mode="json"))
            yield event("response.in_progress", response=shell.model_dump(mode="json"))
            async for chunk in chunks:
                if isinstance(chunk, dict):  # the chat stream failed: its error body, as chat sends it
                    yield f"data: {json.dumps(chunk)}\n\n"
                    return
                usage = chunk.usage or usage
                for choice in chunk.choices:
                    finish = choice.finish_reason or finish
                    for line in think(choice.delta.reasoning_content) if choice.delta.reasoning_content else []:
                        yield line
                    if choice.delta.content or choice.delta.tool_calls:
                        for line in close_thought():
                            yield line
                    if choice.delta.content:
                        lines = open_message() if message is None else []
                        assert message is not None
                        if not message.content:
                            message.content = [OutputText(text="")]
                        message.content[0].text += choice.delta.content
                        where = {"item_id": message.id, "output_index": len(output) - 1}
                        delta = choice.delta.content
                        lines.append(
                            event("response.output_text.delta", **where, content_index=0, delta=delta, logprobs=[])
                        )
                        for line in lines:
                            yield line
                    for call in choice.delta.tool_calls or []:
                        for line in close_message():
                            yield line
                        item = _call_item(call)
                        output.append(item)
                        where = {"item_id": item.id, "output_index": len(output) - 1}
                        added = item.model_copy(update={"arguments": "", "status": "in_progress"})
                        yield event(
                            "response.output_item.added", output_index=where["output_index"], item=added.model_dump()
                        )
                        yield event("response.function_call_arguments.delta", **where, delta=item.arguments)
                        yield event("response.function_call_arguments.done", **where, arguments=item.arguments)
                        yield event(
                            "response.output_item.done", output_index=where["output_index"], item=item.model_dump()
                        )
            for line in close_thought():
                yield line
            if not any(isinstance(item, OutputMessage | FunctionCallItem) for item in output):
                for line in open_message():  # no text and no call: an empty message, as the whole reply has
                    yield line
            for line in close_message():
                yield line
            response = _done(shell, output, finish, usage)
            if store:
                self.store.put(scope, response, [*messages, _as_message(output)])
            kind = "response.incomplete" if response.status == "incomplete" else "response.completed"
            yield event(kind, response=response.model_dump(mode="json"))
            yield "data: [DONE]\n\n"
        finally:
            await chunks.aclose()


def _shell(body: ResponsesRequest) -> ResponsesResponse:
    """The response object before any output: what the request asked for, status in_progress."""
    choice = body.tool_choice or "auto"
    return ResponsesResponse(
        status="in_progress",
        instructions=body.instructions,
        max_output_tokens=body.max_output_tokens,
        metadata=body.metadata or {},
        model=body.model,
        parallel_tool_calls=body.parallel_tool_calls is not False,
        previous_response_id=body.previous_response_id,
        store=body.store,
        temperature=body.temperature,
        text={"format": {"type": "text"}}
        if body.text is None
        else body.text.model_dump(by_alias=True, exclude_none=True),
        tool_choice=choice if isinstance(choice, str) else choice.model_dump(),
        tools=[tool.model_dump(exclude_none=True) for tool in body.tools or []],
        top_p=body.top_p,
        truncation=body.truncation or "disabled",
        user=body.user,
    )


def _finished(shell: ResponsesResponse, completion: ChatCompletion) -> ResponsesResponse:
    choice = completion.choices[0]
    message, calls = choice.message, choice.message.tool_calls or []
    output: list[OutputItem] = []
    if message.reasoning_content:  # cut off while thinking: incomplete, as the streamed item says
        cut = choice.finish_reason == "length" and not message.content and not calls
        thought = ReasoningItem(status="incomplete" if cut else "completed")
        output.append(thought.model_copy(update={"content": [ReasoningText(text=message.reasoning_content)]}))
    if message.content or not calls:
        text = [OutputText(text=message.content or "")]
        output.append(
            OutputMessage(status="incomplete" if choice.finish_reason == "length" else "completed", content=text)
        )
    output += [FunctionCallItem(call_id=c.id, name=c.function.name, arguments=c.function.arguments) for c in calls]
    return _done(shell, output, choice.finish_reason, completion.usage)


def _done(
    shell: ResponsesResponse, output: list[OutputItem], finish: str | None, usage: Usage | None
) -> ResponsesResponse:
    """The finished response: its output, status (incomplete when cut off by max_output_tokens) and usage."""
    incomplete = finish == "length"
    return shell.model_copy(
        update={
            "status": "incomplete" if incomplete else "completed",
            "incomplete_details": IncompleteDetails(reason="max_output_tokens") if incomplete else None,
            "output": output,
            "usage": None
            if usage is None
            else ResponseUsage(
                input_tokens=usage.prompt_tokens,
                input_tokens_details=InputTokensDetails(cached_tokens=usage.prompt_tokens_details.cached_tokens),
                output_tokens=usage.completion_tokens,
                total_tokens=usage.total_tokens,
            ),
        }
    )


def _as_message(output: list[OutputItem]) -> dict[str, Any]:
    """A response's output as the assistant message a later request's history holds."""
    text = "".join(part.text for item in output if isinstance(item, OutputMessage) for part in item.content)
    thought = "".join(item.text for item in output if isinstance(item, ReasoningItem))
    calls = [
        {"id": item.call_id, "type": "function", "function": {"name": item.name, "arguments": item.arguments}}
        for item in output
        if isinstance(item, FunctionCallItem)
    ]
    message = {"role": "assistant", "content": text or (None if calls else "")}
    return {
        **message,
        **({"tool_calls": calls} if calls else {}),
        **({"reasoning_content": thought} if thought else {}),
    }


def _call_item(call: dict[str, Any]) -> FunctionCallItem:
    """A streamed chat tool call (`{"index", "id", "type", "function": {...}}`) as a function_call item."""
    function = call.get("function") or {}
    return FunctionCallItem(
        call_id=str(call.get("id", "")),
        name=str(function.get("name", "")),
        arguments=str(function.get("arguments", "")),
    )
