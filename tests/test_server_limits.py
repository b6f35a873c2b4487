"""Attacks on the server's edges (issue 17, items 6, 14, 15, 16): client input that gave 500s, oversized and
unauthenticated bodies, tokenising on the event loop, /metrics cardinality, DNS rebinding."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from autoqwen.cli import app as cli_app
from autoqwen.local_llm import Engine, ServerConfig, create_app
from autoqwen.local_llm.request_guard import RequestGuard
from autoqwen.local_llm.sampling import SamplingParams

URL = "/v1/chat/completions"
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def client(tiny_engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(tiny_engine, ServerConfig(aliases=("tiny",)))) as c:
        yield c


def body(**overrides: Any) -> dict[str, Any]:
    base = {"model": "tiny", "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 4, "temperature": 0}
    return {**base, **overrides}


def assert_error(response: httpx.Response, status: int, *, param: str | None = None, code: str | None = None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    if param is not None:
        assert error["param"] == param, error
    if code is not None:
        assert error["code"] == code, error


@contextmanager
def serving(app: FastAPI) -> Iterator[int]:
    """`app` behind a real uvicorn on 127.0.0.1 (a free port) in a thread; yields the port."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.01)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)


def raw_request(port: int, head: str, first_part: bytes, timeout: float = 5.0) -> tuple[bytes, float]:
    """Send a request head and only the start of its body; return what the server answers and how long it took."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head.encode() + first_part)
        reply = b""
        while b"\r\n\r\n" not in reply or not _body_complete(reply):
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    return reply, time.monotonic() - started


def _body_complete(reply: bytes) -> bool:
    head, _, rest = reply.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(rest) >= int(line.split(b":")[1])
    return False


def status_and_json(reply: bytes) -> tuple[int, dict[str, Any]]:
    head, _, rest = reply.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(rest)


def post_head(port: int, length: int, **headers: str) -> str:
    extra = "".join(f"{k.replace('_', '-')}: {v}\r\n" for k, v in headers.items())
    return (
        f"POST {URL} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n{extra}\r\n"
    )


# --- Item 14: client input that gave 500s ----------------------------------------------------------------------


def test_non_ascii_bearer_token_is_401(tiny_engine: Engine) -> None:
    with TestClient(create_app(tiny_engine, ServerConfig(api_keys=["s3cret"]))) as c:
        r = c.get("/v1/models", headers=[(b"authorization", "Bearer ключ-é".encode())])
        assert_error(r, 401, code="invalid_api_key")
        r = c.get("/v1/models", headers=[(b"authorization", b"Bearer \xff\xfe")])
        assert_error(r, 401, code="invalid_api_key")
        assert c.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("logit_bias", {"abc": 1}),
        ("logit_bias", {"²": 1}),  # str.isdigit() says yes, int() says no
        ("logit_bias", {"-1": 5}),
        ("logit_bias", {"9" * 5000: 1}),  # too many digits for int()
        ("logit_bias", {"99999999": 1}),  # beyond the vocabulary
        ("seed", 2**64),
        ("seed", -(2**63) - 1),
        ("seed", 10**30),
    ],
)
def test_bad_values_are_400_naming_the_field(client: TestClient, field: str, value: Any, stream: bool) -> None:
    r = client.post(URL, json=body(**{field: value, "stream": stream}))
    assert_error(r, 400, param=field)


@pytest.mark.parametrize("seed", [2**64 - 1, -(2**63), -1, 0])
def test_every_64_bit_seed_works(client: TestClient, seed: int) -> None:
    r = client.post(URL, json=body(seed=seed, temperature=1.0, stream=True))
    assert r.status_code == 200 and "error" not in r.text and r.text.endswith("data: [DONE]\n\n")


def test_logit_bias_ids_are_checked_against_the_vocabulary(client: TestClient, tiny_engine: Engine) -> None:
    assert tiny_engine.tokenizer is not None
    size = len(tiny_engine.tokenizer.hf)
    r = client.post(URL, json=body(logit_bias={"0": 5, str(size - 1): -100}))
    assert r.status_code == 200, r.text
    assert_error(client.post(URL, json=body(logit_bias={str(size): 1})), 400, param="logit_bias")


@pytest.mark.parametrize("temperature", [1e-300, 5e-324, 1e-6])
def test_tiny_temperature_decodes_greedily(client: TestClient, temperature: float) -> None:
    greedy = client.post(URL, json=body(max_tokens=6, ignore_eos=True)).json()["choices"][0]["message"]["content"]
    r = client.post(URL, json=body(max_tokens=6, ignore_eos=True, temperature=temperature, seed=1))
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == greedy
    r = client.post(URL, json=body(max_tokens=6, ignore_eos=True, temperature=temperature, stream=True))
    events = [line for line in r.text.split("\n") if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]" and not any('"error"' in e for e in events)


def test_sampler_treats_tiny_temperature_as_greedy() -> None:
    import torch

    from autoqwen.local_llm.sampling import sample

    logits = torch.tensor([1.0, 3.0, 2.0, -50.0])
    generator = torch.Generator().manual_seed(0)
    for t in (1e-300, 1e-30, 1e-6):
        assert sample(logits, [], SamplingParams(temperature=t), generator, None) == 1


# --- Item 6: body limit, key before body, length before tokenising, tokenising off the loop -------------------


def test_oversized_body_is_413_unread_while_health_stays_fast(tiny_engine: Engine) -> None:
    with serving(create_app(tiny_engine, ServerConfig())) as port:
        reply, seconds = raw_request(port, post_head(port, 20 * MiB), b'{"messages": [' + b" " * 65536)
        status, data = status_and_json(reply)
        assert status == 413 and data["error"]["code"] == "request_too_large", reply[:300]
        assert seconds < 2, seconds

        # A client that pushes the whole 20 MB anyway: /health keeps answering meanwhile.
        def push() -> None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                    sock.sendall(post_head(port, 20 * MiB).encode() + b"x" * (20 * MiB))
                    sock.recv(1024)
            except OSError:
                pass  # the server closed the connection on its 413

        pusher = threading.Thread(target=push)
        pusher.start()
        worst = 0.0
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            for _ in range(10):
                started = time.monotonic()
                assert http.get("/health").status_code == 200
                worst = max(worst, time.monotonic() - started)
        pusher.join(15)
        assert worst < 0.5, worst


def test_chunked_body_is_counted_and_refused(tiny_engine: Engine) -> None:
    config = ServerConfig(max_body_bytes=MiB)
    with serving(create_app(tiny_engine, config)) as port:
        sent = 0
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(
                f"POST {URL} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                "Transfer-Encoding: chunked\r\n\r\n".encode()
            )
            chunk = b"%x\r\n%s\r\n" % (65536, b"a" * 65536)
            try:
                while sent < 20 * MiB:
                    sock.sendall(chunk)
                    sent += 65536
            except OSError:
                pass  # refused and closed mid-upload
            reply = b""
            try:
                while not _body_complete(reply):
                    part = sock.recv(65536)
                    if not part:
                        break
                    reply += part
            except OSError:
                pass
        status, data = status_and_json(reply)
        assert status == 413 and data["error"]["code"] == "request_too_large"
        assert time.monotonic() - started < 5


def test_chunked_body_limit_in_the_middleware_alone() -> None:
    """Directly over ASGI: the wrapped app never runs, and reading stops just past the limit."""
    called, received = [], []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        called.append(scope)

    async def scenario() -> list[dict[str, Any]]:
        guard = RequestGuard(inner, ServerConfig(max_body_bytes=1000))
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            received.append(1)
            return {"type": "http.request", "body": b"x" * 300, "more_body": True}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": URL, "headers": [], "server": None}
        await guard(scope, receive, send)
        return sent

    sent = asyncio.run(scenario())
    assert sent[0]["status"] == 413 and not called and len(received) == 4


def test_unauthenticated_huge_body_gets_401_unread(tiny_engine: Engine) -> None:
    config = ServerConfig(api_keys=["s3cret"], max_body_bytes=200 * MiB)  # the limit alone would let it through
    with serving(create_app(tiny_engine, config)) as port:
        reply, seconds = raw_request(port, post_head(port, 100 * MiB), b'{"model": "x", ' + b" " * 65536)
        status, data = status_and_json(reply)
        assert status == 401 and data["error"]["code"] == "invalid_api_key"
        assert seconds < 2, seconds
        reply, _ = raw_request(port, post_head(port, 100 * MiB, Authorization="Bearer wrong"), b"{")
        assert status_and_json(reply)[0] == 401


def test_bad_content_length_is_400_in_the_middleware() -> None:
    """uvicorn refuses these itself; another ASGI server may not, and int() of 5000 digits raises."""

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("the app must not run")

    async def one(length: bytes) -> int:
        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": URL, "headers": [(b"content-length", length)]}
        await RequestGuard(inner, ServerConfig())(scope, None, send)
        return int(sent[0]["status"])

    assert [asyncio.run(one(v)) for v in (b"1" * 5000, b"-5", b"0x10", b"99999999999999999999")] == [413, 400, 400, 413]


def test_over_long_messages_are_refused_before_tokenising(
    client: TestClient, tiny_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[object] = []
    monkeypatch.setattr(tiny_engine, "encode_chat", lambda messages: calls.append(messages) or [1])
    text = "word " * (32 * tiny_engine.context_length // 5 + 1)
    started = time.monotonic()
    r = client.post(URL, json=body(messages=[{"role": "user", "content": [{"type": "text", "text": text}]}]))
    assert_error(r, 400, param="messages", code="context_length_exceeded")
    assert calls == [] and time.monotonic() - started < 2


def test_tokenising_runs_off_the_event_loop(
    client: TestClient, tiny_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = tiny_engine.encode_chat
    on_loop: list[bool] = []

    def spy(messages: Any) -> list[int]:
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:
            on_loop.append(False)
        return real(messages)

    monkeypatch.setattr(tiny_engine, "encode_chat", spy)
    assert client.post(URL, json=body()).status_code == 200
    assert on_loop == [False]


# --- Item 15: /metrics labels by route --------------------------------------------------------------------------


def _request_series(c: TestClient) -> list[str]:
    return [line for line in c.get("/metrics").text.splitlines() if line.startswith("autoqwen_requests_total{")]


def test_random_404s_add_at_most_one_series(client: TestClient) -> None:
    client.get("/v1/models/tiny")
    _request_series(client)  # so that /metrics itself has its series already
    before = _request_series(client)
    for _ in range(200):
        assert client.get(f"/{uuid.uuid4().hex}/{uuid.uuid4().hex}").status_code == 404
    after = _request_series(client)
    assert len(after) - len(before) <= 1, after
    assert any('path="unmatched",status="404"' in line for line in after)
    assert any('path="/v1/models/{model_id:path}",status="200"' in line for line in after)


def test_refusals_before_routing_are_labelled_by_route(tiny_engine: Engine) -> None:
    with TestClient(create_app(tiny_engine, ServerConfig(api_keys=["k"]))) as c:
        for _ in range(3):
            c.get(f"/v1/models/{uuid.uuid4().hex}")
        series = _request_series_keyed(c)
    assert [line for line in series if 'status="401"' in line] == [
        'autoqwen_requests_total{path="/v1/models/{model_id:path}",status="401"} 3.0'
    ]


def _request_series_keyed(c: TestClient) -> list[str]:
    text = c.get("/metrics", headers={"Authorization": "Bearer k"}).text
    return [line for line in text.splitlines() if line.startswith("autoqwen_requests_total{")]


# --- Item 16: DNS rebinding, the key on /metrics, the serve warning -----------------------------------------------


def test_loopback_server_refuses_foreign_host_headers(tiny_engine: Engine) -> None:
    config = ServerConfig(allowed_hosts=("my-box.lan",))
    with serving(create_app(tiny_engine, config)) as port, httpx.Client(base_url=f"http://127.0.0.1:{port}") as h:
        for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example", "localhost.evil.example:1"):
            r = h.get("/v1/models", headers={"Host": host})
            assert_error(r, 400, code="invalid_host")
        for host in ("localhost", f"localhost:{port}", "127.0.0.1", f"127.0.0.1:{port}", "[::1]:99", "LOCALHOST."):
            assert h.get("/v1/models", headers={"Host": host}).status_code == 200, host
        assert h.get("/v1/models", headers={"Host": "my-box.lan:8080"}).status_code == 200
        assert h.get("/health", headers={"Host": "evil.example"}).status_code == 400


def test_allowed_hosts_star_turns_the_host_check_off(tiny_engine: Engine) -> None:
    with (
        serving(create_app(tiny_engine, ServerConfig(allowed_hosts=("*",)))) as port,
        httpx.Client(base_url=f"http://127.0.0.1:{port}") as h,
    ):
        assert h.get("/v1/models", headers={"Host": "anything.example"}).status_code == 200


def test_metrics_need_the_key_when_one_is_set(tiny_engine: Engine) -> None:
    with TestClient(create_app(tiny_engine, ServerConfig(api_keys=["k"]))) as c:
        assert_error(c.get("/metrics"), 401, code="invalid_api_key")
        assert c.get("/metrics", headers={"Authorization": "Bearer k"}).status_code == 200
        assert c.get("/health").status_code == 200  # health stays open for probes


def test_serve_warns_when_exposed_without_a_key() -> None:
    runner = CliRunner()
    exposed = runner.invoke(cli_app, ["serve", "--model", "nowhere.gguf", "--host", "0.0.0.0"])
    assert "without an API key" in exposed.output
    for args in (["--host", "0.0.0.0", "--api-key", "k"], ["--host", "127.0.0.1"], ["--host", "::1"]):
        quiet = runner.invoke(cli_app, ["serve", "--model", "nowhere.gguf", *args])
        assert "without an API key" not in quiet.output and quiet.exit_code == 1


def test_serve_takes_several_keys_and_refuses_unusable_ones() -> None:
    runner = CliRunner()
    several = runner.invoke(cli_app, ["serve", "--model", "nowhere.gguf", "--api-key", "a", "--api-key", "b"])
    assert several.exit_code == 1 and "API key" not in several.output  # it got as far as the model
    blank = runner.invoke(cli_app, ["serve", "--model", "nowhere.gguf", "--api-key", " "], env={"COLUMNS": "200"})
    assert blank.exit_code == 2 and "not a usable key" in blank.output
