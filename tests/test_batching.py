"""The engine's scheduler: prefix-cache reuse must not change outputs, and batched decoding must match one-at-a-time."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from autoqwen.local_llm import EmbeddedServer, Engine, SamplingParams, resolve_model
from autoqwen.local_llm.grammars import json_grammar
from autoqwen.local_llm.protocol import ResponseFormat

TURNS = ["Hello there!", "Tell me about the sea.", "And the mountains?", "Which one is colder?"]


@pytest.fixture(scope="module")
def uncached(tiny_model_dir: Path) -> Iterator[Engine]:
    engine = Engine(resolve_model(str(tiny_model_dir)), prefix_cache_mb=0, max_batch=1).start().wait_ready(60)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def cached(tiny_model_dir: Path) -> Iterator[Engine]:
    engine = Engine(resolve_model(str(tiny_model_dir)), max_batch=4).start().wait_ready(60)
    yield engine
    engine.close()


def conversation(engine: Engine, params: SamplingParams) -> tuple[list[str], list[int]]:
    """A multi-turn chat where each turn resends the whole conversation; returns replies and cached tokens."""
    messages: list[dict[str, str]] = [{"role": "system", "content": "You are a helpful assistant."}]
    replies, cached = [], []
    for turn in TURNS:
        messages.append({"role": "user", "content": turn})
        completion = engine.submit(engine.encode_chat(messages), params)
        replies.append(completion.text())
        cached.append(completion.cached_tokens)
        messages.append({"role": "assistant", "content": replies[-1]})
    return replies, cached


@pytest.mark.parametrize(
    "params",
    [SamplingParams(max_tokens=24, temperature=0), SamplingParams(max_tokens=24, temperature=0.9, seed=7)],
    ids=["greedy", "seeded"],
)
def test_prefix_cache_output_equals_uncached_output(uncached: Engine, cached: Engine, params: SamplingParams) -> None:
    cached.prefix_cache.clear()
    expected, none_cached = conversation(uncached, params)
    got, reused = conversation(cached, params)
    assert got == expected
    assert none_cached == [0, 0, 0, 0]
    # From turn 2 on, everything before the new user message was computed already.
    assert reused[0] == 0 and all(n > 0 for n in reused[1:])
    assert reused[3] > reused[2] > reused[1]


def test_repeated_prompt_reuses_all_but_its_last_token(cached: Engine) -> None:
    prompt = cached.encode_chat([{"role": "user", "content": "Repeat after me."}])
    params = SamplingParams(max_tokens=8, temperature=0)
    first = cached.submit(prompt, params)
    first_text = first.text()
    again = cached.submit(prompt, params)
    assert again.text() == first_text
    assert again.cached_tokens == len(prompt) - 1


def test_cache_budget_evicts_least_recently_used(tiny_model_dir: Path) -> None:
    engine = Engine(resolve_model(str(tiny_model_dir)), prefix_cache_mb=1).start().wait_ready(60)
    try:
        params = SamplingParams(max_tokens=4, temperature=0)
        for i in range(40):
            engine.submit(engine.encode_chat([{"role": "user", "content": f"prompt number {i} " * 20}]), params).text()
        assert 0 < engine.prefix_cache.nbytes <= 1 << 20
        assert len(engine.prefix_cache) < 40
    finally:
        engine.close()


def submit_all(engine: Engine, prompts: list[list[int]], params: list[SamplingParams]) -> list[str]:
    completions = [engine.submit(p, sp) for p, sp in zip(prompts, params, strict=True)]
    return [c.text() for c in completions]


def test_batched_outputs_match_one_at_a_time(uncached: Engine, cached: Engine) -> None:
    cached.prefix_cache.clear()
    prompts = [uncached.encode_chat([{"role": "user", "content": "word " * (3 * i + 1)}]) for i in range(6)]
    params = [SamplingParams(max_tokens=10 + 7 * i, temperature=0, ignore_eos=True) for i in range(6)]
    expected = [uncached.submit(p, sp).text() for p, sp in zip(prompts, params, strict=True)]
    seen: list[int] = []
    cached.hooks.on_step = seen.append
    try:
        assert submit_all(cached, prompts, params) == expected
    finally:
        cached.hooks.on_step = None
    assert max(seen) == 4  # the six requests really shared decode steps, four at a time


def test_rows_ending_in_one_step_leave_together(uncached: Engine, cached: Engine) -> None:
    cached.prefix_cache.clear()
    prompts = [uncached.encode_chat([{"role": "user", "content": w}]) for w in "abcd"]
    params = [SamplingParams(max_tokens=6, temperature=0, ignore_eos=True)] * 4
    expected = [uncached.submit(p, sp).text() for p, sp in zip(prompts, params, strict=True)]
    hold, leaving = threading.Event(), []
    cached.hooks.on_prefill = lambda job: hold.wait(10)
    cached.hooks.on_retire = leaving.append
    try:
        completions = [cached.submit(p, sp) for p, sp in zip(prompts, params, strict=True)]
        hold.set()  # all four are queued: admitted together, they end in the same step
        assert [c.text() for c in completions] == expected
    finally:
        cached.hooks.on_prefill = cached.hooks.on_retire = None
    assert [n for n in leaving if n] == [4]
    assert cached.batch_size == 0 and len(cached.prefix_cache) == 4


def test_repeated_prompts_join_the_running_batch(uncached: Engine, cached: Engine) -> None:
    """A prompt cached but for its last token feeds it in the batch's next step (a one-token prompt: no KV yet)."""
    prompts = [uncached.encode("Once")[:1], *(uncached.encode_chat([{"role": "user", "content": w}]) for w in "ab")]
    params = [SamplingParams(max_tokens=9, temperature=0, ignore_eos=True)] * 3
    expected = [uncached.submit(p, sp).text() for p, sp in zip(prompts, params, strict=True)]
    submit_all(cached, prompts[1:], params[1:])  # now cached
    completions = [cached.submit(p, sp) for p, sp in zip(prompts, params, strict=True)]
    assert [c.text() for c in completions] == expected
    assert [c.cached_tokens for c in completions] == [0, len(prompts[1]) - 1, len(prompts[2]) - 1]


