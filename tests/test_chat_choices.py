"""`n` > 1 on /v1/chat/completions: several choices of one request, each a sequence of the batch (issue 21 §4)."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from autoqwen.local_llm import EmbeddedServer

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture(scope="module")
def client(tiny_server: EmbeddedServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=tiny_server.base_url, api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def model(tiny_server: EmbeddedServer) -> str:
    return tiny_server.engine.model_id


def chat(client: openai.OpenAI, model: str, ignore_eos: bool = True, **kwargs: Any) -> Any:
    base: dict[str, Any] = {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 8, "temperature": 1.0}
    return client.chat.completions.create(model=model, **{**base, **kwargs}, extra_body={"ignore_eos": ignore_eos})


def test_n_choices_each_drawn_with_its_own_seed(client: openai.OpenAI, model: str) -> None:
    r = chat(client, model, n=3, seed=5)
    assert [c.index for c in r.choices] == [0, 1, 2]
    texts = [c.message.content for c in r.choices]
    assert len(set(texts)) > 1  # three draws of 8 random tokens from a random model
    assert texts[0] == chat(client, model, seed=5).choices[0].message.content  # choice 0 = the single choice
    assert chat(client, model, n=3, seed=5).choices[2].message.content == texts[2]  # reproducible
    assert r.usage.completion_tokens == 24 and r.usage.total_tokens == r.usage.prompt_tokens + 24
    assert all(c.finish_reason == "length" for c in r.choices)


def test_streamed_choices_match_the_whole_ones(client: openai.OpenAI, model: str) -> None:
    whole = chat(client, model, n=2, seed=11, logprobs=True)
    chunks = list(chat(client, model, n=2, seed=11, logprobs=True, stream=True, stream_options={"include_usage": True}))
    texts, finishes, tokens = ["", ""], [None, None], [0, 0]
    for chunk in chunks[:-1]:
        (choice,) = chunk.choices
        texts[choice.index] += choice.delta.content or ""
        finishes[choice.index] = choice.finish_reason or finishes[choice.index]
        tokens[choice.index] += len(choice.logprobs.content or []) if choice.logprobs else 0
    assert texts == [c.message.content for c in whole.choices]
    assert finishes == ["length", "length"] and tokens == [8, 8]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 16


def test_every_choice_calls_the_required_tool(client: openai.OpenAI, model: str) -> None:
    r = chat(
        client,
        model,
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
        tools=[WEATHER],
        tool_choice="required",
        n=2,
        max_tokens=300,
        seed=1,
        ignore_eos=False,
    )
    assert len(r.choices) == 2
    for choice in r.choices:
        assert choice.finish_reason == "tool_calls" and choice.message.tool_calls[0].function.name == "get_weather"


def test_more_choices_than_the_limit_is_400_naming_it(client: openai.OpenAI, model: str) -> None:
    with pytest.raises(openai.BadRequestError, match="less than or equal to 8") as caught:
        chat(client, model, n=9)
    assert caught.value.body["param"] == "n"  # type: ignore[index]


def test_the_sdks_chat_stream_helper_assembles_the_choices(client: openai.OpenAI, model: str) -> None:
    whole = chat(client, model, n=2, seed=4, tools=[WEATHER], tool_choice="required", max_tokens=300, ignore_eos=False)
    with client.chat.completions.stream(
        model=model,
        messages=[{"role": "user", "content": "Hello"}],
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice="required",
        n=2,
        seed=4,
        temperature=1.0,
        max_tokens=300,
    ) as stream:
        final = stream.get_final_completion()
    assert [c.index for c in final.choices] == [0, 1]
    for streamed, kept in zip(final.choices, whole.choices, strict=True):
        assert streamed.finish_reason == kept.finish_reason == "tool_calls"
        assert streamed.message.tool_calls[0].function.arguments == kept.message.tool_calls[0].function.arguments


def test_max_completion_tokens_limits_and_wins_over_max_tokens(client: openai.OpenAI, model: str) -> None:
    r = chat(client, model, max_completion_tokens=3, max_tokens=None)
    assert r.usage.completion_tokens == 3 and r.choices[0].finish_reason == "length"
    both = chat(client, model, max_completion_tokens=2, max_tokens=6)  # the newer field, as OpenAI reads them
    assert both.usage.completion_tokens == 2
