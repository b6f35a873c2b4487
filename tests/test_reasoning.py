"""Qwen3's thinking comes back as `reasoning_content`, apart from `content`, whole and streamed; tool calls after
thinking parse; the grammar lets the model think first and constrains the reply from `</think>` on.

The tiny random Qwen3 writes random text, so replies are forced: split points at the unit level with fake token
streams, and end to end through the real engine with a grammar that pins the reply (a scripted decode) or with
`logit_bias` on the thinking tags and the server's own grammar."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from itertools import pairwise
from typing import Any

import pytest
from fastapi.testclient import TestClient

from autoqwen.local_llm import Engine, ServerConfig, create_app, serving_chat
from autoqwen.local_llm.grammars import NAME_PREFIX, json_grammar, tool_grammar
from autoqwen.local_llm.protocol import ChatCompletionRequest, ToolCall
from autoqwen.local_llm.reasoning import Reasoning, ReasoningStream, ThinkStart, think_first, thinking_start
from autoqwen.local_llm.tool_parse import ReplyStream, ToolCallStream, split_reply

URL = "/v1/chat/completions"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
ASK = [{"role": "user", "content": "Weather in Paris?"}]
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
THOUGHT = "The user wants Paris.\n\nI should call get_weather."


def pieces(text: str, cuts: tuple[int, ...]) -> list[str]:
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in pairwise(bounds)]


def split(items: list[Reasoning | str | ToolCall]) -> tuple[str, str, list[ToolCall]]:
    reasoning = "".join(i.text for i in items if isinstance(i, Reasoning))
    return reasoning, "".join(i for i in items if isinstance(i, str)), [i for i in items if isinstance(i, ToolCall)]


def run(text: str, cuts: tuple[int, ...], start: ThinkStart = "optional", calls: bool = False) -> Any:
    stream = ReplyStream(ReasoningStream(start), ToolCallStream() if calls else None)
    items = [item for piece in pieces(text, cuts) for item in stream.feed(piece)]
    return split([*items, *stream.close()])


REPLY = f"<think>\n{THOUGHT}\n</think>\n\nIt is 18 C in Paris."


def test_reasoning_and_answer_split_wherever_the_stream_cuts() -> None:
    for cut in range(len(REPLY) + 1):
        assert run(REPLY, (cut,)) == (THOUGHT, "It is 18 C in Paris.", []), cut
    assert run(REPLY, tuple(range(1, len(REPLY)))) == (THOUGHT, "It is 18 C in Paris.", [])  # token by token


def test_a_tool_call_after_thinking_parses_wherever_the_stream_cuts() -> None:
    text = f"<think>\n{THOUGHT}\n</think>\n\n{CALL}"
    for cuts in [*((cut,) for cut in range(len(text) + 1)), tuple(range(1, len(text)))]:
        reasoning, content, calls = run(text, cuts, calls=True)
        assert (reasoning, content) == (THOUGHT, ""), cuts
        assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [
            ("get_weather", {"city": "Paris"})
        ], cuts


def test_replies_without_a_block_are_all_answer_as_written() -> None:
    assert run("  Hello <think> there", (1, 3, 9)) == ("", "  Hello <think> there", [])
    assert run("<thinking is fun", (3, 5)) == ("", "<thinking is fun", [])  # held back, then not a tag
    assert run("<thi", (2,)) == ("", "<thi", [])  # the end comes first
    assert run("<think>\nhello</think>x", (), start="closed") == ("", "<think>\nhello</think>x", [])


def test_a_block_the_prompt_opened_and_a_block_cut_off() -> None:
    assert run("Half a thought\n</think>\n\nDone.", (4, 20), start="inside") == ("Half a thought", "Done.", [])
    assert run("<think>\nStill thinking about it\n", (9, 15)) == ("Still thinking about it", "", [])
    assert run("<think>\nHmm </thi", (11,)) == ("Hmm </thi", "", [])  # a tag cut off is reasoning text


def test_split_reply_returns_the_fields_of_a_message() -> None:
    assert split_reply(REPLY, ReplyStream(ReasoningStream())) == (THOUGHT, "It is 18 C in Paris.", [])
    reasoning, content, calls = split_reply(
        f"<think>\n{THOUGHT}\n</think>\n\n{CALL}", ReplyStream(ReasoningStream(), ToolCallStream())
    )
    assert (reasoning, content, len(calls)) == (THOUGHT, None, 1)
    assert split_reply("<think>\ncut off", ReplyStream(ReasoningStream())) == ("cut off", None, [])
    assert split_reply("plain", ReplyStream()) == (None, "plain", [])


@pytest.mark.parametrize(
    ("end", "start"),
    [
        ("<|im_start|>assistant\n", "optional"),
        ("assistant\n<think>\n\n</think>\n\n", "closed"),  # enable_thinking: false
        ("assistant\n<think>\n", "inside"),  # thinking-only templates (Qwen3-...-Thinking-2507, DeepSeek-R1)
    ],
)
def test_where_the_reply_starts_is_read_from_the_prompts_end(end: str, start: ThinkStart) -> None:
    assert thinking_start(end) == start


def body(**payload: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": "tiny", "messages": ASK, **payload})


def accepts(engine: Engine, grammar: str, text: str) -> bool:
    """Whether `grammar` lets the model write `text` (in its own tokens) and end there."""
    assert engine.tokenizer is not None and engine.check_grammar(grammar) is None
    matcher = engine.tokenizer.matcher(grammar)
    assert engine.tokenizer.hf.convert_tokens_to_ids("</think>") in engine.encode(text) or "</think>" not in text
    return all(matcher.consume_token(i) for i in engine.encode(text)) and bool(matcher.is_accepting())


def test_the_tool_grammar_lets_the_model_think_first(tiny_qwen3_engine: Engine) -> None:
    engine = tiny_qwen3_engine
    grammar = tool_grammar(
        body(tools=[WEATHER], tool_choice="required"),
        special_open=True,
        special_close=True,
        tokenize=lambda name: engine.encode_after(NAME_PREFIX, name),
    )
    assert grammar is not None
    thought = f"<think>\n{THOUGHT}\n</think>\n\n"
    optional = think_first(grammar, "optional")
    assert optional is not None
    assert accepts(engine, optional, thought + CALL) and accepts(engine, optional, CALL)
    assert not accepts(engine, optional, thought + "No call.")  # the reply after thinking is still constrained
    inside = think_first(grammar, "inside")
    assert inside is not None and accepts(engine, inside, f"{THOUGHT}\n</think>\n\n{CALL}")
    assert not accepts(engine, inside, CALL)
    assert think_first(grammar, "closed") == grammar and not accepts(engine, grammar, thought + CALL)
    assert think_first(None, "optional") is None  # free text needs no room made
    schema = {
        "type": "json_schema",
        "json_schema": {"schema": {"type": "object", "properties": {"n": {"type": "integer"}}}},
    }
    json_first = think_first(json_grammar(body(response_format=schema).response_format), "optional")
    assert json_first is not None and accepts(engine, json_first, thought + '{"n": 4}')
    assert not accepts(engine, json_first, thought + "four")


@pytest.fixture(scope="module")
def client(tiny_qwen3_engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(tiny_qwen3_engine, ServerConfig(aliases=("tiny",)))) as c:
        yield c


def script(monkeypatch: pytest.MonkeyPatch, reply: str) -> None:
    """Pin the next replies to `reply` (its tags as Qwen3's tokens): the engine decodes it as the only text its
    grammar allows."""
    parts = [p if p in TAGS else json.dumps(p) for p in re.split(f"({'|'.join(TAGS)})", reply) if p]
    grammar = "%llguidance {}\nstart: " + " ".join(parts) + "\n"
    monkeypatch.setattr(serving_chat, "think_first", lambda _grammar, _start: grammar)


TAGS = ("<think>", "</think>", "<tool_call>", "</tool_call>")


def post(client: TestClient, **payload: Any) -> dict[str, Any]:
    r = client.post(URL, json={"model": "tiny", "messages": ASK, "max_tokens": 120, **payload})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def stream(client: TestClient, **payload: Any) -> list[dict[str, Any]]:
    with client.stream("POST", URL, json={"model": "tiny", "messages": ASK, "max_tokens": 120, **payload}) as r:
        assert r.status_code == 200
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
    return [e["choices"][0] for e in events if e["choices"]]


def test_thinking_is_reasoning_content_not_content(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    script(monkeypatch, f"<think>\n{THOUGHT}\n</think>\n\nIt is 18 C in Paris.")
    message = post(client)["choices"][0]["message"]
    assert (message["reasoning_content"], message["content"]) == (THOUGHT, "It is 18 C in Paris.")
    choices = stream(client, stream=True)
    deltas = [c["delta"] for c in choices]
    assert "".join(d["reasoning_content"] or "" for d in deltas) == THOUGHT
    assert "".join(d["content"] or "" for d in deltas) == "It is 18 C in Paris."
    assert not any("think>" in (d["content"] or "") + (d["reasoning_content"] or "") for d in deltas)
    assert choices[-1]["finish_reason"] == "stop"


def test_an_answer_to_tool_results_after_thinking_is_not_cut_at_its_closing_tag(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by review: the stop that ends a grounded answer at a closing tag ("\\n</") cut Qwen3's "\\n</think>"."""
    script(monkeypatch, f"<think>\n{THOUGHT}\n</think>\n\nParis: 18 C")
    call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    turns = [
        *ASK,
        {"role": "assistant", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "Paris: 18 C"},
    ]
    choice = post(client, messages=turns, tools=[WEATHER])["choices"][0]
    assert (choice["message"]["reasoning_content"], choice["message"]["content"]) == (THOUGHT, "Paris: 18 C")


def test_a_tool_call_after_thinking_comes_back_parsed(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    script(monkeypatch, f"<think>\n{THOUGHT}\n</think>\n\n{CALL}")
    payload = {"tools": [WEATHER], "tool_choice": "required"}
    choice = post(client, **payload)["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert (choice["message"]["reasoning_content"], choice["message"]["content"]) == (THOUGHT, None)
    assert json.loads(choice["message"]["tool_calls"][0]["function"]["arguments"]) == {"city": "Paris"}
    choices = stream(client, stream=True, **payload)
    assert "".join(c["delta"]["reasoning_content"] or "" for c in choices) == THOUGHT
    (call,) = [tc for c in choices for tc in c["delta"]["tool_calls"] or []]
    assert call["function"]["name"] == "get_weather" and choices[-1]["finish_reason"] == "tool_calls"


def test_the_servers_grammar_lets_the_model_think_then_call(client: TestClient, tiny_qwen3_engine: Engine) -> None:
    """No script: the server's own grammar, with the thinking tags pushed by logit_bias (an empty thought)."""
    tokens = tiny_qwen3_engine.tokenizer.hf  # type: ignore[union-attr]
    bias = {str(tokens.convert_tokens_to_ids(tag)): 100 for tag in ("<think>", "</think>")}
    payload = {"tools": [WEATHER], "tool_choice": "required", "logit_bias": bias, "temperature": 0}
    choice = post(client, **payload)["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    assert choice["message"]["tool_calls"][0]["function"]["name"] == "get_weather"
    # Thinking off: the template closes the block in the prompt, and the grammar allows no other.
    off = post(client, **payload, chat_template_kwargs={"enable_thinking": False})["choices"][0]
    assert off["finish_reason"] == "tool_calls" and off["message"]["reasoning_content"] is None


def test_the_responses_api_returns_thinking_as_a_reasoning_item(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    script(monkeypatch, f"<think>\n{THOUGHT}\n</think>\n\nIt is 18 C in Paris.")
    payload = {"model": "tiny", "input": "Weather in Paris?", "max_output_tokens": 120}
    whole = client.post("/v1/responses", json=payload).json()
    reasoning, message = whole["output"]
    assert reasoning["type"] == "reasoning" and reasoning["content"] == [{"type": "reasoning_text", "text": THOUGHT}]
    assert message["content"][0]["text"] == "It is 18 C in Paris."
    with client.stream("POST", "/v1/responses", json={**payload, "stream": True}) as r:
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
    kinds = [e["type"] for e in events]
    assert "".join(e["delta"] for e in events if e["type"] == "response.reasoning_text.delta") == THOUGHT
    assert kinds.index("response.reasoning_text.done") < kinds.index("response.output_text.delta")
    final = events[-1]["response"]
    assert [item["type"] for item in final["output"]] == ["reasoning", "message"]
    assert final["output"][0]["content"][0]["text"] == THOUGHT and final["output"][0]["status"] == "completed"


def test_reasoning_items_sent_back_go_to_their_assistant_turn(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Agents SDK sends earlier reasoning items with the conversation: accepted, and given to the template as
    the reasoning of the assistant turn they preceded."""
    seen: list[Any] = []
    render = serving_chat.ChatPrompt.of
    monkeypatch.setattr(serving_chat.ChatPrompt, "of", lambda body: seen.append(body.messages) or render(body))
    script(monkeypatch, "Done.")
    items = [
        {"role": "user", "content": "Weather in Paris?"},
        {"type": "reasoning", "id": "rs_1", "summary": [], "content": [{"type": "reasoning_text", "text": THOUGHT}]},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city": "Paris"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "18 C"},
    ]
    r = client.post("/v1/responses", json={"model": "tiny", "input": items, "max_output_tokens": 20})
    assert r.status_code == 200, r.text
    assistant = seen[-1][1]
    assert assistant.role == "assistant" and assistant.reasoning_content == THOUGHT and assistant.tool_calls
