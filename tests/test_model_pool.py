"""Loading on demand: a server started on one model serves every local model, one resident at a time (issue 21 §2).

The local models are tiny ones copied into the user's models folder, listed by the real catalog and loaded by name.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import psutil
import pytest
from typer.testing import CliRunner

from autoqwen.cli.main import app as cli
from autoqwen.local_llm import EmbeddedServer, Engine, ModelSource, ServerConfig, list_models, resolve_model
from autoqwen.paths import user_models_dir


@pytest.fixture
def models_folder(tiny_model_dir: Path, tiny_qwen2_dir: Path) -> Path:
    folder = user_models_dir()
    shutil.copytree(tiny_model_dir, folder / "tiny-llama")
    shutil.copytree(tiny_model_dir, folder / "tiny-llama-2")
    shutil.copytree(tiny_qwen2_dir, folder / "tiny-qwen2")
    return folder


class Loads:
    """make_engine for the server, counting loads; `gate` (when set) holds each load until it is opened; making an
    engine takes `make_s` seconds more (a slow catalog or disk)."""

    def __init__(self) -> None:
        self.specs: list[str] = []
        self.gate: threading.Event | None = None
        self.make_s = 0.0

    def __call__(self, spec: str | ModelSource) -> Engine:
        self.specs.append(spec if isinstance(spec, str) else f"source:{spec.model_id}")
        time.sleep(self.make_s)
        engine = Engine(spec if isinstance(spec, ModelSource) else resolve_model(spec), prefix_cache_mb=16)
        if self.gate is not None:
            gate, load = self.gate, engine._load

            def held_load() -> None:
                gate.wait(30)
                load()

            engine._load = held_load  # type: ignore[method-assign]
        return engine


def serve(loads: Loads, **config: Any) -> EmbeddedServer:
    engine = loads("tiny-llama")
    return EmbeddedServer(engine, ServerConfig(**config), catalog=list_models, make_engine=loads).start()


@pytest.fixture
def loads(models_folder: Path) -> Loads:
    return Loads()


@pytest.fixture
def server(loads: Loads) -> Iterator[EmbeddedServer]:
    with serve(loads) as server:
        server.engine.wait_ready(60)
        yield server


def ask(server: EmbeddedServer, model: str) -> str:
    client = openai.OpenAI(base_url=server.base_url, api_key="none", max_retries=0)
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=3, temperature=0
    )
    assert reply.model == model
    return reply.choices[0].message.content or ""


def hold(server: EmbeddedServer) -> Any:
    """A long stream of tiny-llama, its first piece read: the model is held until the stream is closed."""
    client = openai.OpenAI(base_url=server.base_url, api_key="none", max_retries=0)
    stream = client.chat.completions.create(
        model="tiny-llama",
        messages=[{"role": "user", "content": "Hi"}],
        max_tokens=3000,
        stream=True,
        extra_body={"ignore_eos": True},
    )
    next(iter(stream))
    return stream


def post_until_loaded(server: EmbeddedServer, body: dict[str, Any], timeout: float = 60) -> httpx.Response:
    """POST a chat completion again while it gets 503 model_not_ready (its model still loading)."""
    deadline = time.monotonic() + timeout
    while (r := httpx.post(f"{server.base_url}/chat/completions", json=body)).status_code == 503:
        assert time.monotonic() < deadline and r.json()["error"]["code"] == "model_not_ready", r.text
        time.sleep(0.1)
    return r


def ps(server: EmbeddedServer) -> list[dict[str, Any]]:
    return httpx.get(f"http://127.0.0.1:{server.port}/api/ps").json()["models"]


def test_models_lists_every_local_model_and_a_request_loads_one(server: EmbeddedServer, loads: Loads) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key="none")
    cards = {m.id: m for m in client.models.list().data}
    assert {"tiny-llama", "tiny-qwen2"} <= set(cards)
    assert cards["tiny-llama"].loaded is True and cards["tiny-qwen2"].loaded is False  # type: ignore[attr-defined]

    ask(server, "tiny-qwen2")
    assert loads.specs == ["tiny-llama", "tiny-qwen2"]
    [row] = ps(server)  # one resident by default: tiny-llama was unloaded to make room
    assert row["name"] == "tiny-qwen2" and row["state"] == "ready" and row["requests"] == 0
    assert server.engine.state == "closed" and server.engine.model is None
    cards = {m.id: m for m in client.models.list().data}
    assert cards["tiny-qwen2"].loaded is True and cards["tiny-llama"].loaded is False  # type: ignore[attr-defined]

    ask(server, "tiny-llama")  # and back: the server's own model, loaded again from where it came
    assert loads.specs == ["tiny-llama", "tiny-qwen2", "source:tiny-llama"]
    assert [r["name"] for r in ps(server)] == ["tiny-llama"]


def test_the_servers_own_names_load_it_again_after_it_was_unloaded(loads: Loads) -> None:
    with serve(loads, aliases=("gpt-4o-mini",)) as server:
        server.engine.wait_ready(60)
        ask(server, "tiny-qwen2")  # unloads the server's own model
        ask(server, "gpt-4o-mini")  # an alias of the server's own model: loaded again from its source
        assert loads.specs == ["tiny-llama", "tiny-qwen2", "source:tiny-llama"]
        [row] = ps(server)
        assert set(row["names"]) >= {"tiny-llama", "gpt-4o-mini"} and row["pinned"]
        ask(server, "tiny-llama")  # the same model under its other name: no load
        assert len(loads.specs) == 3


def test_health_is_idle_once_every_model_was_unloaded(loads: Loads) -> None:
    with serve(loads, idle_ttl_s=0.3) as server:
        server.engine.wait_ready(60)
        ask(server, "tiny-qwen2")  # unloads tiny-llama, then is unloaded itself when idle
        deadline = time.monotonic() + 10
        while ps(server):
            assert time.monotonic() < deadline, ps(server)
            time.sleep(0.1)
        health = httpx.get(f"http://127.0.0.1:{server.port}/health")
        assert health.status_code == 200 and health.json()["status"] == "idle"
        ask(server, "tiny-llama")
        assert httpx.get(f"http://127.0.0.1:{server.port}/health").json()["status"] == "ready"


def test_a_model_waiting_for_room_is_not_unloaded_by_the_next(loads: Loads) -> None:
    """The server's model serves a stream; tiny-qwen2 waits for its place; tiny-llama-2 comes next. Each is loaded
    once, one at a time, and every request is answered."""
    with serve(loads, load_wait_s=30) as server:
        server.engine.wait_ready(60)
        stream = hold(server)
        with ThreadPoolExecutor(2) as pool:
            waiting = pool.submit(ask, server, "tiny-qwen2")
            deadline = time.monotonic() + 10
            while not any(r["state"] == "waiting" for r in ps(server)):
                assert time.monotonic() < deadline, ps(server)
                time.sleep(0.02)
            after = pool.submit(ask, server, "tiny-llama-2")
            time.sleep(0.3)
            assert {r["name"] for r in ps(server)} >= {"tiny-llama", "tiny-qwen2"}  # neither was unloaded
            stream.close()
            waiting.result(60), after.result(60)
        assert loads.specs == ["tiny-llama", "tiny-qwen2", "tiny-llama-2"]
        assert len(ps(server)) == 1


def test_an_unknown_model_is_404_naming_the_local_ones(server: EmbeddedServer) -> None:
    r = httpx.post(
        f"{server.base_url}/chat/completions", json={"model": "gpt-9", "messages": [{"role": "user", "content": "Hi"}]}
    )
    assert r.status_code == 404, r.text
    error = r.json()["error"]
    assert error["code"] == "model_not_found" and "gpt-9" in error["message"] and "tiny-qwen2" in error["message"]


@pytest.mark.parametrize("make_s", [0.0, 0.5])
def test_requests_for_a_loading_model_share_one_load(loads: Loads, make_s: float) -> None:
    """Four requests for a model not loaded: one engine is made (however long making it takes) and loaded once."""
    with serve(loads, max_models=2) as server:
        server.engine.wait_ready(60)
        loads.gate, loads.make_s = threading.Event(), make_s
        with ThreadPoolExecutor(4) as pool:
            replies = [pool.submit(ask, server, "tiny-qwen2") for _ in range(4)]
            deadline = time.monotonic() + 10
            while not any(r["name"] == "tiny-qwen2" and r["requests"] == 4 for r in ps(server)):
                assert time.monotonic() < deadline, ps(server)
                time.sleep(0.05)
            [loading] = [r for r in ps(server) if r["name"] == "tiny-qwen2"]
            assert loading["state"] == "loading"
            loads.gate.set()
            for reply in replies:
                reply.result(60)
        assert loads.specs == ["tiny-llama", "tiny-qwen2"]  # one load, never two copies
        assert sorted(r["name"] for r in ps(server)) == ["tiny-llama", "tiny-qwen2"]  # --max-models 2: both stay


def test_a_load_longer_than_the_wait_is_503_with_retry_after(loads: Loads) -> None:
    with serve(loads, load_wait_s=0.3) as server:
        server.engine.wait_ready(60)
        loads.gate = threading.Event()
        body = {"model": "tiny-qwen2", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
        r = httpx.post(f"{server.base_url}/chat/completions", json=body)
        assert r.status_code == 503 and r.headers["retry-after"], r.text
        assert r.json()["error"]["code"] == "model_not_ready" and "still loading" in r.json()["error"]["message"]
        loads.gate.set()
        r = post_until_loaded(server, body)
        assert r.status_code == 200 and loads.specs.count("tiny-qwen2") == 1


def test_a_model_serving_a_stream_is_not_unloaded(loads: Loads) -> None:
    with serve(loads, load_wait_s=0.5) as server:
        server.engine.wait_ready(60)
        stream = hold(server)  # the stream holds tiny-llama
        with pytest.raises(openai.APIStatusError) as caught:
            ask(server, "tiny-qwen2")
        assert caught.value.status_code == 503 and "still serving requests" in caught.value.message
        assert "--max-models" in caught.value.message
        stream.close()
        deadline = time.monotonic() + 10
        while ps(server)[0]["requests"]:  # the lease goes when the stream ends
            assert time.monotonic() < deadline
            time.sleep(0.05)
        body = {"model": "tiny-qwen2", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
        r = post_until_loaded(server, body)  # a load may take longer than the half second this server waits
        assert r.status_code == 200, r.text


def test_a_model_loaded_on_demand_is_unloaded_when_idle(loads: Loads) -> None:
    with serve(loads, max_models=2, idle_ttl_s=0.4) as server:
        server.engine.wait_ready(60)
        ask(server, "tiny-qwen2")
        [row] = [r for r in ps(server) if r["name"] == "tiny-qwen2"]
        assert row["expires_at"] is not None and row["size"] is not None
        deadline = time.monotonic() + 10
        while len(ps(server)) > 1:
            assert time.monotonic() < deadline, ps(server)
            time.sleep(0.1)
        [kept] = ps(server)  # the server's own model stays
        assert kept["name"] == "tiny-llama" and kept["pinned"] and kept["expires_at"] is None


def test_ps_shows_what_a_server_has_loaded(server: EmbeddedServer) -> None:
    ask(server, "tiny-llama")
    result = CliRunner().invoke(cli, ["ps", "--base-url", server.base_url])
    assert result.exit_code == 0, result.output
    assert "tiny-llama" in result.output and "ready" in result.output and "never" in result.output
    result = CliRunner().invoke(cli, ["ps", "--base-url", server.base_url, "--json"])
    assert '"name": "tiny-llama"' in result.output


def test_ps_without_a_server_says_so() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = CliRunner().invoke(cli, ["ps", "--base-url", f"http://127.0.0.1:{port}/v1"])
    assert result.exit_code == 1 and "no server answers" in result.output and "autoqwen serve" in result.output


@pytest.mark.model
def test_loading_a_model_again_does_not_grow_memory(models_folder: Path, bundled_source: Any) -> None:
    """Bundled SmolLM2 (about 100 MB in memory) and a tiny model in turn, one resident: the process's memory after
    the fourth load of the bundled model is within a fraction of one copy of what it was after the first."""
    loads = Loads()
    with EmbeddedServer(loads("tiny-llama"), ServerConfig(), catalog=list_models, make_engine=loads).start() as server:
        server.engine.wait_ready(60)
        rss = []
        for _ in range(3):
            ask(server, "bundled")
            rss.append(psutil.Process().memory_info().rss)
            ask(server, "tiny-llama")
    assert loads.specs.count("bundled") == 3, loads.specs
    assert rss[-1] - rss[0] < 40 * 2**20, [f"{r / 2**20:.0f} MB" for r in rss]
