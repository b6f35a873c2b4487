"""A conversation that outgrows the model's context window keeps running: older turns are left out, tool results
shortened first, and the transcript says so (microsoft/autogen#4024: it used to fail the run with a 400)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from autogen_core import FunctionCall
from autogen_core.models import (
    AssistantMessage,
    FunctionExecutionResult,
    FunctionExecutionResultMessage,
    LLMMessage,
    SystemMessage,
    UserMessage,
)
from conftest import build_tiny_model
from openai_stub import models_server

from autoqwen.agents import ContextWindow, TokenEstimate
from autoqwen.agents.context import WindowedContext, fit_messages
from autoqwen.local_llm import EmbeddedServer, Engine, resolve_model
from autoqwen.skills import load_skills
from autoqwen.workflows.loader import load_workflow
from autoqwen.workflows.runner import RunOptions, run_workflow
from autoqwen.workflows.store import SessionStore

WINDOW = 384  # tokens: a few turns of the chat below fill it


def exact() -> TokenEstimate:
    return TokenEstimate(bytes_per_token=1.0)  # one token per byte, so the tests can count


def user(text: str) -> UserMessage:
    return UserMessage(content=text, source="u")


def test_a_conversation_that_fits_is_sent_whole() -> None:
    messages: list[LLMMessage] = [SystemMessage(content="sys"), user("hi"), AssistantMessage(content="yo", source="a")]
    assert fit_messages(messages, 1000, exact()) == (messages, fit_messages([], 1, exact())[1])


def test_tool_results_are_shortened_before_any_turn_is_dropped() -> None:
    call = AssistantMessage(content=[FunctionCall(id="1", name="fetch", arguments="{}")], source="a")
    result = FunctionExecutionResultMessage(
        content=[FunctionExecutionResult(call_id="1", name="fetch", content="x" * 3000, is_error=False)]
    )
    summary = AssistantMessage(content="summary", source="a")
    messages: list[LLMMessage] = [user("task"), call, result, summary, user("go")]
    kept, trim = fit_messages(messages, 600, exact())
    assert (trim.dropped, trim.shortened) == (0, 1) and len(kept) == 5
    shortened = kept[2]
    assert isinstance(shortened, FunctionExecutionResultMessage)
    assert "bytes cut to fit the context window" in shortened.content[0].content
    assert len(shortened.content[0].content) < 400


def test_the_oldest_turns_go_first_and_a_call_leaves_with_its_results() -> None:
    call = AssistantMessage(content=[FunctionCall(id="1", name="f", arguments="{}")], source="a")
    result = FunctionExecutionResultMessage(content=[FunctionExecutionResult(call_id="1", name="f", content="ok")])
    system = SystemMessage(content="You are terse.")
    messages: list[LLMMessage] = [system, user("a" * 100), call, result, user("b" * 100), user("latest " * 20)]
    kept, trim = fit_messages(messages, 290, exact())  # a100 goes; then the call goes, and its result with it
    assert kept[0] == system and kept[-1] == messages[-1]  # the system message and the latest turn stay
    assert not any(isinstance(m, FunctionExecutionResultMessage) for m in kept)  # no result without its call
    assert trim.dropped == 3 and kept == [system, messages[4], messages[5]]
    assert trim.describe(512) == "context trimmed to fit the model's 512-token window: 3 oldest messages left out"


def test_the_latest_turn_keeps_its_tool_call_and_alone_too_long_is_cut_in_the_middle() -> None:
    call = AssistantMessage(content=[FunctionCall(id="1", name="f", arguments="{}")], source="a")
    result = FunctionExecutionResultMessage(content=[FunctionExecutionResult(call_id="1", name="f", content="ok")])
    kept, trim = fit_messages([user("old " * 50), call, result], 60, exact())
    assert kept == [call, result] and trim.dropped == 1
    huge = user("start " + "filler " * 500 + " end")
    kept, trim = fit_messages([huge], 400, exact())
    assert trim.cut == 1 and isinstance(kept[0].content, str)
    assert kept[0].content.startswith("start") and kept[0].content.endswith("end") and len(kept[0].content) < 2000


def test_the_context_reports_each_new_trim_once() -> None:
    notes: list[tuple[str, str]] = []
    window = ContextWindow(tokens=400, on_trim=lambda agent, note: notes.append((agent, note)), estimate=exact())
    context = WindowedContext(window, agent="alice", fixed_text="s" * 50, reserve=100)

    async def grow() -> list[int]:
        sizes = []
        for i in range(6):
            await context.add_message(user(f"{i}" * 100))
            sizes.append(len(await context.get_messages()))
            sizes.append(len(await context.get_messages()))  # asked again: nothing new to say
        return sizes

    sizes = asyncio.run(grow())
    assert max(sizes) <= 2 and sizes[-1] >= 1
    assert [agent for agent, _ in notes] == ["alice"] * 4
    assert all("left out" in note and "400-token window" in note for _, note in notes)


@pytest.fixture(scope="module")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("small-window"), context=WINDOW)


@pytest.fixture(scope="module")
def small_server(small_model: Path) -> Iterator[EmbeddedServer]:
    with EmbeddedServer(Engine(resolve_model(str(small_model)))) as server:
        server.engine.wait_ready(60)
        yield server


CHAT = """\
name: chat
agents:
  - {name: alice, system_message: You talk about cats., max_tokens: 24, temperature: 1}
  - {name: bob, system_message: You answer about dogs., max_tokens: 24, temperature: 1}
