"""Terminal escape injection: text from models, web pages and imported sessions never drives the terminal.

Every printing command (`run`, `chat`, `skills run`, `sessions show`, errors) is fed text holding a clear-screen,
a window-title change, an OSC 52 clipboard write, a CR overwrite and an 8-bit CSI: none of those bytes reaches the
output, and each shows as a visible escape.
"""

from __future__ import annotations

from pathlib import Path

from openai_stub import serve_stub
from typer.testing import CliRunner

from autoqwen.cli import app
from autoqwen.paths import user_skills_dir
from autoqwen.terminal import terminal_safe
from autoqwen.workflows import SessionStore

# Clear screen, set the window title, put "rm -rf ~" on the clipboard (OSC 52), hide text behind a CR, 8-bit CSI.
NASTY = "\x1b[2J\x1b]0;owned\x07\x1b]52;c;cm0gLXJmIH4=\x07fake\rreal\x9b31m\u202eevil"
CONTROLS = ["\x1b", "\x07", "\r", "\x9b", "\u202e"]
runner = CliRunner()


def assert_inert(output: str) -> None:
    """No control character in the output, and the attack still readable as escapes."""
    assert not [c for c in CONTROLS if c in output], repr(output)
    assert "\\x1b]52;c;cm0gLXJmIH4=\\x07" in output and "\\x9b31m" in output, output


def test_terminal_safe_escapes_controls_and_keeps_newlines_and_tabs() -> None:
    assert terminal_safe("a\tb\nc\r\nd") == "a\tb\nc\nd"
    assert terminal_safe("\x00\x08\x1b\x7f\x85\x9f") == "\\x00\\x08\\x1b\\x7f\\x85\\x9f"
    assert terminal_safe("\u202e\u2066 é 你好 🙂") == "\\u202e\\u2066 é 你好 🙂"
    assert terminal_safe(NASTY).isprintable()


def test_sessions_show_escapes_what_the_session_holds() -> None:
    with SessionStore() as store:
        session = store.create_session("w", title=f"title {NASTY}", inputs={"q": NASTY})
        store.append_message(session.id, f"bot{NASTY}", f"said {NASTY}")
        store.append_message(
            session.id, "bot", [{"id": "1", "name": f"f{NASTY}", "arguments": NASTY}], type="tool_call"
        )
        store.append_message(
            session.id, "bot", [{"call_id": "1", "name": "f", "content": NASTY, "is_error": True}], type="tool_result"
        )
        store.finish_session(session.id, "failed", error=NASTY, summary=NASTY, stop_reason=NASTY)
    result = runner.invoke(app, ["sessions", "show", session.id])
    assert result.exit_code == 0, result.output
    assert_inert(result.output)
    assert result.output.count("\\x1b]0;owned") >= 9  # title, input, source, text, call, result, error, ...
    listed = runner.invoke(app, ["sessions", "list"], env={"COLUMNS": "300"})
    assert listed.exit_code == 0 and "\x1b" not in listed.output and "\\x1b" in listed.output


def test_skills_run_escapes_what_a_skill_returns() -> None:
    folder = user_skills_dir()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "nasty.py").write_text(
        "from autoqwen.skills import skill\n\n"
        "@skill\n"
        "def page(as_json: bool = False) -> str | dict:\n"
        '    """Return hostile text."""\n'
        f"    return {{'text': {NASTY!r}}} if as_json else {NASTY!r}\n",
        encoding="utf-8",
    )
    text = runner.invoke(app, ["skills", "run", "page"])
    assert text.exit_code == 0, text.output
    assert_inert(text.output)
    as_json = runner.invoke(app, ["skills", "run", "page", "--arg", "as_json=true"])
    assert as_json.exit_code == 0, as_json.output
    assert not [c for c in CONTROLS if c in as_json.output] and "\\u001b]52;c;" in as_json.output


def test_chat_escapes_the_models_words_even_split_across_chunks() -> None:
    with serve_stub(NASTY) as stub:
        result = runner.invoke(app, ["chat", "--base-url", stub.base_url, "--model", "stub", "--prompt", "hi"])
    assert result.exit_code == 0, result.output
    assert_inert(result.output)


def test_run_escapes_the_transcript_and_the_summary(tmp_path: Path) -> None:
    flow = tmp_path / "flow.yaml"
    flow.write_text(
        "name: nasty\nagents:\n  - {name: bot}\nteam: {max_turns: 1}\ntermination: {text: null}\ntask: Go.\n",
        encoding="utf-8",
    )
    with serve_stub(NASTY) as stub:
        result = runner.invoke(app, ["run", str(flow), "--base-url", stub.base_url, "--model", "stub"])
    assert result.exit_code == 0, result.output
    assert_inert(result.output)
    assert "finished after 1 turns" in result.output


def test_errors_are_plain_text(tmp_path: Path) -> None:
    # The message quotes the path as given: neither its control characters nor its brackets may act.
    path = f"{tmp_path}/{NASTY}[red]markup[/red] [/].yaml"
    result = runner.invoke(app, ["run", path])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert_inert(result.output)
    assert "[red]markup[/red] [/].yaml" in result.output
