"""Channel tool selection under hostile requests: the prompt's length is checked before any scoring, tools and
descriptions are bounded, a long message is scored in part, and scoring keeps logits only where they are needed."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from autoqwen.local_llm import Engine, ServerConfig, create_app, kernels, scoring
from autoqwen.local_llm.llama import Lean
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


def full_pass(model: Any, prefix: list[int], continuation: list[int]) -> float:
    """log P(continuation | prefix) from one forward pass of the model over both."""
    import torch

    from autoqwen.local_llm.batch import all_logits

    with torch.inference_mode():
        logprobs = torch.log_softmax(all_logits(model, torch.tensor([prefix + continuation]))[0], -1)
    return sum(float(logprobs[len(prefix) + i - 1, t]) for i, t in enumerate(continuation))


def pairs_of_all_shapes(engine: Engine) -> list[tuple[list[int], list[int]]]:
    """Prefixes of 1 to ~40 tokens and continuations of 1 to ~100, as pairs."""
    prefixes = [
        engine.encode("Tool")[:1],
        engine.encode("Tool: plan_trip - plans a trip"),
        engine.encode("Tool: summarise - summarises a text\nA user request this tool answers:"),
    ]
    continuations = [
        engine.encode(" Rome")[:1],
        engine.encode(" To Rome?"),
        engine.encode(" " + long_text(engine, 100)),
    ]
    return [(p, c) for c in continuations for p in prefixes]


def test_pairs_read_side_by_side_score_as_each_read_alone(tiny_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pairs of different lengths, some prefixes cached, in several batches of several passes: each score is that of
    one pass over the pair alone (before, each pair was read alone: 5 passes for a choice of 3 tools)."""
    monkeypatch.setattr(scoring, "ROWS", 4)
    monkeypatch.setattr(scoring, "POSITIONS", 40)
    monkeypatch.setattr(scoring, "TOKENS", 60)
    pairs = pairs_of_all_shapes(tiny_engine)
    tiny_engine.prefix_cache.clear()
    tiny_engine.score(pairs[4:6])
    scores = tiny_engine.score(pairs)
    assert scores == pytest.approx([full_pass(tiny_engine.model, p, c) for p, c in pairs], rel=1e-4, abs=1e-4)
    assert Lean.of(tiny_engine.model).dense() is Lean.of(tiny_engine.model)  # float32 weights: read as they are


@pytest.mark.parametrize("attention", ["sdpa", "eager"])  # eager attention adds the mask to its scores
def test_other_architectures_score_side_by_side_through_transformers(
    tiny_engine: Engine, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, attention: str
) -> None:
    import torch
    import transformers

    from autoqwen.local_llm.prefix_cache import PrefixCache

    monkeypatch.setattr(scoring, "POSITIONS", 40)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        tiny_model_dir, dtype=torch.float32, attn_implementation=attention
    ).eval()
    model._autoqwen_lean = None  # as for an architecture the lean pass does not run
    pairs = pairs_of_all_shapes(tiny_engine)
    cache = PrefixCache(1 << 30)
    for _ in range(2):  # the prefixes read, then from the cache
        job = scoring.Scoring(pairs)
        with torch.inference_mode():
            scoring.score(model, cache, job)
        assert job.error is None
        assert job.scores == pytest.approx([full_pass(model, p, c) for p, c in pairs], rel=1e-4, abs=1e-4)


@pytest.fixture(scope="module")
def wide_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model's tokenizer on a model whose every layer has whole blocks of 32 rows for our 4-bit kernel."""
    import torch
    import transformers

    folder = tmp_path_factory.mktemp("wide") / "model"
    shutil.copytree(tiny_model_dir, folder)
    config = transformers.AutoConfig.from_pretrained(folder)
    config.update(
        {
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "head_dim": 32,
        }
    )
    torch.manual_seed(0)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    return folder


@pytest.mark.skipif(not kernels.amx() or kernels.load("q4mm") is None, reason="needs AMX and our 4-bit kernel")
def test_4bit_models_score_with_bfloat16_copies_close_to_their_own_pass(wide_model_dir: Path) -> None:
    from autoqwen.local_llm import resolve_model

    engine = Engine(resolve_model(str(wide_model_dir)), quantize="int4").start().wait_ready(60)
    try:
        lean = Lean.of(engine.model)
        assert lean is not None and lean.dense() is not lean and lean.dense().dense() is lean.dense()
        assert lean.dense().head is not lean.head  # the 8-bit head's copy, its largest logits computed again
        pairs = pairs_of_all_shapes(engine)
        expected = [full_pass(engine.model, p, c) for p, c in pairs]
        scores = engine.score(pairs)
        assert scores == pytest.approx(expected, rel=2e-2, abs=0.05)
        engine.prefix_cache.clear()
        dense = lean.dense()
        assert dense.add_rms_norm is not None and dense.side_states is not None and dense.silu_mul is not None
        dense.add_rms_norm = dense.side_states = dense.silu_mul = None  # the steps as PyTorch's: the same bits
        assert engine.score(pairs) == scores
    finally:
        engine.close()


def test_bfloat16_copies_are_kept_within_their_budget(wide_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    import transformers

    from autoqwen.local_llm import llama
    from autoqwen.local_llm.quantize import quantize

    model = transformers.AutoModelForCausalLM.from_pretrained(wide_model_dir, dtype=torch.float32).eval()
    quantize(model)
    monkeypatch.setattr(llama, "DENSE_BYTES", 0)
    lean = Lean(model)
    assert lean.dense() is lean


@pytest.mark.skipif(not kernels.amx() or kernels.load("q4mm") is None, reason="needs AMX and our 4-bit kernel")
def test_the_heads_copy_is_left_out_where_only_the_layers_fit(
    wide_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch
    import transformers

    from autoqwen.local_llm import llama
    from autoqwen.local_llm.quantize import quantize

    model = transformers.AutoModelForCausalLM.from_pretrained(wide_model_dir, dtype=torch.float32).eval()
    quantize(model)
    lean = Lean(model)
    layers = sum(p.dense_bytes for parts in lean.layers for p in (parts[1], parts[2], parts[4], parts[5]))
    monkeypatch.setattr(llama, "DENSE_BYTES", layers + lean.head.dense_bytes - 1)
    dense = lean.dense()
    assert dense is not lean and dense.head is lean.head  # the layers' copies, the 8-bit head as it is