def test_rows_fed_different_token_counts_stay_independent(uncached: Engine, cached: Engine) -> None:
    """A grammar's forced tokens make one row feed several tokens in a step while the others feed one."""
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string", "maxLength": 12}, "confidence": {"enum": ["low", "high"]}},
        "required": ["answer", "confidence"],
    }
    grammar = json_grammar(ResponseFormat.model_validate({"type": "json_schema", "json_schema": {"schema": schema}}))
    prompts = [uncached.encode_chat([{"role": "user", "content": f"question {i}"}]) for i in range(4)]
    params = [
        SamplingParams(max_tokens=40, temperature=0, grammar=grammar if i % 2 else None, ignore_eos=not i % 2)
        for i in range(4)
    ]
    expected = [uncached.submit(p, sp).text() for p, sp in zip(prompts, params, strict=True)]
    assert submit_all(cached, prompts, params) == expected
    assert expected[1].startswith('{"answer": "')


def test_cancelled_stream_frees_its_slot_at_once(tiny_model_dir: Path) -> None:
    engine = Engine(resolve_model(str(tiny_model_dir)), max_batch=1).start().wait_ready(60)
    try:
        prompt = engine.encode_chat([{"role": "user", "content": "Go on forever."}])
        endless = engine.submit(prompt, SamplingParams(temperature=0, ignore_eos=True))
        next(iter(endless))
        waiting = engine.submit(prompt, SamplingParams(max_tokens=3, temperature=0))
        started = threading.Event()
        engine.hooks.on_prefill = lambda job: started.set()
        endless.cancel()
        assert started.wait(10), "the waiting request never got the freed slot"
        assert waiting.text() and waiting.finish_reason == "length"
        assert endless.completion_tokens < engine.context_length - endless.prompt_tokens
    finally:
        engine.close()


def test_prefix_cache_output_equals_uncached_output_with_int4_weights(tiny_model_dir: Path) -> None:
    """Prompt chunks and decode steps go through the same 4-bit kernel, so reuse does not change outputs."""
    source = resolve_model(str(tiny_model_dir))
    plain = Engine(source, quantize="int4", prefix_cache_mb=0).start().wait_ready(60)
    reusing = Engine(source, quantize="int4").start().wait_ready(60)
    try:
        params = SamplingParams(max_tokens=40, temperature=0.9, seed=3)
        expected, _ = conversation(plain, params)
        got, reused = conversation(reusing, params)
        assert got == expected and all(n > 0 for n in reused[1:])
    finally:
        plain.close()
        reusing.close()


def test_http_client_disconnect_frees_the_slot(tiny_server: EmbeddedServer) -> None:
    import httpx

    engine = tiny_server.engine
    body = {
        "model": engine.model_id,
        "messages": [{"role": "user", "content": "Talk forever."}],
        "stream": True,
        "temperature": 0,
        "ignore_eos": True,
    }
    with httpx.stream("POST", f"{tiny_server.base_url}/chat/completions", json=body, timeout=30) as response:
        lines = response.iter_lines()
        while engine.batch_size == 0:  # the first token streams out while the request joins the batch
            next(lines)
    deadline = time.monotonic() + 10
    while engine.batch_size and time.monotonic() < deadline:
        time.sleep(0.05)
    assert engine.batch_size == 0, "the disconnected stream still holds its slot"
