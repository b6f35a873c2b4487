"""The server under load and when clients leave: requests queue rather than fail, every client that stays gets its
whole answer, and a client that leaves (streaming or not) frees its batch slot at once."""

from __future__ import annotations

import asyncio
import gc
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import torch

from autoqwen.local_llm import EmbeddedServer, Engine
from autoqwen.local_llm.completion import Completion
from autoqwen.local_llm.sampling import SamplingParams

STEP_S = 0.002  # each decode step is held this long: a long request the server failed to cancel runs for seconds
LONG = 3000  # max_tokens of a client that leaves: LONG * STEP_S = 6 s of decoding if it is not cancelled


@pytest.fixture
def server(tiny_server: EmbeddedServer) -> Iterator[EmbeddedServer]:
    """The session's tiny-model server (its default queue: 256 deep, 4 decoding at once), its steps slowed."""
    hooks = tiny_server.engine.hooks
    hooks.on_step = lambda rows: time.sleep(STEP_S)
    try:
        yield tiny_server
    finally:
        hooks.on_step = None


@pytest.fixture
def submitted(server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch) -> list[Completion]:
    """Every completion the server submits during a test."""
    engine, completions = server.engine, []
    real = engine.submit

    def spy(*args: Any, **kwargs: Any) -> Completion:
        completions.append(real(*args, **kwargs))
        return completions[-1]

    monkeypatch.setattr(engine, "submit", spy)
    return completions


def body(server: EmbeddedServer, max_tokens: int, *, stream: bool) -> dict[str, object]:
    return {
        "model": server.engine.model_id,
        "messages": [{"role": "user", "content": "Count to ten."}],
        "max_tokens": max_tokens,
        "ignore_eos": True,
        "stream": stream,
    }


def wait_idle(engine: Engine, within: float) -> float:
    """Seconds until the engine has no running and no waiting request; fails after `within`."""
    start = time.monotonic()
    while engine.batch_size or engine.queue_depth:
        assert time.monotonic() - start < within, f"busy: {engine.batch_size} running, {engine.queue_depth} waiting"
        time.sleep(0.02)
    return time.monotonic() - start


def tensor_bytes(engine: Engine) -> int:
    """Bytes held by every live tensor of this process (each storage once), the prefix cache emptied first: what
    the server keeps between requests. A slot, KV state or logits a finished request left behind shows up here."""
    engine.prefix_cache.clear()
    gc.collect()
    storages = {}
    for obj in gc.get_objects():
        # oneDNN's laid-out weights (scoring's copies, made once) are opaque: they have no storage to read.
        if issubclass(type(obj), torch.Tensor) and obj.device.type == "cpu" and not obj.is_mkldnn:
            storage = obj.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())


async def stream_one(client: httpx.AsyncClient, server: EmbeddedServer, leave: bool) -> tuple[int, str, float]:
    """(status, how it ended, when): the finish_reason and [DONE] of a whole stream, or "left" (a `LONG` stream
    closed after its third event; `when` is the perf_counter time it left)."""
    payload = body(server, LONG if leave else 16, stream=True)
    async with client.stream("POST", "/chat/completions", json=payload) as response:
        if response.status_code != 200:
            return response.status_code, (await response.aread()).decode(), 0.0
        finish, events = None, 0
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            events += 1
            if leave and events > 3:
                break
            if line == "data: [DONE]":
                return 200, f"{finish} [DONE]", 0.0
            chunk = json.loads(line.removeprefix("data: "))
            assert "error" not in chunk, chunk
            finish = chunk["choices"][0]["finish_reason"] if chunk["choices"] else finish
        else:
            return 200, f"{finish} (no [DONE])", 0.0
    return 200, "left", time.perf_counter()  # the response (and its connection) closed as the block ended


def test_32_streams_with_8_leaving_all_end_well_and_free_their_slots(
    server: EmbeddedServer, submitted: list[Completion]
) -> None:
    """Before the deep queue, 15 of 32 streams got 503 (16 waiting at most)."""
    idle = tensor_bytes(server.engine)

    async def main() -> list[tuple[int, str, float]]:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=server.base_url, limits=limits, timeout=60) as client:
            return await asyncio.gather(*(stream_one(client, server, leave=i % 4 == 0) for i in range(32)))

    results = asyncio.run(main())
    assert [status for status, _, _ in results] == [200] * 32, results
    ends = [end for _, end, _ in results]
    assert ends.count("left") == 8
    assert all(end == "length [DONE]" for end in ends if end != "left"), ends
    wait_idle(server.engine, within=1.0)
    # Each leaver's completion ended (its slot freed) within 1 s of its client leaving, far short of LONG tokens.
    leavers = [c for c in submitted if c.params.max_tokens == LONG]
    left_at = sorted(when for _, end, when in results if end == "left")
    assert len(leavers) == 8 and all(c.completion_tokens < LONG // 4 for c in leavers)
    freed = sorted(c.finished_at for c in leavers if c.finished_at is not None)
    assert len(freed) == 8
    assert max(f - t for f, t in zip(freed, left_at, strict=True)) < 1.0, (freed, left_at)
    assert tensor_bytes(server.engine) == idle  # memory back to idle: nothing of the 32 requests kept


def test_64_concurrent_requests_are_all_answered(server: EmbeddedServer) -> None:
    """Before, 31 of 50 concurrent requests got 503."""
    idle = tensor_bytes(server.engine)

    async def main() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=128)
        async with httpx.AsyncClient(base_url=server.base_url, limits=limits, timeout=60) as client:
            requests = [client.post("/chat/completions", json=body(server, 8, stream=False)) for _ in range(64)]
            return await asyncio.gather(*requests)

    replies = asyncio.run(main())
    assert [r.status_code for r in replies] == [200] * 64, [r.text for r in replies if r.status_code != 200][:3]
    assert all(r.json()["usage"]["completion_tokens"] == 8 for r in replies)
    wait_idle(server.engine, within=1.0)
    assert tensor_bytes(server.engine) == idle


def test_a_client_that_leaves_a_plain_request_frees_its_slot(
    server: EmbeddedServer, submitted: list[Completion]
) -> None:
    """Before, generation ran on to max_tokens (10.7 s for 1500 tokens) after the client left."""
    with pytest.raises(httpx.ReadTimeout), httpx.Client(base_url=server.base_url, timeout=0.5) as client:
        client.post("/chat/completions", json=body(server, LONG, stream=False))
    left = time.perf_counter()
    assert server.engine.batch_size == 1  # still generating when the client gave up
    assert wait_idle(server.engine, within=1.0) < 1.0
    (completion,) = submitted
    assert completion.cancelled and completion.completion_tokens < LONG // 4
    assert completion.finished_at is not None and completion.finished_at - left < 1.0


def test_queued_requests_are_admitted_first_come_first_served(tiny_engine: Engine) -> None:
    """A queue far deeper than the batch serves in arrival order: no request waits behind later ones."""
    gate, admitted = threading.Event(), []

    def on_prefill(job: Completion) -> None:
        gate.wait(10)  # hold the worker until every request is queued
        admitted.append(job)

    tiny_engine.hooks.on_prefill = on_prefill
    try:
        prompt = tiny_engine.encode_chat([{"role": "user", "content": "Count to ten."}])
        jobs = [tiny_engine.submit(prompt, SamplingParams(max_tokens=2, ignore_eos=True)) for _ in range(40)]
        assert tiny_engine.queue_depth >= 39  # 40 wait where the old queue held 16
        gate.set()
        for job in jobs:
            job.text()
    finally:
        tiny_engine.hooks.on_prefill = None
    assert admitted == jobs
