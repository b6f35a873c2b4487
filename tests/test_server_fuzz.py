"""Fuzz the server with requests generated from its own OpenAPI schema (schemathesis): no input may give a 5xx.

Valid and invalid requests for every route go to a real loopback server over a tiny random model; completions
are capped at a few tokens (the server's default and a clamp on what the generator asks for) so the run stays
around half a minute on two cores. A stream that fails after its 200 counts as a 5xx too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode, Response

from autoqwen.local_llm import EmbeddedServer, Engine, ServerConfig, resolve_model
from autoqwen.local_llm.protocol import ChatCompletionRequest

FUZZ_REQUESTS = 1000
# Completion caps the generator may ask for are clamped to this: the run measures input handling, not decoding.
MAX_TOKENS = 4


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path) -> Iterator[EmbeddedServer]:
    config = ServerConfig(aliases=("tiny",), default_max_tokens=MAX_TOKENS)
    with EmbeddedServer(Engine(resolve_model(str(tiny_model_dir))), config) as running:
        running.engine.wait_ready(60)
        yield running


def server_error(response: Response) -> str | None:
    """Why `response` is a server failure (a 5xx, an error event inside a 200 stream or a stream cut off), or
    None."""
    text = response.content.decode("utf-8", "replace")
    if response.status_code >= 500:
        return f"{response.status_code} {text[:300]}"
    if any(kind.startswith("text/event-stream") for kind in response.headers.get("content-type", [])):
        for line in text.split("\n"):  # not splitlines(): U+2028 and U+0085 may stand raw inside the JSON
            payload = line.removeprefix("data: ")
            if not line.startswith("data: ") or payload == "[DONE]":
                continue
            error = json.loads(payload).get("error")
            if error is not None and error.get("type") == "internal_server_error":
                return f"stream error after 200: {error}"
        if response.status_code == 200 and not response.stream_cut_short and "data: [DONE]" not in text:
            return f"stream ended without [DONE]: {text[-300:]!r}"
    return None


def bounded(case: Case, data: st.DataObject) -> None:
    """Keep a generated chat request cheap, and aim it at the served model (every valid one, half the invalid ones)
    so it gets past the model check to tokenising, sampling and decoding (a random name gets its 404 first)."""
    body = case.body
    if not isinstance(body, dict):
        return
    for field in ("max_tokens", "max_completion_tokens"):
        if isinstance(body.get(field), int) and body[field] > MAX_TOKENS:
            body[field] = MAX_TOKENS
    positive = case.meta.generation.mode.is_positive
    if isinstance(body.get("model"), str) and (positive or data.draw(st.booleans(), label="model")):
        body["model"] = "tiny"
    messages = body.get("messages")
    if positive and isinstance(messages, list):
        # A tool result must answer an earlier call, which a schema cannot say: most become user turns.
        for message in messages:
            if (
                isinstance(message, dict)
                and message.get("role") == "tool"
                and data.draw(st.integers(0, 9), label="tool turn") < 9
            ):
                message["role"] = "user"


def described(body: Any) -> str:
    """The request fields of `body` (the generator's extra fields left out), to reproduce a failure by hand."""
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if k in ChatCompletionRequest.model_fields}
    return repr(body)[:600]


def test_schema_fuzz_gives_no_5xx(server: EmbeddedServer) -> None:
    base = f"http://{server.host}:{server.port}"
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    chat = schema["/v1/chat/completions"]["POST"]
    # Every route, valid and invalid; valid chat completions (where the work is) most often.
    cases = st.one_of(
        schema.as_strategy(GenerationMode.POSITIVE),
        schema.as_strategy(GenerationMode.NEGATIVE),
        chat.as_strategy(GenerationMode.NEGATIVE),
        *[chat.as_strategy(GenerationMode.POSITIVE)] * 3,
    )
    session = requests.Session()
    sent: list[int] = []
    failures: list[str] = []

    @settings(
        max_examples=FUZZ_REQUESTS,
        deadline=None,
        database=None,
        derandomize=True,  # the same requests on every run: a failure here is reproducible
        phases=[Phase.generate],  # no shrinking: failures are collected, not raised
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases, data=st.data())
    def send(case: Any, data: st.DataObject) -> None:
        bounded(case, data)
        response = case.call(base_url=base, session=session, timeout=30)
        sent.append(response.status_code)
        problem = server_error(response)
        if problem is not None:
            failures.append(f"{case.method} {case.formatted_path} {described(case.body)}: {problem}")

    start = time.monotonic()
    send()
    elapsed = time.monotonic() - start
    print(f"fuzz: {len(sent)} requests in {elapsed:.1f} s, statuses {sorted(set(sent))}")

    assert failures == [], f"{len(failures)} of {len(sent)} requests failed on the server:\n" + "\n".join(failures[:10])
    assert len(sent) >= FUZZ_REQUESTS
    assert 200 in sent and any(400 <= s < 500 for s in sent)  # both kinds were exercised
    # The server answers normally afterwards.
    assert session.get(f"{base}/health", timeout=10).json()["status"] == "ready"
    reply = session.post(
        f"{base}/v1/chat/completions",
        json={"model": "tiny", "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 3},
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["finish_reason"] in {"stop", "length"}
