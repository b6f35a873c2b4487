"""POST /v1/responses (the Responses API) through the unchanged openai SDK, on the tiny random model; the same
request as a chat completion must give the same text, since responses are answered by the chat pipeline."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import openai
import pytest
from engine_waits import slowed, wait_for_batch
from fastapi.testclient import TestClient

from autoqwen.local_llm import EmbeddedServer, Engine, ServerConfig, create_app

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Get the current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
FORCED = {"type": "function", "name": "get_weather"}


@pytest.fixture(scope="module")
def client(tiny_server: EmbeddedServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=tiny_server.base_url, api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def model(tiny_server: EmbeddedServer) -> str:
    return tiny_server.engine.model_id


def respond(client: openai.OpenAI, model: str, **kwargs: Any) -> Any:
    return client.responses.create(**{"model": model, "max_output_tokens": 8, "temperature": 0, **kwargs})


def chat_text(client: openai.OpenAI, model: str, messages: list[dict[str, Any]], max_tokens: int = 8) -> str:
    r = client.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens, temperature=0)  # type: ignore[arg-type]
    return r.choices[0].message.content or ""


def test_text_input_answers_as_chat_does(client: openai.OpenAI, model: str) -> None:
    r = respond(client, model, input="Hello!")
    assert r.object == "response" and r.id.startswith("resp_") and r.model == model
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    (message,) = r.output
    assert message.type == "message" and message.role == "assistant" and message.content[0].type == "output_text"
    assert r.output_text == chat_text(client, model, [{"role": "user", "content": "Hello!"}])
    usage = r.usage
    assert usage.output_tokens == 8 and usage.input_tokens > 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens


def test_instructions_and_items_become_the_conversation(client: openai.OpenAI, model: str) -> None:
    items = [
        {
            "role": "user",
            "content": [{"type": "input_text", "text": "My name is "}, {"type": "input_text", "text": "Ada."}],
        },
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hello Ada!"}]},
        {"role": "user", "content": "What is my name?"},
    ]
    r = respond(client, model, instructions="Be brief.", input=items)
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Hello Ada!"},
        {"role": "user", "content": "What is my name?"},
    ]
    assert r.output_text == chat_text(client, model, messages)
    assert r.instructions == "Be brief."


def test_a_forced_function_tool_gives_a_function_call(client: openai.OpenAI, model: str) -> None:
    r = respond(
        client, model, input="What is the weather in Paris?", tools=[WEATHER], tool_choice=FORCED, max_output_tokens=200
    )
    calls = [item for item in r.output if item.type == "function_call"]
    assert calls and r.status == "completed"
    assert calls[0].name == "get_weather" and calls[0].call_id.startswith("call_") and calls[0].id.startswith("fc_")
    assert set(json.loads(calls[0].arguments)) == {"city"}
    assert r.tools[0].name == "get_weather" and r.tool_choice.name == "get_weather"


def test_a_function_call_output_is_answered_in_text(client: openai.OpenAI, model: str) -> None:
    first = respond(
        client,
        model,
        input="What is the weather in Paris?",
        tools=[WEATHER],
        tool_choice="required",
        max_output_tokens=200,
    )
    (call,) = [item for item in first.output if item.type == "function_call"]
    items = [
        {"role": "user", "content": "What is the weather in Paris?"},
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "17 degrees, light rain"},
    ]
    answer = respond(client, model, input=items, tools=[WEATHER])  # tool_choice auto: results are answered in text
    assert [item.type for item in answer.output] == ["message"] and answer.output_text
    # The same, continuing from the stored first response instead of resending its items.
    result = [{"type": "function_call_output", "call_id": call.call_id, "output": "17 degrees, light rain"}]
    continued = respond(client, model, previous_response_id=first.id, input=result, tools=[WEATHER])
    assert continued.output_text == answer.output_text and continued.previous_response_id == first.id


def test_previous_response_id_continues_a_kept_conversation(client: openai.OpenAI, model: str) -> None:
    first = respond(client, model, input="My name is Ada.")
    alone = respond(client, model, input="What is my name?")
    continued = respond(client, model, input="What is my name?", previous_response_id=first.id)
    assert continued.usage.input_tokens > alone.usage.input_tokens + first.usage.output_tokens
    messages = [
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": first.output_text},
        {"role": "user", "content": "What is my name?"},
    ]
    assert continued.output_text == chat_text(client, model, messages)
    assert client.responses.retrieve(first.id).output_text == first.output_text


def test_the_store_keeps_the_last_responses_within_its_bounds(client: openai.OpenAI, model: str) -> None:
    from autoqwen.local_llm.protocol_responses import ResponsesResponse
    from autoqwen.local_llm.response_store import ResponseStore

    replies = [respond(client, model, input=f"Turn {i}", max_output_tokens=2) for i in range(4)]
    kept = [ResponsesResponse.model_validate(r.model_dump()) for r in replies]
    store = ResponseStore(max_responses=2, max_chars=10_000)
    for r in kept[:3]:
        store.put("key", r, [{"role": "user", "content": "x" * 1000}])
    assert [store.get("key", r.id) is not None for r in kept[:3]] == [False, True, True]  # the oldest went
    assert store.get("other key", kept[2].id) is None  # scoped to its API key
    store.get("key", kept[1].id)  # used: now the newest
    store.put("key", kept[3], [{"role": "user", "content": "y" * 8000}])  # over 10k characters with two others
    assert [store.get("key", r.id) is not None for r in kept[1:]] == [False, False, True]
    store.put("key", kept[0], [{"role": "user", "content": "z" * 20_000}])  # larger than the whole store
    assert store.get("key", kept[0].id) is None and store.get("key", kept[3].id) is not None


def test_unknown_or_unstored_previous_response_is_400(client: openai.OpenAI, model: str) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        respond(client, model, input="Hi", previous_response_id="resp_nothing")
    assert raised.value.body["param"] == "previous_response_id"  # type: ignore[index]
    unstored = respond(client, model, input="Hi", store=False)
    with pytest.raises(openai.BadRequestError, match="previous_response_id"):
        respond(client, model, input="Hi", previous_response_id=unstored.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unstored.id)


def test_stream_events_build_the_same_response(client: openai.OpenAI, model: str) -> None:
    whole = respond(client, model, input="Hello!")
    events = list(respond(client, model, input="Hello!", stream=True))
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.incomplete",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == whole.output_text
    final = events[-1].response
    assert final.output_text == whole.output_text and final.usage == whole.usage and final.id == events[0].response.id


def test_the_sdk_stream_helper_collects_a_function_call(client: openai.OpenAI, model: str) -> None:
    request = {"input": "What is the weather in Paris?", "tools": [WEATHER], "tool_choice": FORCED}
    with client.responses.stream(model=model, max_output_tokens=200, temperature=0, **request) as stream:  # type: ignore[arg-type]
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert "response.function_call_arguments.delta" in kinds and "response.function_call_arguments.done" in kinds
    assert kinds[-1] == "response.completed"
    (call,) = [item for item in final.output if item.type == "function_call"]
    assert call.name == "get_weather"
    whole = respond(client, model, max_output_tokens=200, **request)
    assert [item.arguments for item in whole.output] == [call.arguments]
    # A streamed response is kept too.
    assert client.responses.retrieve(final.id).output[0].arguments == call.arguments  # type: ignore[union-attr]


def test_a_stream_left_early_frees_its_sequence(lone_tiny_server: EmbeddedServer) -> None:
    server = lone_tiny_server
    body = {"model": server.engine.model_id, "input": "Hello", "max_output_tokens": 3000}
    body |= {"stream": True, "ignore_eos": True, "temperature": 0}
    with slowed(server.engine), httpx.stream("POST", f"{server.base_url}/responses", json=body, timeout=30) as reply:
        assert reply.status_code == 200
        lines = reply.iter_lines()  # kept: a dropped iterator closes the response when it is collected
        next(line for line in lines if "output_text.delta" in line)
        assert wait_for_batch(server.engine, 1)  # (its first text may come before it joins the batch)
        reply.close()
        assert wait_for_batch(server.engine, 0, timeout=5)  # 3000 steps would take 15 s


@pytest.mark.parametrize(
    ("kwargs", "param", "contains"),
    [
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
            "input.0.content.0",
            "input_image",
        ),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input.0.type", "item_reference"),
        ({"input": [{"type": "function_call", "name": "f"}]}, "input.items.0.function_call.call_id", "Field required"),
        ({"tools": [{"type": "web_search"}]}, "tools.0.type", "only function tools"),
        ({"tools": [{"type": "function", "name": "bad name!"}]}, "tools.0.function.name", "pattern"),
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "name": "other"}}, "tool_choice", "other"),
        ({"background": True}, "background", "foreground"),
        ({"input": None}, "input", "give the input"),
        ({"max_output_tokens": 0}, "max_output_tokens", ""),
        ({"temperature": 3}, "temperature", ""),
        (
            {"input": [{"type": "function_call_output", "call_id": "call_x", "output": "5"}]},
            "input",
            "does not answer",
        ),
        ({"input": "Hello there " * 20000}, "input", "context length"),
    ],
)
def test_bad_requests_get_openai_400s(
    client: openai.OpenAI, model: str, kwargs: dict[str, Any], param: str, contains: str
) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        respond(client, model, **{"input": "Hi", **kwargs})
    error = raised.value.body
    assert isinstance(error, dict) and error["type"] == "invalid_request_error"
    assert error["param"] == param and contains in error["message"]


def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError, match="gpt-9"):
        client.responses.create(model="gpt-9", input="Hi")


@pytest.fixture(scope="module")
def keyed(tiny_engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(tiny_engine, ServerConfig(api_keys=("a", "b"), aliases=("tiny",)))) as c:
        yield c


def test_kept_responses_belong_to_their_api_key(keyed: TestClient) -> None:
    def post(key: str, **body: Any) -> Any:
        body = {"model": "tiny", "max_output_tokens": 2, **body}
        return keyed.post("/v1/responses", json=body, headers={"Authorization": f"Bearer {key}"})

    first = post("a", input="Hi").json()
    assert post("a", input="And?", previous_response_id=first["id"]).status_code == 200
    other = post("b", input="And?", previous_response_id=first["id"])
    assert other.status_code == 400 and other.json()["error"]["code"] == "previous_response_not_found"
    assert keyed.get(f"/v1/responses/{first['id']}", headers={"Authorization": "Bearer b"}).status_code == 404


@pytest.mark.model
def test_the_bundled_model_answers_a_response(bundled_server: EmbeddedServer) -> None:
    client = openai.OpenAI(base_url=bundled_server.base_url, api_key="unused", max_retries=0)
    r = client.responses.create(
        model="SmolLM2-135M-Instruct",
        instructions="You are a helpful assistant.",
        input="What is the capital of France?",
        temperature=0,
        max_output_tokens=40,
    )
    assert r.status == "completed" and "Paris" in r.output_text
    assert r.usage is not None and 0 < r.usage.output_tokens < 40


def test_chat_chunks_keep_text_with_unicode_line_separators() -> None:
    """A model's text may hold U+2028 or U+0085, which JSON leaves raw and str.splitlines() would break on."""
    from autoqwen.local_llm.responses_chat import chat_chunks

    text = "a\u2028b\x85c"
    chunk = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "tiny",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
    }

    async def reply() -> AsyncIterator[str]:
        yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
        yield "data: [DONE]\n\n"

    async def collect() -> list[Any]:
        return [c async for c in chat_chunks(reply())]

    chunks = asyncio.run(collect())
    assert [c.choices[0].delta.content for c in chunks] == [text]
