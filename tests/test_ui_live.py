"""The Playground's live runs without a browser: re-attaching to a run's events, human input, resume, files.

Runs go to tests/openai_stub.py's scripted server. A workflow with a user proxy, asked in `always` mode, waits for
each answer: that holds a run still while the tests attach to it, answer it, or cancel it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from openai_stub import serve_stub
from workflow_samples import ASK, PAIR

from autoqwen.paths import user_workflows_dir
from autoqwen.ui import GuardConfig, create_ui_app
from autoqwen.workflows.event_stream import message_data
from autoqwen.workflows.human_input import HumanInput, InputNotPending
from autoqwen.workflows.live_runs import LiveRuns, RunTarget
from autoqwen.workflows.store import SessionStore

ORIGIN = "http://127.0.0.1"
HEADERS = {"Origin": ORIGIN}
Event = tuple[str, dict[str, Any]]


def make_runs(stub_url: str, **options: Any) -> LiveRuns:
    folder = user_workflows_dir()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pair.yaml").write_text(PAIR)
    (folder / "ask.yaml").write_text(ASK)
    return LiveRuns(RunTarget(stub_url, "stub", "k"), SessionStore(), **options)


@pytest.fixture
def http() -> Iterator[TestClient]:
    with serve_stub("Hi **there**") as stub:
        runs = make_runs(stub.base_url)
        try:
            with TestClient(create_ui_app(runs, GuardConfig()), base_url=ORIGIN) as client:
                yield client
        finally:
            runs.close()
            runs.store.close()


class Events:
    """The events of one open SSE answer, read one at a time."""

    def __init__(self, response: httpx.Response) -> None:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        self._lines = response.iter_lines()

    def next(self) -> Event:
        name = ""
        for line in self._lines:
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                return name, json.loads(line.removeprefix("data: "))
        raise AssertionError("the stream ended")

    def until(self, wanted: str) -> list[Event]:
        """Every event up to and including the next `wanted` one."""
        seen = [self.next()]
        while seen[-1][0] != wanted:
            seen.append(self.next())
        return seen

    def rest(self) -> list[Event]:
        return self.until("end")


def brief(events: list[Event]) -> list[str]:
    """Each event as `name` or `name:source:content` for messages."""
    return [f"{name}:{data['source']}:{data['content']}" if "source" in data else name for name, data in events]


def answer(http: TestClient, session_id: str, request_id: str, text: str) -> httpx.Response:
    body = {"request_id": request_id, "text": text}
    return http.post(f"/api/v1/sessions/{session_id}/input", json=body, headers=HEADERS)


def test_two_listeners_each_get_the_run_from_its_start_and_the_run_outlives_them(http: TestClient) -> None:
    body = {"stream": True, "human": "always"}
    with http.stream("POST", "/api/v1/workflows/ask/runs", json=body, headers=HEADERS) as started:
        run = Events(started)
        first = run.until("input_request")
        session_id = first[0][1]["session_id"]
        assert first[0] == ("session", {"session_id": session_id, "workflow": "ask"})
        request = first[-1][1]
        assert request["prompt"] == "Enter your response: " and request["human"] == "always"
        url = f"/api/v1/sessions/{session_id}/events"
        with http.stream("GET", url) as one, http.stream("GET", url) as two:
            a, b = Events(one), Events(two)
            assert brief(a.until("input_request")) == brief(b.until("input_request")) == brief(first)
            assert answer(http, session_id, request["request_id"], "Shorter, *please*.").status_code == 200
            later = a.until("input_request")
            assert brief(later) == brief(b.until("input_request")) == brief(run.until("input_request"))
            assert brief(later)[0] == "message:you:Shorter, *please*."  # the answer, as the runner stored it
        # Both listeners left; the run waits on. A third one gets it all from the start, answered requests left out.
        with http.stream("GET", url) as three:
            replay = Events(three).until("input_request")
        assert [name for name, _ in replay].count("input_request") == 1
        assert brief(replay) == brief(first[:-1] + later)
        stopped = http.post(f"/api/v1/sessions/{session_id}/cancel", headers=HEADERS)
        assert stopped.status_code == 200 and stopped.json()["status"] == "stopped"
        end = run.rest()[-1]
    assert end[0] == "end" and end[1]["status"] == "stopped" and end[1]["stop_reason"] == "cancelled"
    with http.stream("GET", url) as stored:  # no longer running: the stored session, then its end
        events = Events(stored).rest()
    assert brief(events) == [*brief(first[:-1] + later[:-1]), "end"]
    assert events[-1][1]["status"] == "stopped" and events[-1][1]["turns"] == 3


def test_answers_to_no_pending_request_or_to_another_are_refused(http: TestClient) -> None:
    with http.stream("POST", "/api/v1/workflows/ask/runs", json={"stream": True, "human": "always"}) as started:
        run = Events(started)
        events = run.until("input_request")
        session_id, request_id = events[0][1]["session_id"], events[-1][1]["request_id"]
        wrong = answer(http, session_id, "nope", "hi")
        assert wrong.status_code == 409 and wrong.json()["error"]["code"] == "input_not_pending"
        assert wrong.json()["error"]["param"] == "request_id" and request_id in wrong.json()["error"]["message"]
        assert answer(http, session_id, request_id, "").status_code == 200  # an empty answer is an answer
        again = answer(http, session_id, request_id, "twice")
        assert again.status_code == 409 and again.json()["error"]["code"] == "input_not_pending"
        # Not waiting, or (on a fast machine: the model answered meanwhile) waiting for the next request's answer.
        said = again.json()["error"]["message"]
        assert "not waiting for human input" in said or f"not {request_id!r}" in said, said
        assert run.next() == ("message", run_message(http, session_id, 3))
        http.post(f"/api/v1/sessions/{session_id}/cancel", headers=HEADERS)
        run.rest()
    ended = answer(http, session_id, request_id, "late")
    assert ended.status_code == 409 and ended.json()["error"]["code"] == "session_not_running"
    unknown = answer(http, "20990101-000000-abcd", request_id, "hi")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "session_not_found"
    assert answer(http, "../etc", request_id, "hi").status_code == 404
    missing = http.post(f"/api/v1/sessions/{session_id}/input", json={"text": "hi"}, headers=HEADERS)
    assert missing.status_code == 400 and "request_id" in missing.json()["error"]["message"]


def run_message(http: TestClient, session_id: str, seq: int) -> dict[str, Any]:
    messages = http.get(f"/api/v1/sessions/{session_id}").json()["messages"]
    return next(m for m in messages if m["seq"] == seq)


def test_terminate_asks_for_feedback_when_the_team_stops_and_an_empty_answer_ends_the_run(http: TestClient) -> None:
    body = {"stream": True, "human": "terminate", "max_turns": 2}
    with http.stream("POST", "/api/v1/workflows/ask/runs", json=body, headers=HEADERS) as started:
        run = Events(started)
        first = run.until("input_request")
        assert brief(first[1:]) == [
            "message:user:Write about cats.",
            "message:writer:Hi **there**",
            "message:you:Go on.",
            "input_request",
        ]
        session_id, request = first[0][1]["session_id"], first[-1][1]
        assert request["prompt"] == "Your feedback (empty to finish): " and request["human"] == "terminate"
        assert answer(http, session_id, request["request_id"], "Now about dogs.").status_code == 200
        second = run.until("input_request")
        assert brief(second)[0] == "message:user:Now about dogs."  # feedback: the team's next task
        assert answer(http, session_id, second[-1][1]["request_id"], "").status_code == 200
        end = run.rest()
    assert end[-1][0] == "end" and end[-1][1]["status"] == "finished" and end[-1][1]["turns"] == 4


def test_never_is_the_default_and_a_bad_mode_is_a_400(http: TestClient) -> None:
    with http.stream("POST", "/api/v1/workflows/ask/runs", json={"stream": True}, headers=HEADERS) as started:
        events = Events(started).rest()
    assert "input_request" not in brief(events) and "message:you:Go on." in brief(events)
    refused = http.post("/api/v1/workflows/ask/runs", json={"human": "sometimes"}, headers=HEADERS)
    assert refused.status_code == 400 and "human" in refused.json()["error"]["message"]


def test_a_run_nobody_answers_fails_saying_so() -> None:
    with serve_stub("Hi") as stub:
        runs = make_runs(stub.base_url, answer_timeout=0.3)
        try:
            with TestClient(create_ui_app(runs, GuardConfig()), base_url=ORIGIN) as http:
                body = {"stream": True, "human": "always"}
                with http.stream("POST", "/api/v1/workflows/ask/runs", json=body, headers=HEADERS) as started:
                    end = Events(started).rest()[-1][1]
        finally:
            runs.close()
            runs.store.close()
    assert end["status"] == "failed" and "nobody answered" in end["error"] and "0.3 s" in end["error"]


def test_resume_continues_a_stored_session_as_a_live_run(http: TestClient) -> None:
    with http.stream("POST", "/api/v1/workflows/pair/runs", json={"stream": True}, headers=HEADERS) as started:
        before = Events(started).rest()
    session_id = before[0][1]["session_id"]
    resumed = http.post(f"/api/v1/sessions/{session_id}/resume", json={"max_turns": 2}, headers=HEADERS)
    assert resumed.status_code == 200 and resumed.json() == {"session_id": session_id, "workflow": "pair"}
    with http.stream("GET", f"/api/v1/sessions/{session_id}/events") as attached:
        events = Events(attached).rest()
    # From the session's start: what it said before, then the new turns.
    assert brief(events)[: len(before) - 1] == brief(before[:-1])
    assert len([name for name, _ in events if name == "message"]) == 5
    assert events[-1][1]["status"] == "finished" and events[-1][1]["turns"] == 4
    # Streamed, with no body fields but stream.
    with http.stream("POST", f"/api/v1/sessions/{session_id}/resume", json={"stream": True}, headers=HEADERS) as again:
        assert Events(again).rest()[-1][1]["turns"] == 6
    with http.stream("POST", "/api/v1/workflows/ask/runs", json={"stream": True, "human": "always"}) as started:
        running = Events(started).until("input_request")[0][1]["session_id"]
        busy = http.post(f"/api/v1/sessions/{running}/resume", headers=HEADERS)
        assert busy.status_code == 409 and busy.json()["error"]["code"] == "session_running"
        http.post(f"/api/v1/sessions/{running}/cancel", headers=HEADERS)
    unknown = http.post("/api/v1/sessions/20990101-000000-abcd/resume", json={}, headers=HEADERS)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "session_not_found"
    bad = http.post(f"/api/v1/sessions/{session_id}/resume", json={"inputs": {}}, headers=HEADERS)
    assert bad.status_code == 400


def test_events_of_an_unknown_session_are_a_404_and_the_playground_attaches_by_address(http: TestClient) -> None:
    missing = http.get("/api/v1/sessions/20990101-000000-abcd/events")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "session_not_found"
    assert http.get("/api/v1/sessions/..%2Fx/events").status_code == 404
    with http.stream("POST", "/api/v1/workflows/pair/runs", json={"stream": True}, headers=HEADERS) as started:
        session_id = Events(started).rest()[0][1]["session_id"]
    page = http.get(f"/playground?session={session_id}").text
    assert f'data-session="{session_id}"' in page and 'data-workflow="pair"' in page
    for script in ("/static/vendor/purify.min.js", "/static/vendor/marked.min.js", "/static/markdown.js"):
        assert f'<script src="{script}"></script>' in page
        assert http.get(script).status_code == 200
    assert '<link rel="stylesheet" href="/static/playground.css">' in page
    ask = http.get("/playground?workflow=ask").text
    assert '<option value="always" selected>' in ask and 'id="human-hint"' in ask
    tag = "<img src=x onerror=alert(1)>"
    for session in ("20990101-000000-abcd", tag):
        refused = http.get("/playground", params={"session": session})
        assert refused.status_code == 404 and tag not in refused.text


def test_a_tool_result_lists_the_session_files_it_names() -> None:
    with SessionStore() as store:
        session_id = store.create_session("pair", title="t").id
        folder = store.work_dir(session_id)
        for name in ("chart.png", "a.png", "notes.txt"):
            (folder / name).write_bytes(b"x")
        result = [{"call_id": "c1", "name": "make_chart", "content": f"Saved the line chart to {folder}/chart.png."}]
        message = store.append_message(session_id, "writer", result, type="tool_result")
        assert message_data(store, session_id, message)["files"] == [{"path": "chart.png", "size": 1}]
        text = store.append_message(session_id, "writer", "See chart.png")
        assert "files" not in message_data(store, session_id, text)


def test_human_input_is_refused_out_of_turn_and_gives_up_when_cancelled() -> None:
    import threading

    told: list[tuple[str, Any]] = []
    cancel = threading.Event()
    human = HumanInput(lambda kind, data: told.append((kind, data)), cancel, "always", timeout=30)
    with pytest.raises(InputNotPending, match="not waiting"):
        human.answer("x", "hi")
    answers: list[str] = []
    thread = threading.Thread(target=lambda: answers.append(human("Say? ")))
    thread.start()
    while human.pending is None:
        time.sleep(0.01)
    assert told == [("input_request", {"request_id": human.pending, "prompt": "Say? ", "human": "always"})]
    human.answer(str(human.pending), "yes")
    thread.join(5)
    assert answers == ["yes"] and human.pending is None
    cancel.set()
    started = time.monotonic()
    assert human("Again? ") == ""  # a cancelled run's user proxy gives up quietly (off the event loop)
    assert time.monotonic() - started < 5 and len(told) == 1
