"""Channel tool selection under hostile requests: the prompt's length is checked before any scoring, tools and
descriptions are bounded, a long message is scored in part, and scoring keeps logits only where they are needed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from autoqwen.local_llm import Engine, ServerConfig, create_app
from autoqwen.local_llm.scoring import CHUNK
from autoqwen.local_llm.tool_choice import CHANNEL_TOKENS, MAX_DESCRIPTION_CHARS, MAX_TOOLS

URL = "/v1/chat/completions"


def tool(name: str, description: str = "does a thing") -> dict[str, Any]:
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": {"type": "object", "properties": {}}},
    }


@pytest.fixture(scope="module")
def client(tiny_engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(tiny_engine, ServerConfig(aliases=("tiny",)))) as c:
        yield c


@pytest.fixture
def scored(tiny_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> list[list[tuple[list[int], list[int]]]]:
    """The pairs of every scoring the engine runs during a test (scoring itself still runs)."""
    calls: list[list[tuple[list[int], list[int]]]] = []
    real = tiny_engine.score

    def spy(pairs: list[tuple[list[int], list[int]]], *args: Any, **kwargs: Any) -> list[float]:
        calls.append([(list(a), list(b)) for a, b in pairs])
        return real(pairs, *args, **kwargs)

    monkeypatch.setattr(tiny_engine, "score", spy)
    return calls


def ask(client: TestClient, content: str, tools: list[dict[str, Any]]) -> Any:
    payload = {
        "model": "tiny",
        "messages": [{"role": "user", "content": content}],
        "tools": tools,
        "tool_choice": "required",
        "max_tokens": 30,
        "temperature": 0,
    }
    return client.post(URL, json=payload)


def long_text(engine: Engine, tokens: int) -> str:
    """Plain text of at least `tokens` tokens (and few characters per token, so no character check catches it)."""
    words = "The capital of France is Paris. Hello! How are you today? "
    text = words * (tokens // 10)
    while len(engine.encode(text)) < tokens:
        text += words * 20
    return text


def test_an_over_long_prompt_is_refused_before_any_tool_is_scored(
    client: TestClient, tiny_engine: Engine, scored: list[Any]
) -> None:
    """Before, each tool was scored over the whole message first (a 2.6k-token question: 13.6 s), then 400."""
    text = long_text(tiny_engine, tiny_engine.context_length + 200)
    r = ask(client, text, [tool("a"), tool("b")])
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "context_length_exceeded"
    assert scored == []


def test_more_tools_than_openai_accepts_is_a_400(client: TestClient, scored: list[Any]) -> None:
    r = ask(client, "Which one?", [tool(f"t{i}") for i in range(MAX_TOOLS + 1)])
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == "tools" and f"at most {MAX_TOOLS} tools" in error["message"]
    assert scored == []


def test_an_over_long_tool_description_is_a_400_naming_it(client: TestClient, scored: list[Any]) -> None:
    tools = [tool("a"), tool("b", "x" * (MAX_DESCRIPTION_CHARS + 1))]
    r = ask(client, "Which one?", tools)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == "tools.1.function.description"
    assert f"got {MAX_DESCRIPTION_CHARS + 1}" in error["message"]
    assert scored == []


@pytest.mark.parametrize("count, description", [(MAX_TOOLS, "does a thing"), (2, "y" * MAX_DESCRIPTION_CHARS)])
def test_tools_up_to_the_limits_are_scored(client: TestClient, scored: list[Any], count: int, description: str) -> None:
    r = ask(client, "Which one?", [tool(f"t{i}", description) for i in range(count)])
    assert r.status_code == 200, r.text
    assert len(scored) == 1 and len(scored[0]) == count


def test_only_the_first_tokens_of_a_long_message_are_scored(
    client: TestClient, tiny_engine: Engine, scored: list[list[tuple[list[int], list[int]]]]
) -> None:
    text = long_text(tiny_engine, 3 * CHANNEL_TOKENS)
    r = ask(client, text, [tool("a"), tool("b"), tool("c")])
    assert r.status_code == 200, r.text
    (pairs,) = scored
    question = tiny_engine.encode(" " + text)
    assert [b for _, b in pairs] == [question[:CHANNEL_TOKENS]] * 3


def test_scoring_a_long_continuation_reads_it_in_chunks_and_matches_the_full_pass(
    tiny_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, scoring built [prefix + continuation, vocab] logits (and their log-softmax) in one piece."""
    import torch

    import autoqwen.local_llm.batch

    rows: list[int] = []
    all_logits = autoqwen.local_llm.batch.all_logits

    def spy(model: Any, ids: torch.Tensor, cache: Any) -> torch.Tensor:
        out = all_logits(model, ids, cache)
        rows.append(out.shape[1])
        return out

    monkeypatch.setattr(autoqwen.local_llm.batch, "all_logits", spy)
    prefix = tiny_engine.encode("Tool: summarise - summarises a text\nA user request this tool answers:")
    continuation = tiny_engine.encode(" " + long_text(tiny_engine, 2 * CHUNK + 40))
    tiny_engine.prefix_cache.clear()
    (score,) = tiny_engine.score([(prefix, continuation)])
    assert rows and max(rows) <= CHUNK and sum(rows) == len(continuation) - 1
    with torch.inference_mode():
        logits = tiny_engine.model(input_ids=torch.tensor([prefix + continuation])).logits[0].float()
    logprobs = torch.log_softmax(logits, -1)
    expected = sum(float(logprobs[len(prefix) + i - 1, t]) for i, t in enumerate(continuation))
    assert score == pytest.approx(expected, rel=1e-4)
