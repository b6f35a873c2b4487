"""Prompts read in chunks between the batch's decode steps: the same tokens as a prompt read in one pass, the
running streams step between the chunks, and a client leaving, the prefix cache and scoring still work."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from autoqwen.local_llm import Engine, SamplingParams, kernels, prefill, resolve_model, scheduler
from autoqwen.local_llm.completion import Completion
from autoqwen.local_llm.errors import LocalLLMError

SMALL = 5e6  # multiply-adds per chunk: a few to a few dozen tokens of the tiny models
OURS = kernels.load("prompt_attention") is not None  # our attention: chunks change no bit (else PyTorch's rounding)


@pytest.fixture(scope="module")
def qwen3(tiny_qwen3_dir: Path) -> Iterator[Engine]:
    """4-bit weights and head size 16: our kernels where they run, which make chunking exact to the bit."""
    engine = Engine(resolve_model(str(tiny_qwen3_dir)), quantize="int4").start().wait_ready(60)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def llama(tiny_model_dir: Path) -> Iterator[Engine]:
    """float32 weights and head size 8: PyTorch's attention, whose rounding chunking may change."""
    engine = Engine(resolve_model(str(tiny_model_dir)), max_batch=4).start().wait_ready(60)
    yield engine
    engine.close()


def long_prompt(engine: Engine, words: int = 400, topic: str = "sea") -> list[int]:
    text = " ".join(f"The {topic} number {i} is calm and wide." for i in range(words // 7))
    return engine.encode_chat([{"role": "user", "content": text}])


def read(engine: Engine, prompt: list[int], params: SamplingParams) -> tuple[Completion, list[tuple[int, int]]]:
    """The finished completion of `prompt` (read afresh) and the chunks its prompt was read in."""
    chunks: list[tuple[int, int]] = []
    engine.prefix_cache.clear()
    engine.hooks.on_chunk = lambda job, start, end: chunks.append((start, end))
    try:
        completion = engine.submit(prompt, params)
        completion.text()
    finally:
        engine.hooks.on_chunk = None
    return completion, chunks


@pytest.mark.parametrize("name", ["qwen3", "llama"])
def test_chunked_prompt_gives_the_tokens_of_one_pass(
    name: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine: Engine = request.getfixturevalue(name)
    prompt = long_prompt(engine)
    params = SamplingParams(max_tokens=24, temperature=0, ignore_eos=True, logprobs=2)
    whole, one = read(engine, prompt, params)
    monkeypatch.setattr(prefill, "CHUNK_WORK", SMALL)
    chunked, many = read(engine, prompt, params)
    assert one == [(0, len(prompt))] and len(many) > 5
    assert [end for _, end in many][-1] == len(prompt) and all(a < b for a, b in many)
    assert chunked.finish_reason == whole.finish_reason == "length"
    assert [t.token for t in chunked.logprobs] == [t.token for t in whole.logprobs]
    if name == "qwen3" and OURS:  # each token's arithmetic does not depend on the chunks: the same bits
        assert chunked.logprobs == whole.logprobs


def test_running_streams_step_between_the_chunks_of_a_long_prompt(
    qwen3: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(prefill, "CHUNK_WORK", SMALL)
    qwen3.prefix_cache.clear()
    prompt = long_prompt(qwen3)
    events: list[tuple[str, int]] = []  # ("chunk", prompt length) or ("step", rows)
    qwen3.hooks.on_chunk = lambda job, start, end: events.append(("chunk", job.prompt_tokens))
    qwen3.hooks.on_step = lambda rows: events.append(("step", rows))
    try:
        stream = qwen3.submit(qwen3.encode("Once upon a time"), SamplingParams(temperature=0, ignore_eos=True))
        next(iter(stream))  # it runs
        long = qwen3.submit(prompt, SamplingParams(max_tokens=4, temperature=0))
        assert long.text() and long.finish_reason == "length"
        assert not stream.cancelled and stream.finish_reason is None  # still running
    finally:
        stream.cancel()
        qwen3.hooks.on_chunk = qwen3.hooks.on_step = None
    mine = [i for i, (kind, n) in enumerate(events) if kind == "chunk" and n == len(prompt)]
    assert len(mine) > 5
    for before, after in itertools.pairwise(mine):
        assert ("step", 1) in events[before:after], "the running stream waited for two chunks in a row"


def test_a_client_leaving_mid_prompt_frees_its_slot_and_keeps_what_was_read(
    qwen3: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(prefill, "CHUNK_WORK", SMALL)
    qwen3.prefix_cache.clear()
    prompt = long_prompt(qwen3, topic="hill")
    read_up_to: list[int] = []

    def leave(job: Completion, start: int, end: int) -> None:
        read_up_to.append(end)
        if len(read_up_to) == 3:
            job.cancel()

    qwen3.hooks.on_chunk = leave
    try:
        left = qwen3.submit(prompt, SamplingParams(max_tokens=8, temperature=0))
        assert left.text() == "" and left.finish_reason == "stop" and left.completion_tokens == 0
    finally:
        qwen3.hooks.on_chunk = None
    assert len(read_up_to) == 3 and qwen3.batch_size == 0
    cached, _ = qwen3.prefix_cache.lookup(prompt)
    assert cached == read_up_to[-1]  # a retry reads on from there
    again = qwen3.submit(prompt, SamplingParams(max_tokens=8, temperature=0))
    assert again.text() and again.cached_tokens == read_up_to[-1]


def test_a_chunked_prompt_after_a_cached_prefix_equals_one_read_afresh(
    qwen3: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(prefill, "CHUNK_WORK", SMALL)
    params = SamplingParams(max_tokens=12, temperature=0, logprobs=1)
    first = long_prompt(qwen3, topic="river")
    qwen3.prefix_cache.clear()
    reply = qwen3.submit(first, params)
    turn = [*first, *qwen3.encode(reply.text()), *long_prompt(qwen3, words=150, topic="lake")]
    continued = qwen3.submit(turn, params)  # the first turn's KV states from the cache, the rest in chunks
    continued.text()
    assert continued.cached_tokens >= len(first)
    afresh, _ = read(qwen3, turn, params)
    assert afresh.cached_tokens == 0
    if OURS:  # the same bits
        assert afresh.logprobs == continued.logprobs
    assert [t.token for t in afresh.logprobs] == [t.token for t in continued.logprobs]


def test_scoring_runs_while_a_long_prompt_is_read(qwen3: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    pair = (qwen3.encode("The weather today is"), qwen3.encode(" sunny and warm"))
    expected = qwen3.score([pair])
    monkeypatch.setattr(prefill, "CHUNK_WORK", SMALL)
    qwen3.prefix_cache.clear()
    reading, scores = threading.Event(), []
    qwen3.hooks.on_chunk = lambda job, start, end: reading.set()
    try:
        long = qwen3.submit(long_prompt(qwen3, topic="forest"), SamplingParams(max_tokens=4, temperature=0))
        assert reading.wait(10)
        scorer = threading.Thread(target=lambda: scores.extend(qwen3.score([pair])))
        scorer.start()
        assert long.text()
        scorer.join(30)
    finally:
        qwen3.hooks.on_chunk = None
    assert scores == expected


def test_a_prompt_that_fails_to_be_read_fails_alone(qwen3: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    qwen3.prefix_cache.clear()
    broken = long_prompt(qwen3, topic="desert")

    def read(self: prefill.Reading, end: int) -> object:
        if len(self.tokens) == len(broken):
            raise RuntimeError("out of memory")
        return original(self, end)

    original = prefill.Reading.read
    monkeypatch.setattr(prefill.Reading, "read", read)
    failed = qwen3.submit(broken, SamplingParams(max_tokens=4, temperature=0))
    fine = qwen3.submit(qwen3.encode("A short prompt"), SamplingParams(max_tokens=4, temperature=0))
    with pytest.raises(LocalLLMError, match="out of memory"):
        failed.text()
    assert fine.text() and fine.finish_reason == "length"


def test_a_long_prompt_is_shared_while_it_still_generates(qwen3: Engine) -> None:
    """A second request with the same long prefix, sent while the first still generates, reads only its own end."""
    qwen3.prefix_cache.clear()
    prefix = long_prompt(qwen3, topic="harbour")
    assert len(prefix) >= scheduler.SHARE_TOKENS
    running = qwen3.submit(prefix, SamplingParams(max_tokens=400, temperature=0, ignore_eos=True))
    pieces = iter(running)
    next(pieces)  # the first request's prompt is read; it generates on
    second = qwen3.submit([*prefix[:-1], *qwen3.encode(" And the lake?")], SamplingParams(max_tokens=2))
    second.text()
    assert running.finished_at is None, "the first request ended before the second was read"
    assert second.cached_tokens == len(prefix) - 1
    running.cancel()
