"""Workflow runs against the tiny model's real loopback server: teams, human modes, tools, code, the store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner
from workflow_samples import PAIR

from autoqwen.cli import app
from autoqwen.local_llm import EmbeddedServer
from autoqwen.skills import load_skills
from autoqwen.workflows.errors import RunError
from autoqwen.workflows.loader import load_workflow
from autoqwen.workflows.runner import RunOptions, run_workflow
from autoqwen.workflows.store import SessionStore


def flow(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "flow.yaml"
    path.write_text(text)
    return path


def run(tmp_path: Path, text: str, server: EmbeddedServer, **options: object) -> tuple[object, SessionStore]:
    spec = load_workflow(flow(tmp_path, text), skills=load_skills())
    store = SessionStore()
    seen: list[object] = []
    result = run_workflow(
        spec,
        RunOptions(base_url=server.base_url, **options),
        store=store,
        on_message=seen.append,  # type: ignore[arg-type]
    )
    assert [m.seq for m in store.get_messages(result.session_id)] == [m.seq for m in seen]  # type: ignore[attr-defined]
    return result, store


def test_round_robin_run_is_stored_message_by_message(tmp_path: Path, tiny_server: EmbeddedServer) -> None:
    result, store = run(tmp_path, PAIR, tiny_server, inputs={"topic": "dogs"}, seed=1)
    assert result.by_cap and result.status == "finished" and result.turns == 2  # type: ignore[attr-defined]
    session = store.get_session(result.session_id)  # type: ignore[attr-defined]
    assert session.workflow == "pair" and session.inputs == {"topic": "dogs"} and session.status == "finished"
    assert session.model == tiny_server.engine.model_id and session.spec["team"]["max_turns"] == 2
    messages = store.get_messages(session.id)
    assert [(m.source, m.type) for m in messages] == [("user", "text"), ("alice", "text"), ("bob", "text")]
    assert messages[0].content == "Talk about dogs."
    assert all(m.completion_tokens > 0 for m in messages[1:])
    assert "Maximum number of turns 2" in str(session.stop_reason)


def test_max_turns_option_caps_the_run(tmp_path: Path, tiny_server: EmbeddedServer) -> None:
    result, _ = run(tmp_path, PAIR, tiny_server, max_turns=1)
    assert result.turns == 1  # type: ignore[attr-defined]


def test_missing_and_unknown_inputs_are_refused(tmp_path: Path, tiny_server: EmbeddedServer) -> None:
    text = PAIR.replace("topic: {default: cats}", "topic: {description: required}")
    with pytest.raises(RunError, match="input 'topic' is required: pass --input topic="):
        run(tmp_path, text, tiny_server)
    with pytest.raises(RunError, match="unknown input 'colour'"):
        run(tmp_path, PAIR, tiny_server, inputs={"colour": "red"})
    assert SessionStore().list_sessions() == []


HUMAN = """\
name: human
agents:
  - {name: helper, max_tokens: 3}
  - {name: person, kind: user_proxy, auto_reply: carry on}
team: {type: two_agent, max_turns: 4}
termination: {text: null}
task: Hello.
"""


def test_human_always_asks_the_person(tmp_path: Path, tiny_server: EmbeddedServer) -> None:
    answers = iter(["first answer", "second answer"])
    result, store = run(tmp_path, HUMAN, tiny_server, human="always", input_func=lambda _: next(answers))
    said = [m.content for m in store.get_messages(result.session_id) if m.source == "person"]  # type: ignore[attr-defined]
    assert said == ["first answer", "second answer"]


def test_human_never_uses_the_auto_reply(tmp_path: Path, tiny_server: EmbeddedServer) -> None:
    def no_human(prompt: str) -> str:
        raise AssertionError("nobody should be asked")

    result, store = run(tmp_path, HUMAN, tiny_server, input_func=no_human)
    said = [m.content for m in store.get_messages(result.session_id) if m.source == "person"]  # type: ignore[attr-defined]
    assert said == ["carry on", "carry on"]


def test_human_terminate_gives_feedback_then_ends(tmp_path: Path, tiny_server: EmbeddedServer) -> None:
    answers = iter(["try again", ""])
    result, store = run(tmp_path, PAIR, tiny_server, human="terminate", input_func=lambda _: next(answers))
    messages = store.get_messages(result.session_id)  # type: ignore[attr-defined]
    assert [m.content for m in messages if m.source == "user"] == ["Talk about cats.", "try again"]
    assert len(messages) == 6


CODE = """\
name: code-test
agents:
  - {name: person, kind: user_proxy}
  - {name: executor, kind: code_executor, timeout_s: 20}
