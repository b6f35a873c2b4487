"""The web UI (`autoqwen ui`) without a browser: pages, the mounted workflows API, the access guard, lazy model.

Runs go to tests/openai_stub.py's scripted server (one fixed reply), or to the tiny model started lazily.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from openai_stub import serve_stub
from typer.testing import CliRunner
from workflow_samples import ENDLESS, PAIR

from autoqwen.cli import app as cli_app
from autoqwen.paths import user_workflows_dir
from autoqwen.ui import COOKIE, GuardConfig, LazyModel, create_ui_app
from autoqwen.workflows.live_runs import LiveRuns, RunTarget
from autoqwen.workflows.store import SessionStore

HOSTILE = "<script>alert(1)</script>"
ORIGIN = "http://127.0.0.1"


def client_for(runs: LiveRuns, token: str | None = None) -> TestClient:
    return TestClient(create_ui_app(runs, GuardConfig(token=token), model_label="stub"), base_url=ORIGIN)


@pytest.fixture
def runs() -> Iterator[LiveRuns]:
    folder = user_workflows_dir()
    folder.mkdir(parents=True)
    (folder / "pair.yaml").write_text(PAIR)
    (folder / "long.yaml").write_text(ENDLESS)
    with serve_stub(f"Hi {HOSTILE}") as stub:
        live = LiveRuns(RunTarget(stub.base_url, "stub", "k"), SessionStore())
        try:
            yield live
        finally:
            live.close()
            live.store.close()


def sse_events(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    events, name = [], ""
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            events.append((name, json.loads(line.removeprefix("data: "))))
    return events


def run_pair(http: TestClient, **extra: Any) -> list[tuple[str, dict[str, Any]]]:
    body = {"inputs": {"topic": "dogs"}, "stream": True, **extra}
    with http.stream("POST", "/api/v1/workflows/pair/runs", json=body, headers={"Origin": ORIGIN}) as response:
        assert response.status_code == 200, response.read()
        return sse_events(response)


def test_pages_render_with_one_navigation(runs: LiveRuns) -> None:
    with client_for(runs) as http:
        assert http.get("/", follow_redirects=False).headers["location"] == "/workflows"
        listed = http.get("/workflows").text
        assert "write-review" in listed and "Two agents talk." in listed and 'href="/workflows/pair"' in listed
        detail = http.get("/workflows/pair").text
        for shown in ("alice", "You answer.", "round_robin, at most 2 turns", "read-only", "task: Talk about {topic}."):
            assert shown in detail, shown
        playground = http.get("/playground?workflow=pair").text
        assert 'data-workflow="pair"' in playground and ">cats</textarea>" in playground
        assert 'id="max-turns"' in playground and 'value="2"' in playground and "/static/ui.js" in playground
        assert "No sessions yet" in http.get("/sessions").text
        for page in ("/workflows", "/playground", "/sessions"):
            text = http.get(page).text
            assert all(f'href="{link}"' in text for link in ("/workflows", "/playground", "/sessions")), page
        assert "textContent" in http.get("/static/ui.js").text


def test_a_run_streams_and_its_session_page_escapes_model_text(runs: LiveRuns) -> None:
    with client_for(runs) as http:
        events = run_pair(http, max_turns=2)
        assert [name for name, _ in events] == ["session", "message", "message", "message", "end"]
        assert events[2][1]["source"] == "alice" and HOSTILE in events[2][1]["content"]
        session_id = events[0][1]["session_id"]
        assert events[-1][1]["status"] == "finished" and events[-1][1]["turns"] == 2
        page = http.get(f"/sessions/{session_id}").text
        listing = http.get("/sessions").text
    assert HOSTILE not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "alice" in page and "bob" in page and "Talk about dogs." in page and "finished" in page
    assert f'href="/sessions/{session_id}"' in listing and HOSTILE not in listing


def test_stop_cancels_a_live_run_and_keeps_its_session(runs: LiveRuns) -> None:
    with client_for(runs) as http:
        body = {"stream": True, "max_turns": 100}
        with http.stream("POST", "/api/v1/workflows/long/runs", json=body, headers={"Origin": ORIGIN}) as response:
            lines = response.iter_lines()
            assert next(lines) == "event: session"
            session_id = json.loads(next(lines).removeprefix("data: "))["session_id"]
            stopped = http.post(f"/api/v1/sessions/{session_id}/cancel", headers={"Origin": ORIGIN})
            assert stopped.status_code == 200 and stopped.json()["status"] == "stopped"
            rest = "\n".join(lines)
        assert "event: end" in rest and '"status": "stopped"' in rest
        assert "stopped" in http.get(f"/sessions/{session_id}").text


def test_unknown_workflow_and_session_are_clear_json_errors(runs: LiveRuns) -> None:
    with client_for(runs) as http:
        response = http.post("/api/v1/workflows/nope/runs", json={"stream": True})
        assert response.status_code == 404 and response.json()["error"]["code"] == "workflow_not_found"
        assert "no workflow named 'nope'" in response.json()["error"]["message"]
        response = http.get("/api/v1/sessions/nope")
        assert response.status_code == 404 and response.json()["error"]["code"] == "session_not_found"
        response = http.post("/api/v1/workflows/pair/runs", json={"inputs": {"colour": "red"}})
        assert response.status_code == 400 and response.json()["error"]["param"] == "inputs.colour"
        assert http.post("/api/v1/workflows/pair/runs", content=b"{").status_code == 400
        tag = "<img src=x onerror=alert(1)>"
        page = http.get(f"/workflows/{tag}")
        assert page.status_code == 404 and tag not in page.text and "no workflow named &#39;&lt;img src=x" in page.text
        assert http.get("/sessions/nope").status_code == 404
        assert http.get("/api/v1/nothing").json()["error"]["message"] == "Not Found"


def test_a_token_is_needed_for_every_page_and_call_when_set(runs: LiveRuns) -> None:
    with client_for(runs, token="s3cret") as http:
        for path in ("/workflows", "/sessions", "/api/v1/workflows", "/static/ui.js"):
            refused = http.get(path)
            assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_token", path
        assert http.get("/workflows", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert http.get("/api/v1/workflows", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        link = http.get("/playground?token=s3cret&workflow=pair", follow_redirects=False)
        assert link.status_code == 303 and link.headers["location"] == "/playground?workflow=pair"
        cookie = link.headers["set-cookie"]
        assert f"{COOKIE}=s3cret" in cookie and "samesite=strict" in cookie.lower() and "httponly" in cookie.lower()
        assert http.get("/sessions").status_code == 200  # the client kept the cookie
        assert run_pair(http)[-1][1]["status"] == "finished"


def test_cross_site_writes_and_foreign_hosts_are_refused(runs: LiveRuns) -> None:
    with client_for(runs) as http:
        url = "/api/v1/workflows/pair/runs"
        for headers in ({"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}):
            refused = http.post(url, json={}, headers=headers)
            assert refused.status_code == 403 and refused.json()["error"]["code"] == "cross_site", headers
        refused = http.post("/api/v1/sessions/abc/cancel", headers={"Sec-Fetch-Site": "same-site"})
        assert refused.status_code == 403
        assert runs.store.list_sessions() == []  # nothing ran
        same = http.post("/api/v1/sessions/abc/cancel", headers={"Origin": ORIGIN, "Sec-Fetch-Site": "same-origin"})
        assert same.status_code == 404  # through the guard, to the API
        rebound = http.get("/workflows", headers={"Host": "evil.example:8081"})
        assert rebound.status_code == 403 and "localhost" in rebound.json()["error"]["message"]


def test_the_cli_refuses_a_public_address_without_a_token() -> None:
    result = CliRunner().invoke(cli_app, ["ui", "--host", "0.0.0.0", "--base-url", "http://127.0.0.1:9/v1"])
    assert result.exit_code == 1 and "without an access token" in result.output


def test_the_embedded_model_starts_on_the_first_run(tiny_model_dir: Path) -> None:
    folder = user_workflows_dir()
    folder.mkdir(parents=True)
    (folder / "pair.yaml").write_text(PAIR)
    model = LazyModel(str(tiny_model_dir))
    live = LiveRuns(model.target(), SessionStore())
    try:
        with client_for(live) as http:
            assert model.state == "not loaded"
            assert http.get("/workflows").status_code == 200 and model.state == "not loaded"
            events = run_pair(http, seed=1)
        assert model.state == "ready"
        assert [name for name, _ in events][-1] == "end" and events[-1][1]["status"] == "finished"
        assert [data["source"] for name, data in events if name == "message"] == ["user", "alice", "bob"]
    finally:
        live.close()
        live.store.close()
        model.close()


def test_a_json_body_past_the_cap_is_refused_before_it_reaches_a_route(runs: LiveRuns) -> None:
    from autoqwen.ui.guard import MAX_JSON_BYTES

    client = client_for(runs)
    huge = json.dumps({"inputs": {"topic": "x" * MAX_JSON_BYTES}})
    answer = client.post("/api/v1/workflows/pair/runs", content=huge, headers={"Content-Type": "application/json"})
    assert answer.status_code == 413 and answer.json()["error"]["code"] == "body_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"inputs": {"topic": "'
        for _ in range(MAX_JSON_BYTES // 65536 + 1):
            yield b"x" * 65536
        yield b'"}}'

    answer = client.post("/api/v1/workflows/pair/runs", content=chunks(), headers={"Content-Type": "application/json"})
    assert answer.status_code == 413 and answer.json()["error"]["code"] == "body_too_large"


def test_the_token_cookie_is_found_beside_other_apps_odd_cookies(runs: LiveRuns) -> None:
    client = client_for(runs, token="s3cret")
    answer = client.get("/api/v1/workflows", headers={"Cookie": f"a b=c; {COOKIE}=s3cret; x=1"})
    assert answer.status_code == 200
