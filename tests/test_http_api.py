"""Workflows over HTTP (`autoqwen serve`): runs as SSE or JSON, sessions, cancel, and `workflow:NAME` as a model.

Each test serves the tiny model with the workflow routes mounted, the way `autoqwen serve` does, on loopback with
an API key; runs reach that same server over HTTP.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest
import uvicorn
from workflow_samples import LONG, PAIR

from autoqwen.local_llm import Engine, ServerConfig, create_app
from autoqwen.paths import user_workflows_dir
from autoqwen.workflows.http_api import workflow_router
from autoqwen.workflows.live_runs import LiveRuns, RunTarget
from autoqwen.workflows.store import SessionStore
from autoqwen.workflows.workflow_models import WorkflowModels

KEY = "secret"
NEEDY = PAIR.replace("name: pair", "name: needy").replace("topic: {default: cats}", "topic: {description: A topic}")


@dataclass
class Served:
    base_url: str
    runs: LiveRuns

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60)

    def wait_ended(self, session_id: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self.client() as http:
            while time.monotonic() < deadline:
                record = http.get(f"/sessions/{session_id}").json()
                if record["session"]["status"] != "running":
                    return record  # type: ignore[no-any-return]
                time.sleep(0.05)
        raise AssertionError(f"session {session_id} still running")


@pytest.fixture
def served(tiny_engine: Engine) -> Iterator[Served]:
    folder = user_workflows_dir()
    folder.mkdir(parents=True)
    for text in (PAIR, NEEDY, LONG):
        (folder / f"{text.split()[1]}.yaml").write_text(text)
    runs = LiveRuns(RunTarget("http://127.0.0.1:1/v1"), SessionStore())
    app = create_app(tiny_engine, ServerConfig(api_keys=(KEY,)), providers=[WorkflowModels(runs)])
    app.include_router(workflow_router(runs))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    base_url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}/v1"
    runs.target = RunTarget(base_url, tiny_engine.model_id, KEY, tiny_engine.wait_ready)
    try:
        yield Served(base_url, runs)
    finally:
        runs.close()
        server.should_exit = True
        thread.join(10)
        runs.store.close()


def sse_events(response: httpx.Response) -> Iterator[tuple[str, dict[str, Any]]]:
    name = ""
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            yield name, json.loads(line.removeprefix("data: "))


def test_workflows_are_listed_with_their_inputs_and_model_name(served: Served) -> None:
    with served.client() as http:
        listed = {w["name"]: w for w in http.get("/workflows").json()["data"]}
    assert listed["pair"]["source"] == "user" and listed["pair"]["description"] == "Two agents talk."
    assert listed["pair"]["inputs"]["topic"] == {"description": "", "default": "cats", "required": False}
    assert listed["needy"]["inputs"]["topic"]["required"] is True
    assert listed["pair"]["model"] == "workflow:pair" and "write-review" in listed


def test_a_run_streams_its_events_and_is_stored(served: Served) -> None:
    with served.client() as http:
        request = {"inputs": {"topic": "dogs"}, "seed": 1, "stream": True}
        with http.stream("POST", "/workflows/pair/runs", json=request) as response:
            assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
            events = list(sse_events(response))
    names = [name for name, _ in events]
    assert names == ["session", "message", "message", "message", "end"]
    session_id = events[0][1]["session_id"]
    assert response.headers["x-autoqwen-session"] == session_id
    assert [data["source"] for _, data in events[1:4]] == ["user", "alice", "bob"]
    assert events[1][1]["content"] == "Talk about dogs."
    end = events[-1][1]
    assert end["session_id"] == session_id and end["status"] == "finished" and end["turns"] == 2 and end["by_cap"]
    with served.client() as http:
        record = http.get(f"/sessions/{session_id}").json()
        listed = http.get("/sessions").json()["data"]
    assert record["session"]["status"] == "finished" and record["session"]["inputs"] == {"topic": "dogs"}
    assert [m["source"] for m in record["messages"]] == ["user", "alice", "bob"]
    assert [s["id"] for s in listed] == [session_id]


def test_a_run_without_stream_answers_one_json_result(served: Served) -> None:
    with served.client() as http:
        response = http.post("/workflows/pair/runs", json={"max_turns": 1})
    assert response.status_code == 200
    result = response.json()
    assert result["status"] == "finished" and result["turns"] == 1
    assert [m["source"] for m in result["messages"]] == ["user", "alice"]
    assert result["messages"][0]["content"] == "Talk about cats."


@pytest.mark.parametrize(
    ("path", "body", "status", "param", "words"),
    [
        ("/workflows/nope/runs", {}, 404, "name", "no workflow named 'nope'"),
        ("/workflows/..%2F..%2Fetc%2Fpasswd/runs", {}, 404, None, ""),
        ("/workflows/pair/runs", {"inputs": {"colour": "red"}}, 400, "inputs.colour", "takes no such input"),
        ("/workflows/needy/runs", {}, 400, "inputs.topic", "required"),
        ("/workflows/pair/runs", {"max_turns": 0}, 400, "max_turns", ""),
        ("/workflows/pair/runs", {"human": "sometimes"}, 400, "human", ""),
        ("/workflows/pair/runs", {"humans": "always"}, 400, "humans", ""),
        ("/sessions/20250101-000000-abcd/cancel", None, 404, "session_id", "no session"),
    ],
)
def test_bad_requests_get_openai_style_errors(
    served: Served, path: str, body: dict[str, Any] | None, status: int, param: str | None, words: str
) -> None:
    with served.client() as http:
        response = http.post(path, json=body)
    assert response.status_code == status
    error = response.json()["error"]
    assert words in error["message"] and (param is None or error["param"] == param)
    assert served.runs.store.list_sessions() == []


def test_unknown_sessions_are_404_and_the_api_key_is_required(served: Served) -> None:
    with served.client() as http:
        assert http.get("/sessions/20250101-000000-abcd").status_code == 404
        assert http.get("/sessions/bad id!").json()["error"]["code"] == "session_not_found"
    for path in ("/workflows", "/sessions"):
        response = httpx.get(served.base_url + path)
        assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"
    assert httpx.post(served.base_url + "/workflows/pair/runs", json={}).status_code == 401
    assert served.runs.store.list_sessions() == []


def test_a_run_goes_on_when_its_client_leaves(served: Served) -> None:
    with served.client() as http, http.stream("POST", "/workflows/pair/runs", json={"stream": True}) as response:
        name, data = next(sse_events(response))
        assert name == "session"
    record = served.wait_ended(data["session_id"])  # the client is gone; the run is not
    assert record["session"]["status"] == "finished"
    assert [m["source"] for m in record["messages"]] == ["user", "alice", "bob"]


def test_cancel_stops_a_run_and_the_session_shows_it(served: Served) -> None:
    with served.client() as http, http.stream("POST", "/workflows/long/runs", json={"stream": True}) as response:
        events = sse_events(response)
        session_id = next(events)[1]["session_id"]
        assert next(events)[0] == "message"
        cancelled = http.post(f"/sessions/{session_id}/cancel").json()
        rest = list(events)
    assert cancelled["status"] == "stopped" and cancelled["stop_reason"] == "cancelled"
    assert rest[-1][0] == "end" and rest[-1][1]["status"] == "stopped" and rest[-1][1]["turns"] < 100
    with served.client() as http:
        again = http.post(f"/sessions/{session_id}/cancel")
    assert again.status_code == 409 and again.json()["error"]["code"] == "session_not_running"


def test_a_workflow_answers_as_an_openai_model(served: Served) -> None:
    client = openai.OpenAI(base_url=served.base_url, api_key=KEY, max_retries=0)
    models = {m.id: m for m in client.models.list().data}
    assert models["workflow:pair"].model_dump()["function_calling"] is False
    reply = client.chat.completions.create(
        model="workflow:pair", messages=[{"role": "user", "content": "Plan a {trip}"}], seed=0
    )
    extra = reply.model_dump()["autoqwen"]
    assert reply.id == f"chatcmpl-workflow-{extra['session_id']}" and extra["status"] == "finished"
    messages = served.runs.store.get_messages(extra["session_id"])
    assert messages[0].content == "Plan a {trip}" and [m.source for m in messages] == ["user", "alice", "bob"]
    assert reply.choices[0].message.content == messages[-1].content
    assert reply.usage is not None and reply.usage.completion_tokens == sum(m.completion_tokens for m in messages)


def test_a_workflow_model_streams_its_final_message(served: Served) -> None:
    client = openai.OpenAI(base_url=served.base_url, api_key=KEY, max_retries=0)
    stream = client.chat.completions.create(
        model="workflow:pair",
        messages=[{"role": "system", "content": "ignored"}, {"role": "user", "content": "Hello"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    session_id = chunks[0].model_dump()["autoqwen"]["session_id"]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    messages = served.runs.store.get_messages(session_id)
    assert text == messages[-1].content and messages[0].content == "Hello"
    assert chunks[-2].choices[0].finish_reason == "stop" and chunks[-1].usage is not None


def test_workflow_model_errors_are_openai_errors(served: Served) -> None:
    client = openai.OpenAI(base_url=served.base_url, api_key=KEY, max_retries=0)
    with pytest.raises(openai.NotFoundError, match="no workflow named 'nope'"):
        client.chat.completions.create(model="workflow:nope", messages=[{"role": "user", "content": "Hi"}])
    with pytest.raises(openai.BadRequestError, match="needs a user message"):
        client.chat.completions.create(model="workflow:pair", messages=[{"role": "system", "content": "Hi"}])
    assert served.runs.store.list_sessions() == []


def test_the_openapi_description_documents_the_routes(served: Served) -> None:
    spec = httpx.get(served.base_url.removesuffix("/v1") + "/openapi.json").json()
    for path in ("/v1/workflows", "/v1/workflows/{name}/runs", "/v1/sessions/{session_id}/cancel"):
        assert path in spec["paths"]
    for path in ("/v1/sessions/{session_id}/events", "/v1/sessions/{session_id}/input"):
        assert path in spec["paths"]
    assert (
        "text/event-stream" in spec["paths"]["/v1/sessions/{session_id}/resume"]["post"]["responses"]["200"]["content"]
    )
    for schema in ("RunRequest", "ResumeRequest", "InputAnswer"):
        assert schema in spec["components"]["schemas"]
    assert spec["components"]["schemas"]["RunRequest"]["properties"]["human"]["default"] == "never"


def test_a_session_replays_its_events_and_resumes_over_http(served: Served) -> None:
    with served.client() as http:
        with http.stream("POST", "/workflows/pair/runs", json={"stream": True}) as response:
            ran = list(sse_events(response))
        session_id = ran[0][1]["session_id"]
        with http.stream("GET", f"/sessions/{session_id}/events") as response:
            assert response.headers["x-autoqwen-session"] == session_id
            replayed = list(sse_events(response))
        assert [(name, data.get("seq")) for name, data in replayed] == [(name, data.get("seq")) for name, data in ran]
        assert replayed[-1][1]["status"] == "finished" and replayed[-1][1]["turns"] == 2 and replayed[-1][1]["by_cap"]
        with http.stream("POST", f"/sessions/{session_id}/resume", json={"max_turns": 1, "stream": True}) as response:
            resumed = list(sse_events(response))
        assert [data.get("seq") for name, data in resumed if name == "message"] == [1, 2, 3, 4]
        assert resumed[-1][1]["status"] == "finished" and resumed[-1][1]["turns"] == 3
        assert http.post(f"/sessions/{session_id}/input", json={"request_id": "x", "text": ""}).status_code == 409
        assert http.get("/sessions/20250101-000000-abcd/events").status_code == 404
    assert httpx.get(f"{served.base_url}/sessions/{session_id}/events").status_code == 401


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:1234/v1"),
        ("0.0.0.0", "http://127.0.0.1:1234/v1"),
        ("::", "http://[::1]:1234/v1"),
        ("192.168.1.5", "http://192.168.1.5:1234/v1"),
    ],
)
def test_runs_reach_the_serving_process_at_its_own_address(host: str, url: str) -> None:
    from autoqwen.cli.serve import own_url

    assert own_url(host, 1234) == url
