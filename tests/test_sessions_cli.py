"""`autoqwen sessions list|show|delete`, `autoqwen export` and `autoqwen gallery import`, through typer's runner."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from session_samples import HOSTILE, make_session
from typer.testing import CliRunner

from autoqwen.cli import app
from autoqwen.workflows import SessionStore

runner = CliRunner()


def text(output: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(output.split())


def test_list_table_and_json() -> None:
    result = runner.invoke(app, ["sessions", "list"])
    assert result.exit_code == 0 and "No sessions yet" in result.output
    with SessionStore() as store:
        old, new = make_session(store, "old"), make_session(store, "new", finish=False)
    result = runner.invoke(app, ["sessions", "list"])
    assert result.exit_code == 0, result.output
    for word in ("id", "workflow", "status", "started", "turns", "tokens", old.id, "finished", "running", "718"):
        assert word in result.output
    assert result.output.index(new.id) < result.output.index(old.id)
    listed = json.loads(runner.invoke(app, ["sessions", "list", "--json"]).stdout)
    assert [s["id"] for s in listed] == [new.id, old.id]
    assert listed[1]["status"] == "finished" and listed[1]["turns"] == 2 and listed[1]["message_count"] == 6
    assert [s["id"] for s in json.loads(runner.invoke(app, ["sessions", "list", "--json", "-n", "1"]).stdout)] == [
        new.id
    ]


def test_show_transcript_and_json() -> None:
    with SessionStore() as store:
        session = make_session(store)
        record = store.get_record(session.id)
    result = runner.invoke(app, ["sessions", "show", session.id])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Research on agents" in out and "planner · tool call" in out and "planner · tool result" in out
    assert "paper_search" in out and '{"query": "small language models"' in out and "↩ paper_search:" in out
    assert "writer · message" in out and HOSTILE in out and "chart.png" in out
    shown = runner.invoke(app, ["sessions", "show", session.id, "--json"])
    assert json.loads(shown.stdout) == json.loads(record.model_dump_json())


def test_unknown_id_is_exit_1_with_a_clear_message() -> None:
    for args in (["sessions", "show", "nope"], ["sessions", "delete", "nope", "--yes"], ["export", "nope", "-g", "x"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 1, args
        assert (
            "no session 'nope' (see `autoqwen sessions list`)" in text(result.output)
            and "Traceback" not in result.output
        )


def test_delete_asks_unless_yes() -> None:
    with SessionStore() as store:
        session = make_session(store)
    result = runner.invoke(app, ["sessions", "delete", session.id], input="n\n")
    assert result.exit_code == 1 and "Delete session" in result.output
    assert runner.invoke(app, ["sessions", "show", session.id]).exit_code == 0
    result = runner.invoke(app, ["sessions", "delete", session.id], input="y\n")
    assert result.exit_code == 0 and f"deleted session {session.id}" in result.output
    assert runner.invoke(app, ["sessions", "show", session.id]).exit_code == 1


def test_export_then_import(tmp_path: Path) -> None:
    with SessionStore() as store:
        a, b = make_session(store, "a"), make_session(store, "b")
    gallery = tmp_path / "gallery"
    result = runner.invoke(app, ["export", a.id, b.id, "--gallery", str(gallery)])
    assert result.exit_code == 0, result.output
    assert f"exported {a.id}" in result.output and "index.html" in result.output
    assert {e["id"] for e in json.loads((gallery / "index.json").read_text())["sessions"]} == {a.id, b.id}

    assert runner.invoke(app, ["sessions", "delete", a.id, "--yes"]).exit_code == 0
    result = runner.invoke(app, ["gallery", "import", str(gallery / a.id)])
    assert result.exit_code == 0 and f"imported {a.id}" in result.output
    result = runner.invoke(app, ["gallery", "import", str(gallery / a.id)])
    assert result.exit_code == 1 and "already in the store" in text(result.output) and "--replace" in result.output
    assert runner.invoke(app, ["gallery", "import", str(gallery / a.id), "--replace"]).exit_code == 0
    result = runner.invoke(app, ["gallery", "import", str(tmp_path)])
    assert result.exit_code == 1 and "is not an exported session: it has no session.json" in text(result.output)


def test_help_of_the_new_commands_does_not_import_torch() -> None:
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom autoqwen.cli import app\n"
        "for args in (['sessions', '--help'], ['sessions', 'list', '--help'], ['export', '--help'],"
        " ['gallery', 'import', '--help']):\n"
        "    r = CliRunner().invoke(app, args)\n    assert r.exit_code == 0, r.output\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
