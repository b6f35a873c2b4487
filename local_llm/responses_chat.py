"""The Responses API in chat terms: a Responses request as a chat completion request, and chat's replies and
errors back, for `serving_responses`.

    messages = input_messages(body)                    # input items as chat messages (history goes before them)
    reply = await call_chat(complete, chat_request(body, messages))
    async for chunk in chat_chunks(reply): ...         # a stream's chunks (or one chunk of a whole completion)

`instructions` becomes the system message, `function_call` items an assistant's tool calls, `function_call_output`
items tool messages, flat function tools chat's tools, and `text.format` `response_format`. Errors the chat
pipeline raises name the Responses fields (`input`, `tools.0.parameters`, `max_output_tokens`) instead of chat's.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import ValidationError

from autoqwen.local_llm.api_errors import APIError, validation_error
from autoqwen.local_llm.errors import ContextLengthExceeded, InvalidRequest
from autoqwen.local_llm.model_provider import ProviderReply
from autoqwen.local_llm.protocol import ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, ChunkChoice, Delta
from autoqwen.local_llm.protocol_responses import (
    Content,
    FunctionCallInput,
    FunctionCallOutputInput,
    FunctionTool,
    FunctionToolChoice,
    MessageInput,
    OtherContent,
    OtherTool,
    ReasoningInput,
    ResponsesRequest,
)

__all__ = [
    "ChatCall",
    "ChatChunk",
    "bad_request",
    "call_chat",
    "chat_chunks",
    "chat_request",
    "check_supported",
    "input_messages",
    "whole_completion",
]

# Answers a chat completion request: the server's dispatch to the engine's chat pipeline or a model provider.
ChatCall = Callable[[ChatCompletionRequest], Awaitable[ProviderReply]]
# A chat stream's chunk, or the error body it ended with.
ChatChunk = ChatCompletionChunk | dict[str, Any]


def input_messages(body: ResponsesRequest) -> list[dict[str, Any]]:
    """`body.input` as chat messages; an item or content part this server cannot read is a 400 naming it."""
    if body.input is None:
        return []
    if isinstance(body.input, str):
        return [{"role": "user", "content": body.input}]
    out: list[dict[str, Any]] = []
    thought = ""  # a reasoning item's text, for the assistant turn that follows it
    for i, item in enumerate(body.input):
        if isinstance(item, ReasoningInput):
            thought += "".join(part.text for part in item.content or [])
        elif isinstance(item, MessageInput):
            out.append({"role": item.role, "content": _text(item.content, f"input.{i}.content")})
        elif isinstance(item, FunctionCallInput):
            call = {
                "id": item.call_id,
                "type": "function",
                "function": {"name": item.name, "arguments": item.arguments},
            }
            if out and out[-1]["role"] == "assistant" and not thought:  # calls beside the assistant's text: one turn
                out[-1].setdefault("tool_calls", []).append(call)
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif isinstance(item, FunctionCallOutputInput):
            out.append(
                {"role": "tool", "tool_call_id": item.call_id, "content": _text(item.output, f"input.{i}.output")}
            )
        else:
            raise bad_request(
                f"input.{i}.type: items of type {item.type[:40]!r} are not supported here (message, function_call, "
                "function_call_output and reasoning are)",
                f"input.{i}.type",
            )
        if thought and not isinstance(item, ReasoningInput):
            if out[-1]["role"] == "assistant":
                out[-1]["reasoning_content"] = thought
            thought = ""
    return out


def chat_request(body: ResponsesRequest, messages: list[dict[str, Any]]) -> ChatCompletionRequest:
    """The chat completion request that answers `body`, over `messages` (history and input, as chat messages)."""
    if body.instructions:
        messages = [{"role": "system", "content": body.instructions}, *messages]
    tools = []
    for tool in body.tools or []:
        assert isinstance(tool, FunctionTool)  # others were refused
        function = {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.parameters,
            "strict": tool.strict,
        }
        tools.append({"type": "function", "function": {k: v for k, v in function.items() if v is not None}})
    choice: Any = body.tool_choice
    if isinstance(choice, FunctionToolChoice):
        choice = {"type": "function", "function": {"name": choice.name}}
    data: dict[str, Any] = {
        "model": body.model,
        "messages": messages,
        "max_tokens": body.max_output_tokens,
        "temperature": body.temperature,
        "top_p": body.top_p,
        "tools": tools or None,
        "tool_choice": choice,
        "parallel_tool_calls": body.parallel_tool_calls,
        "response_format": _response_format(body),
        "stream": body.stream,
        "stream_options": {"include_usage": True} if body.stream else None,
        "user": body.user,
        "ignore_eos": body.ignore_eos,
    }
    try:
        return ChatCompletionRequest.model_validate({k: v for k, v in data.items() if v is not None})
    except ValidationError as exc:
        raise _renamed(validation_error(exc)) from None


def _response_format(body: ResponsesRequest) -> dict[str, Any] | None:
    form = body.text.format if body.text else None
    if form is None or form.type != "json_schema":
        return None if form is None else {"type": form.type}
    schema = {"name": form.name or "response", "schema": form.json_schema or {}, "description": form.description}
    return {"type": "json_schema", "json_schema": {k: v for k, v in schema.items() if v is not None}}


def check_supported(body: ResponsesRequest) -> None:
    """Refuse (400, naming the field) what this server cannot do: background runs, hosted tools."""
    if body.background:
        raise bad_request("background: this server answers in the foreground only", "background")
    for i, tool in enumerate(body.tools or []):
        if isinstance(tool, OtherTool):
            raise bad_request(
                f"tools.{i}.type: only function tools are supported here, got {tool.type[:40]!r}", f"tools.{i}.type"
            )


def _text(content: Content, param: str) -> str:
    if isinstance(content, str):
        return content
    texts = []
    for k, part in enumerate(content):
        if isinstance(part, OtherContent):
            raise bad_request(
                f"{param}.{k}: content of type {part.type[:40]!r} is not supported: this model reads text",
                f"{param}.{k}",
            )
        texts.append(part.text)
    return "".join(texts)


def whole_completion(reply: ProviderReply) -> ChatCompletion:
    """A non-streaming chat reply as a ChatCompletion."""
    if isinstance(reply, ChatCompletion):
        return reply
    if isinstance(reply, JSONResponse):  # a provider's completion with extra fields
        return ChatCompletion.model_validate_json(bytes(reply.body))
    raise TypeError("a stream where a whole chat completion was expected")


async def chat_chunks(reply: ProviderReply) -> AsyncGenerator[ChatChunk, None]:
    """The chunks of a chat reply: parsed from its SSE lines, or one chunk holding a whole completion."""
    if isinstance(reply, ChatCompletion | JSONResponse):
        completion = whole_completion(reply)
        choice = completion.choices[0]
        calls = [{"index": i, **call.model_dump()} for i, call in enumerate(choice.message.tool_calls or [])]
        message = choice.message
        delta = Delta(content=message.content, reasoning_content=message.reasoning_content, tool_calls=calls or None)
        yield ChatCompletionChunk(
            id=completion.id,
            created=completion.created,
            model=completion.model,
            choices=[ChunkChoice(delta=delta, finish_reason=choice.finish_reason)],
            usage=completion.usage,
        )
        return
    try:
        async for lines in reply:
            for line in lines.split("\n"):  # SSE lines end at a newline; U+2028 and U+0085 are text in JSON
                if not line.startswith("data: "):
                    continue
                payload = line.removeprefix("data: ")
                if payload == "[DONE]":
                    return
                data = json.loads(payload)
                if "error" in data:
                    yield data
                    return
                yield ChatCompletionChunk.model_validate(data)
    finally:
        close = getattr(reply, "aclose", None)
        if close is not None:
            await close()


async def call_chat(complete: ChatCall, request: ChatCompletionRequest) -> ProviderReply:
    """`complete(request)`, its errors naming the Responses fields rather than chat's."""
    try:
        return await complete(request)
    except APIError as exc:
        raise _renamed(exc) from None
    except ContextLengthExceeded as exc:
        raise APIError(
            400, str(exc), type="invalid_request_error", param="input", code="context_length_exceeded"
        ) from None
    except InvalidRequest as exc:
        raise _renamed(APIError(400, str(exc), type="invalid_request_error", param=exc.param)) from None


# Chat's field names in errors, and the Responses fields they came from.
_RENAMES = [
    (re.compile(r"\bmessages(\.\d+(\.[a-z_]+)*)?(?=:|$)"), "input"),
    (re.compile(r"\btools\.(\d+)\.function\."), r"tools.\1."),
    (re.compile(r"\bmax_tokens\b"), "max_output_tokens"),
    (re.compile(r"\bresponse_format\b"), "text.format"),
]


def _rename(text: str) -> str:
    for pattern, replacement in _RENAMES:
        text = pattern.sub(replacement, text)
    return text


def _renamed(exc: APIError) -> APIError:
    info = exc.info
    param = _rename(info.param) if info.param else None
    return APIError(exc.status, _rename(info.message), type=info.type, param=param, code=info.code, headers=exc.headers)


def bad_request(message: str, param: str) -> APIError:
    """A 400 naming `param`."""
    return APIError(400, message, type="invalid_request_error", param=param)