team: {type: two_agent, max_turns: 2}
termination: {text: null}
task: Run my code.
"""
PROGRAM = "```python\nprint(6 * 7)\nopen('made.txt', 'w').write('hi')\n```"


def test_code_execution_is_off_unless_asked(tmp_path: Path, tiny_server: EmbeddedServer) -> None:
    result, store = run(tmp_path, CODE, tiny_server, human="always", input_func=lambda _: PROGRAM)
    reply = [m for m in store.get_messages(result.session_id) if m.source == "executor"]  # type: ignore[attr-defined]
    assert "--execute-code" in reply[-1].text()
    assert store.session_files(result.session_id) == []  # type: ignore[attr-defined]


def test_code_runs_in_the_session_folder_when_enabled(tmp_path: Path, tiny_server: EmbeddedServer) -> None:
    result, store = run(tmp_path, CODE, tiny_server, human="always", input_func=lambda _: PROGRAM, execute_code=True)
    reply = [m for m in store.get_messages(result.session_id) if m.source == "executor"]  # type: ignore[attr-defined]
    assert "42" in reply[-1].text()
    assert (store.work_dir(result.session_id) / "made.txt").read_text() == "hi"  # type: ignore[attr-defined]


TOOLS = """\
name: tools
agents:
  - {name: picker, skills: [pick], max_tokens: 120, temperature: 0}
