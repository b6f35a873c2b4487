"""End to end on the real bundled model (SmolLM2-135M-Instruct GGUF), through unchanged OpenAI-speaking clients."""

from __future__ import annotations

import asyncio

import openai
import pytest

from autoqwen.local_llm import EmbeddedServer

pytestmark = pytest.mark.model

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def server(bundled_server: EmbeddedServer) -> EmbeddedServer:
    return bundled_server


@pytest.fixture
def client(server: EmbeddedServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)


def test_openai_sdk_lists_the_model(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list().data] == ["SmolLM2-135M-Instruct"]


def test_openai_sdk_non_stream_answers_and_stops(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model="SmolLM2-135M-Instruct",
        messages=QUESTION,
        temperature=0,  # type: ignore[arg-type]
        max_tokens=40,
    )
    assert "Paris" in (r.choices[0].message.content or "")
    assert r.choices[0].finish_reason == "stop"
    assert r.usage is not None and r.usage.prompt_tokens > 10 and 0 < r.usage.completion_tokens < 40


def test_openai_sdk_stream_equals_non_stream_with_seed(client: openai.OpenAI) -> None:
    kwargs = {
        "model": "SmolLM2-135M-Instruct",
        "messages": QUESTION,
        "temperature": 0.9,
        "seed": 11,
        "max_tokens": 30,
    }
    whole = client.chat.completions.create(**kwargs)  # type: ignore[call-overload]
    again = client.chat.completions.create(**kwargs)  # type: ignore[call-overload]
    assert whole.choices[0].message.content == again.choices[0].message.content
    pieces, usage = [], None
    for chunk in client.chat.completions.create(**kwargs, stream=True, stream_options={"include_usage": True}):  # type: ignore[call-overload]
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        usage = chunk.usage or usage
    assert "".join(pieces) == whole.choices[0].message.content
    assert usage == whole.usage


def test_openai_sdk_raises_typed_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=QUESTION)  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        client.chat.completions.create(model="SmolLM2-135M-Instruct", messages=QUESTION, max_tokens=0)  # type: ignore[arg-type]


def test_multi_turn_history_is_used(client: openai.OpenAI) -> None:
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "My name is Alice."},
        {"role": "assistant", "content": "Nice to meet you, Alice!"},
        {"role": "user", "content": "What is my name?"},
    ]
    r = client.chat.completions.create(
        model="SmolLM2-135M-Instruct",
        messages=messages,
        temperature=0,  # type: ignore[arg-type]
        max_tokens=30,
    )
    assert "Alice" in (r.choices[0].message.content or "")


def test_autogen_openai_client_gets_a_completion(server: EmbeddedServer) -> None:
    from autogen_core.models import UserMessage
    from autogen_ext.models.openai import OpenAIChatCompletionClient

    async def ask() -> tuple[str, int]:
        model_client = OpenAIChatCompletionClient(
            model="SmolLM2-135M-Instruct",
            base_url=server.base_url,
            api_key="unused",
            temperature=0,
            model_info={
                "vision": False,
                "function_calling": False,
                "json_output": False,
                "family": "unknown",
                "structured_output": False,
            },
        )
        try:
            result = await model_client.create([UserMessage(content="What is the capital of France?", source="user")])
        finally:
            await model_client.close()
        assert isinstance(result.content, str)
        return result.content, result.usage.completion_tokens

    content, tokens = asyncio.run(ask())
    assert "Paris" in content and tokens > 0
