"""The UI's Model page and its JSON without a browser: an external server (the stub, a /v1/models server, the tiny
model's real server, one that does not answer) and the embedded model's "Load now" (a fake, then the tiny model).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient
from openai_stub import models_server, serve_stub

from autoqwen.local_llm import EmbeddedServer
from autoqwen.ui import GuardConfig, LazyModel, create_ui_app, free_port
from autoqwen.workflows.live_runs import LiveRuns, RunTarget
from autoqwen.workflows.store import SessionStore

ORIGIN = "http://127.0.0.1"
HOSTILE = "<script>alert(1)</script>"


@contextmanager
def ui_client(target: RunTarget, model: LazyModel | None = None) -> Iterator[TestClient]:
    runs = LiveRuns(target, SessionStore())
    try:
        app = create_ui_app(runs, GuardConfig(), model=model, model_label="label")
        with TestClient(app, base_url=ORIGIN) as client:
            yield client
    finally:
        runs.close()
        runs.store.close()


def test_an_external_server_without_metrics_shows_what_it_lists() -> None:
    with serve_stub("hi") as stub, ui_client(RunTarget(stub.base_url, None, "k")) as http:
        status = http.get("/api/v1/model").json()
        page = http.get("/model").text
    assert status["kind"] == "external" and status["state"] == "ready" and status["base_url"] == stub.base_url
    assert status["model"] == "stub" and status["models"] == ["stub"] and status["models_error"] is None
    assert status["metrics"] is None and "no autoqwen figures" in status["metrics_error"]
    assert "external server at" in page and "load-now" not in page and "/static/model.js" in page
    # The key went to the configured server only: every request it got, and nothing else asked anywhere.
    assert {(method, path) for method, path, _ in stub.requests} == {("GET", "/v1/models"), ("GET", "/metrics")}
    assert all(headers["authorization"] == "Bearer k" for _, _, headers in stub.requests)


def test_capabilities_and_context_length_come_from_v1_models() -> None:
    entry = {"context_length": 8192, "function_calling": True, "vision": False, "family": HOSTILE, "owned_by": "x"}
    with models_server(entry) as base_url, ui_client(RunTarget(base_url)) as http:
        status = http.get("/api/v1/model").json()
        page = http.get("/model").text
    assert status["model"] == "m" and status["context_length"] == 8192
    assert status["capabilities"] == {"function_calling": True, "vision": False, "family": HOSTILE}
    assert "8,192 tokens" in page and ">yes<" in page and ">no<" in page
    assert HOSTILE not in page and "&lt;script&gt;" in page


def test_a_server_that_does_not_answer_is_shown_unreachable() -> None:
    base_url = f"http://127.0.0.1:{free_port()}/v1"
    with ui_client(RunTarget(base_url, "m")) as http:
        status = http.get("/api/v1/model").json()
        page = http.get("/model").text
        refused = http.post("/api/v1/model/load", headers={"Origin": ORIGIN})
    assert status["state"] == "unreachable" and status["models_error"].startswith("unreachable: ")
    assert status["metrics_error"].startswith("unreachable: ") and status["model"] == "m"
    assert "unreachable: " in page and "state-unreachable" in page
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "external_model"


def test_the_figures_of_an_autoqwen_server(tiny_server: EmbeddedServer) -> None:
    body = {"model": tiny_server.engine.model_id, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    answer = httpx.post(f"{tiny_server.base_url}/chat/completions", json=body, timeout=60)
    assert answer.status_code == 200
    with ui_client(RunTarget(tiny_server.base_url)) as http:
        status = http.get("/api/v1/model").json()
        page = http.get("/model").text
    figures = status["metrics"]
    assert status["context_length"] == 4096 and status["capabilities"]["function_calling"] is True
    assert figures["requests"] >= 1 and figures["prompt_tokens"] > 0 and figures["completion_tokens"] > 0
    assert figures["queue_depth"] == 0 and 0 <= figures["prefix_cache_hit_rate"] <= 1
    assert figures["mean_latency_s"] > 0 and status["metrics_error"] is None
    assert f">{figures['prompt_tokens']:,}<" in page and "Prefix-cache hits" in page


class FakeModel(LazyModel):
    """A LazyModel whose load waits for the test, then fails: nothing is loaded, nothing listens."""

    def __init__(self) -> None:
        super().__init__("fake-model")
        self.release = threading.Event()
        self.calls = 0

    def ensure(self) -> None:
        self.calls += 1
        self.release.wait(30)
        raise RuntimeError(f"no weights {HOSTILE}")


def wait_for(condition: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_load_now_starts_the_embedded_model_in_the_background() -> None:
    model = FakeModel()
    with ui_client(model.target(), model) as http:
        before = http.get("/api/v1/model").json()
        assert before["kind"] == "embedded" and before["state"] == "not loaded" and before["model"] == "fake-model"
        assert before["models_error"] == "the model is not loaded"
        page = http.get("/model").text
        assert 'id="load-now"' in page and "embedded, on" in page
        started = http.post("/api/v1/model/load", headers={"Origin": ORIGIN})
        assert started.status_code == 202 and started.json()["state"] == "loading"
        assert http.post("/api/v1/model/load", headers={"Origin": ORIGIN}).json()["state"] == "loading"
        assert model.calls == 1  # one load at a time
        model.release.set()
        wait_for(lambda: model.state == "failed")
        failed = http.get("/api/v1/model").json()
        assert failed["state"] == "failed" and f"RuntimeError: no weights {HOSTILE}" == failed["error"]
        page = http.get("/model").text
        assert HOSTILE not in page and "no weights &lt;script&gt;" in page
        assert http.post("/api/v1/model/load", headers={"Origin": ORIGIN}).status_code == 202  # tries again
        wait_for(lambda: model.calls == 2)
        foreign = http.post("/api/v1/model/load", headers={"Origin": "http://evil.example"})
        assert foreign.status_code == 403


def test_load_now_loads_the_tiny_model(tiny_model_dir: Path) -> None:
    model = LazyModel(str(tiny_model_dir))
    try:
        with ui_client(model.target(), model) as http:
            assert http.post("/api/v1/model/load", headers={"Origin": ORIGIN}).status_code == 202
            wait_for(lambda: model.state == "ready", timeout=120)
            status = http.get("/api/v1/model").json()
    finally:
        model.close()
    assert status["state"] == "ready" and status["context_length"] == 4096
    assert status["base_url"] == f"http://127.0.0.1:{model.port}/v1" and status["models"] == [status["model"]]
    assert status["metrics"] is not None and status["metrics"]["queue_depth"] == 0


class CountingModel(LazyModel):
    """The real LazyModel, counting its loads."""

    calls = 0

    def ensure(self) -> None:
        self.calls += 1
        super().ensure()


def test_load_now_tries_again_after_the_engine_failed(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")  # a model folder whose files do not load
    model = CountingModel(str(tmp_path))
    try:
        with ui_client(model.target(), model) as http:
            http.post("/api/v1/model/load", headers={"Origin": ORIGIN})
            wait_for(lambda: model.state == "failed", timeout=60)
            first = http.get("/api/v1/model").json()
            assert first["state"] == "failed" and "could not load" in first["error"]
            assert http.post("/api/v1/model/load", headers={"Origin": ORIGIN}).status_code == 202
            wait_for(lambda: model.calls == 2 and model.state == "failed", timeout=60)
    finally:
        model.close()
