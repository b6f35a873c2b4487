"""Current Qwen models speak tools through their own chat templates: the tiny random Qwen2 and Qwen3 carry Qwen2.5's
and Qwen3's real templates (tests/qwen_templates.py), so their prompts must be exactly what those templates render
(`apply_chat_template(tools=...)`), while a template without tools keeps the injected format."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import CHATML
from fastapi.testclient import TestClient
from qwen_templates import QWEN2_5_TEMPLATE, QWEN3_TEMPLATE

from autoqwen.local_llm import Engine, ServerConfig, create_app
from autoqwen.local_llm.chat_template import ChatPrompt, renders_tools
from autoqwen.local_llm.grammars import NAME_PREFIX, tool_grammar
from autoqwen.local_llm.protocol import ChatCompletionRequest, Tool
from autoqwen.local_llm.tool_prompt import render_messages, tools_prompt

URL = "/v1/chat/completions"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
ASK = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Weather in Paris and Oslo?"}]
CALLS = [
    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
    {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}},
]
# A round trip as an OpenAI client sends it: the assistant's calls (arguments as JSON strings), then the results.
ROUND_TRIP = [
    *ASK,
    {"role": "assistant", "content": None, "tool_calls": CALLS},
    {"role": "tool", "tool_call_id": "call_1", "content": "18 C"},
    {"role": "tool", "tool_call_id": "call_2", "content": "9 C"},
]
# The same conversation as transformers' chat format has it (what the templates are written for).
ROUND_TRIP_TEMPLATE_SHAPE = [
    *ASK,
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"id": c["id"], "type": "function", "function": {"name": "get_weather", "arguments": {"city": city}}}
            for c, city in zip(CALLS, ["Paris", "Oslo"], strict=True)
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": "18 C"},
    {"role": "tool", "tool_call_id": "call_2", "name": "get_weather", "content": "9 C"},
]


@pytest.fixture(params=["qwen2", "qwen3"])
def engine(request: pytest.FixtureRequest) -> Engine:
    return request.getfixturevalue(f"tiny_{request.param}_engine")  # type: ignore[no-any-return]


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(engine, ServerConfig(aliases=("tiny",)))) as c:
        yield c


def record_prompts(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """The prompts the server encodes from now on."""
    prompts: list[list[int]] = []
    real = engine.encode_chat

    def spy(messages: Any) -> list[int]:
        prompts.append(real(messages))
        return prompts[-1]

    monkeypatch.setattr(engine, "encode_chat", spy)
    return prompts


def expected(engine: Engine, messages: list[dict[str, Any]], **kwargs: Any) -> str:
    """What the model's own template renders (transformers' apply_chat_template)."""
    assert engine.tokenizer is not None
    return str(engine.tokenizer.hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **kwargs))


def render(engine: Engine, **payload: Any) -> str:
    """The prompt text the server makes of a request."""
    assert engine.tokenizer is not None
    body = ChatCompletionRequest.model_validate({"model": "tiny", **payload})
    return engine.tokenizer.render_chat(ChatPrompt.of(body))


def test_templates_that_render_tools_are_told_apart() -> None:
    assert renders_tools(QWEN2_5_TEMPLATE) and renders_tools(QWEN3_TEMPLATE)
    assert not renders_tools(CHATML) and not renders_tools(None) and not renders_tools("")
    # Only the variable counts, not the word: this template never sees the tools.
    assert not renders_tools("{{ 'You may use tools.' }}{% for m in messages %}{{ m['content'] }}{% endfor %}")
    assert renders_tools({"default": CHATML, "tool_use": QWEN2_5_TEMPLATE})  # named templates (Hermes-style)


def test_a_request_with_tools_gets_the_templates_own_prompt(
    engine: Engine, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert engine.tokenizer is not None and engine.tokenizer.native_tools
    prompts = record_prompts(engine, monkeypatch)
    payload = {"model": "tiny", "messages": ASK, "tools": [WEATHER], "tool_choice": "required", "max_tokens": 40}
    r = client.post(URL, json=payload)
    assert r.status_code == 200, r.text
    text = expected(engine, ASK, tools=[WEATHER])
    assert prompts == [engine.encode(text)]
    assert r.json()["usage"]["prompt_tokens"] == len(prompts[0])
    # Qwen's own tool section, with the full schema, and none of the injected one.
    assert "<tools>\n" + json.dumps(WEATHER) + "\n</tools>" in text
    assert tools_prompt([Tool.model_validate(WEATHER)]) not in text and "get_weather(city" not in text


def test_a_tool_call_round_trip_renders_in_the_templates_shape(engine: Engine) -> None:
    text = render(engine, messages=ROUND_TRIP, tools=[WEATHER], tool_choice="auto")
    assert text == expected(engine, ROUND_TRIP_TEMPLATE_SHAPE, tools=[WEATHER])
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>' in text
    assert "<|im_start|>user\n<tool_response>\n18 C\n</tool_response>\n<tool_response>\n9 C\n</tool_response>" in text
    # Without tools listed (tool_choice "none", as call-then-answer makes it once results are in), the calls and
    # results still render the template's way.
    bare = render(engine, messages=ROUND_TRIP, tools=[WEATHER], tool_choice="none")
    assert bare == expected(engine, ROUND_TRIP_TEMPLATE_SHAPE) and "<tools>" not in bare


def test_a_call_cut_off_by_max_tokens_is_shown_as_written(tiny_qwen3_engine: Engine) -> None:
    cut = [*ASK, {"role": "assistant", "tool_calls": [{**CALLS[0], "function": {**CALLS[0]["function"]}}]}]
    cut[-1]["tool_calls"][0]["function"]["arguments"] = '{"city": "Par'
    cut.append({"role": "tool", "tool_call_id": "call_1", "content": "error: cut off"})
    text = render(tiny_qwen3_engine, messages=cut, tools=[WEATHER])
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Par}\n</tool_call>' in text


def test_qwen3_shows_an_earlier_replys_reasoning_in_its_turn(tiny_qwen3_engine: Engine) -> None:
    messages = [
        *ASK,
        {"role": "assistant", "content": None, "reasoning_content": "I need the weather.", "tool_calls": CALLS[:1]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18 C"},
    ]
    text = render(tiny_qwen3_engine, messages=messages, tools=[WEATHER])
    assert "<|im_start|>assistant\n<think>\nI need the weather.\n</think>\n\n<tool_call>" in text


def test_enable_thinking_false_reaches_the_template(
    tiny_qwen3_engine: Engine, tiny_qwen2_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    off = {"chat_template_kwargs": {"enable_thinking": False}}
    thinking, not_thinking = render(tiny_qwen3_engine, messages=ASK), render(tiny_qwen3_engine, messages=ASK, **off)
    assert thinking == expected(tiny_qwen3_engine, ASK) and thinking.endswith("<|im_start|>assistant\n")
    assert not_thinking == expected(tiny_qwen3_engine, ASK, enable_thinking=False)
    assert not_thinking == thinking + "<think>\n\n</think>\n\n"
    assert render(tiny_qwen2_engine, messages=ASK, **off) == render(tiny_qwen2_engine, messages=ASK)  # unused
    prompts = record_prompts(tiny_qwen3_engine, monkeypatch)
    with TestClient(create_app(tiny_qwen3_engine, ServerConfig(aliases=("tiny",)))) as c:
        r = c.post(URL, json={"model": "tiny", "messages": ASK, "max_tokens": 2, **off})
    assert r.status_code == 200, r.text
    assert prompts == [tiny_qwen3_engine.encode(not_thinking)]


@pytest.mark.parametrize("key", ["tools", "add_generation_prompt", "chat_template", "tokenize"])
def test_template_kwargs_may_not_override_the_servers_own(client: TestClient, key: str) -> None:
    r = client.post(URL, json={"model": "tiny", "messages": ASK, "chat_template_kwargs": {key: None}})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "chat_template_kwargs" and repr(key) in r.json()["error"]["message"]


def test_a_template_without_tools_gets_them_injected(tiny_engine: Engine) -> None:
    assert tiny_engine.tokenizer is not None and not tiny_engine.tokenizer.native_tools
    payload = {"model": "tiny", "messages": ROUND_TRIP, "tools": [WEATHER], "tool_choice": "auto"}
    body = ChatCompletionRequest.model_validate(payload)
    prompt = ChatPrompt.of(body)
    assert list(prompt) == render_messages(body)  # as a message list, a ChatPrompt is the injected turns
    text = render(tiny_engine, **payload)
    assert text == expected(tiny_engine, render_messages(body))
    assert tools_prompt(body.tools or []) in text and "<tool_response>\n18 C\n</tool_response>" in text


def test_the_grammar_takes_the_closing_tag_as_the_models_token(tiny_qwen2_engine: Engine) -> None:
    """Qwen's `</tool_call>` is one token: a grammar that spells the tag as text would refuse it."""
    engine = tiny_qwen2_engine
    body = ChatCompletionRequest.model_validate(
        {"model": "tiny", "messages": ASK, "tools": [WEATHER], "tool_choice": "required"}
    )
    call = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    ids = engine.encode(call)
    assert engine.tokenizer is not None and engine.tokenizer.hf.convert_tokens_to_ids("</tool_call>") in ids

    def accepts(special_close: bool) -> bool:
        grammar = tool_grammar(
            body,
            special_open=True,
            special_close=special_close,
            tokenize=lambda name: engine.encode_after(NAME_PREFIX, name),
        )
        assert grammar is not None and engine.check_grammar(grammar) is None
        matcher = engine.tokenizer.matcher(grammar)  # type: ignore[union-attr]
        return all(matcher.consume_token(i) for i in ids)

    assert accepts(special_close=True) and not accepts(special_close=False)


def test_a_required_call_comes_back_parsed(client: TestClient) -> None:
    # Thinking off: the random Qwen3 would otherwise think until max_tokens (tests/test_reasoning.py thinks first).
    off = {"enable_thinking": False}
    payload = {"model": "tiny", "messages": ASK, "tools": [WEATHER], "tool_choice": "required", "max_tokens": 60}
    payload["chat_template_kwargs"] = off
    for stream in (False, True):
        if not stream:
            r = client.post(URL, json={**payload, "temperature": 0})
            assert r.status_code == 200, r.text
            choice = r.json()["choices"][0]
            assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
            (call,) = choice["message"]["tool_calls"][:1]
            assert call["function"]["name"] == "get_weather" and "city" in json.loads(call["function"]["arguments"])
        else:
            with client.stream("POST", URL, json={**payload, "stream": True, "temperature": 0}) as r:
                events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
            deltas = [e["choices"][0]["delta"] for e in events if e["choices"]]
            assert any(d.get("tool_calls") for d in deltas)
            assert events[-1]["choices"][0]["finish_reason"] == "tool_calls"