team: {type: round_robin, max_turns: 1}
termination: {after: [picker]}
task: Pick a colour with pick.
"""
PICK = '''
from typing import Literal
from autoqwen.skills import skill

@skill
def pick(color: Literal["red", "green"]) -> str:
    """Pick a colour."""
    return f"picked {color}!"
'''


def test_an_assistant_calls_a_skill_and_answers(tmp_path: Path, tiny_server: EmbeddedServer) -> None:
    from autoqwen.skills import user_skills_dir

    user_skills_dir().mkdir(parents=True)
    (user_skills_dir() / "pick.py").write_text(PICK)
    result, store = run(tmp_path, TOOLS, tiny_server)
    kinds = [(m.source, m.type) for m in store.get_messages(result.session_id)]  # type: ignore[attr-defined]
    assert kinds == [("user", "text"), ("picker", "tool_call"), ("picker", "tool_result"), ("picker", "text")]
    call, outcome = store.get_messages(result.session_id)[1:3]  # type: ignore[attr-defined]
    assert call.content[0]["name"] == "pick" and json.loads(call.content[0]["arguments"])["color"] in ("red", "green")
    assert outcome.content[0]["content"].startswith("picked ") and not outcome.content[0]["is_error"]
    assert not result.by_cap  # type: ignore[attr-defined]


def test_selector_team_runs(tmp_path: Path, tiny_server: EmbeddedServer) -> None:
    text = PAIR.replace("round_robin", "selector")
    text = text.replace("agents:\n", "agents:\n  - {name: carol, max_tokens: 4}\n")
    result, store = run(tmp_path, text, tiny_server, seed=3)
    assert result.turns == 2  # type: ignore[attr-defined]
    assert {m.source for m in store.get_messages(result.session_id)} - {"user"} <= {"alice", "bob", "carol"}  # type: ignore[attr-defined]


def test_a_dead_server_fails_the_session_clearly(tmp_path: Path) -> None:
    dead = EmbeddedServer.__new__(EmbeddedServer)
    dead.host, dead.port = "127.0.0.1", 9  # discard port: nothing listens
    with pytest.raises(RunError, match="the run failed") as info:
        run(tmp_path, PAIR, dead, model="m")
    session = SessionStore().get_session(str(info.value.session_id))
    assert session.status == "failed" and session.error


def test_external_model_needs_its_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MY_KEY", raising=False)
    text = PAIR + "model: {base_url: 'http://127.0.0.1:9/v1', model: m, api_key_env: MY_KEY}\n"
    spec = load_workflow(flow(tmp_path, text))
    with pytest.raises(Exception, match="set the environment variable MY_KEY"):
        run_workflow(spec, RunOptions(), store=SessionStore())


def test_cli_run_json_events(tmp_path: Path, tiny_server: EmbeddedServer) -> None:
    path = flow(tmp_path, PAIR)
    result = CliRunner().invoke(
        app, ["run", str(path), "--base-url", tiny_server.base_url, "--input", "topic=owls", "--json"]
    )
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert [e["event"] for e in events] == ["message", "message", "message", "end"]
    assert events[0]["content"] == "Talk about owls." and events[-1]["turns"] == 2
    assert SessionStore().get_session(events[-1]["session_id"]).status == "finished"


def test_cli_run_prints_the_transcript_and_a_summary(tmp_path: Path, tiny_server: EmbeddedServer) -> None:
    result = CliRunner().invoke(app, ["run", str(flow(tmp_path, PAIR)), "--base-url", tiny_server.base_url])
    assert result.exit_code == 0, result.output
    assert "alice" in result.output and "finished after 2 turns" in result.output and "session: " in result.output
    bad = CliRunner().invoke(app, ["run", str(flow(tmp_path, PAIR)), "--input", "nokey"])
    assert bad.exit_code == 2 and "--input" in bad.output and "expected KEY=VALUE, got 'nokey'" in bad.output


def test_resume_continues_a_stopped_session(tmp_path: Path, tiny_server: EmbeddedServer) -> None:
    first, store = run(tmp_path, PAIR, tiny_server, max_turns=1)
    before = store.get_messages(first.session_id)  # type: ignore[attr-defined]
    store.finish_session(first.session_id, "stopped", stop_reason="stopped by the user (Ctrl-C)")  # type: ignore[attr-defined]
    result = CliRunner().invoke(
        app,
        [
            "run",
            "--resume",
            first.session_id,
            "--base-url",
            tiny_server.base_url,  # type: ignore[attr-defined]
            "--max-turns",
            "2",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    after = SessionStore().get_messages(first.session_id)  # type: ignore[attr-defined]
    assert after[: len(before)] == before and len(after) == len(before) + 2
    assert all(m.source != "user" for m in after[len(before) :])
    session = SessionStore().get_session(first.session_id)  # type: ignore[attr-defined]
    assert session.status == "finished" and session.turns == 3


def test_resume_needs_a_known_session_and_not_both(tmp_path: Path, tiny_server: EmbeddedServer) -> None:
    missing = CliRunner().invoke(app, ["run", "--resume", "20990101-000000-abcd", "--base-url", tiny_server.base_url])
    assert missing.exit_code == 1 and "20990101-000000-abcd" in missing.output
    both = CliRunner().invoke(app, ["run", "write-review", "--resume", "x"])
    assert both.exit_code == 2 and "--resume SESSION_ID" in both.output


def test_ctrl_c_stops_cleanly_and_keeps_the_session(tmp_path: Path, tiny_server: EmbeddedServer) -> None:
    import signal
    import subprocess
    import sys
    import time

    text = PAIR.replace("max_turns: 2", "max_turns: 100").replace("max_tokens: 4", "max_tokens: 30")
    proc = subprocess.Popen(
        [sys.executable, "-m", "autoqwen", "run", str(flow(tmp_path, text)), "--base-url", tiny_server.base_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    store = SessionStore()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        sessions = store.list_sessions()
        if sessions and sessions[0].turns >= 2:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, output
    assert "stopped" in output and "Traceback" not in output
    session = store.list_sessions()[0]
    assert session.status == "stopped" and session.turns >= 2


def test_autogen_messages_are_stored_by_their_type() -> None:
    from autogen_agentchat import messages as m
    from autogen_core import FunctionCall
    from autogen_core.models import FunctionExecutionResult

    from autoqwen.workflows.runner import _content, _kind

    call = m.ToolCallRequestEvent(content=[FunctionCall(id="1", name="pick", arguments="{}")], source="a")
    done = m.ToolCallExecutionEvent(
        content=[FunctionExecutionResult(call_id="1", name="pick", content="red", is_error=False)], source="a"
    )
    assert (_kind(call), _content(call)) == ("tool_call", [{"id": "1", "name": "pick", "arguments": "{}"}])
    assert (_kind(done), _content(done)) == (
        "tool_result",
        [{"call_id": "1", "name": "pick", "content": "red", "is_error": False}],
    )
    kinds = [
        (m.TextMessage(content="hi", source="a"), "text"),
        (m.ToolCallSummaryMessage(content="red", source="a", tool_calls=[], results=[]), "text"),
        (m.HandoffMessage(content="yours", target="b", source="a"), "handoff"),
        (m.StopMessage(content="done", source="a"), "system"),
        (m.ThoughtEvent(content="hmm", source="a"), "other"),
        (m.ModelClientStreamingChunkEvent(content="h", source="a"), None),  # parts of a message stored whole
        (m.UserInputRequestedEvent(request_id="r", source="a"), None),
    ]
    for event, kind in kinds:
        assert _kind(event) == kind, type(event).__name__
    assert _content(m.TextMessage(content="hi", source="a")) == "hi"