team: {type: round_robin, max_turns: 40}
termination: {text: null, max_messages: 100}
MODEL
task: Talk about animals, one short line each, for a long while.
"""


def chat_run(tmp_path: Path, model: str, **options: object) -> tuple[str, list[str], list[str]]:
    path = tmp_path / "chat.yaml"
    path.write_text(CHAT.replace("MODEL", model))
    store = SessionStore()
    result = run_workflow(load_workflow(path, skills=load_skills()), RunOptions(seed=3, **options), store=store)  # type: ignore[arg-type]
    messages = store.get_messages(result.session_id)
    notes = [m.text() for m in messages if m.type == "system"]
    texts = [m.source for m in messages if m.type == "text"]
    assert result.status == "finished" and result.turns == 40, store.get_session(result.session_id).error
    return result.session_id, notes, texts


def test_a_long_run_on_a_small_window_model_finishes_and_says_turns_were_dropped(
    tmp_path: Path, small_model: Path
) -> None:
    """The embedded engine's window reaches the agents; without trimming the server answers 400 by turn ~15."""
    _, notes, texts = chat_run(tmp_path, f"model: {{kind: embedded, model: '{small_model}'}}")
    assert texts == ["user"] + ["alice", "bob"] * 20
    assert notes and all(f"{WINDOW}-token window" in note and "left out" in note for note in notes)


def test_a_server_that_does_not_tell_its_window_still_gets_a_run_that_fits(
    tmp_path: Path, small_server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Agents assume 4096 tokens; the server's first refusal tells the real window, and the prompt is retried."""
    # Our server reports its window in /v1/models: here it stands for one that says nothing there.
    monkeypatch.setattr("autoqwen.workflows.endpoints._served_entry", lambda *_: None)
    _, notes, _ = chat_run(tmp_path, "", base_url=small_server.base_url)
    assert any("after the server refused" in note for note in notes), notes
    assert all(f"{WINDOW}-token window" in note for note in notes)


def test_the_window_a_workflow_gives_an_external_server_is_used(tmp_path: Path, small_server: EmbeddedServer) -> None:
    server = f"base_url: '{small_server.base_url}', model: '{small_server.engine.model_id}'"
    model = f"model: {{{server}, context_window: 300}}"
    _, notes, _ = chat_run(tmp_path, model)
    assert notes and all("300-token window" in note for note in notes)
    assert not any("after the server refused" in note for note in notes)


@pytest.mark.parametrize(
    ("entry", "window"),
    [({"max_model_len": 1234}, 1234), ({"meta": {"n_ctx_train": 2048}}, 2048), ({"owned_by": "x"}, None)],
)
def test_the_window_a_server_lists_in_v1_models_is_read(entry: dict[str, object], window: int | None) -> None:
    from autoqwen.workflows.endpoints import _served_window

    with models_server(entry) as base_url:
        assert _served_window(base_url, "none", "m") == window
        assert _served_window(base_url, "none", "other") is None


def test_the_cli_window_option_reaches_the_agents(tmp_path: Path, small_server: EmbeddedServer) -> None:
    from typer.testing import CliRunner

    from autoqwen.cli import app

    path = tmp_path / "chat.yaml"
    path.write_text(CHAT.replace("MODEL", "").replace("max_turns: 40", "max_turns: 30"))
    args = ["run", str(path), "--base-url", small_server.base_url, "--context-window", "300", "--seed", "3", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    notes = [json.loads(line) for line in result.output.splitlines() if '"type": "system"' in line]
    assert notes and all("300-token window" in json.dumps(note) for note in notes)
    assert not any("after the server refused" in json.dumps(note) for note in notes)
