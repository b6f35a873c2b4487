"""The documented Python surface: one import runs a workflow; the package's version comes from its metadata."""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path

import pytest

import autoqwen
from autoqwen.local_llm import EmbeddedServer

FLOW = """\
name: hello
inputs:
  topic: {default: cats}
agents:
  - {name: alice, system_message: You talk., max_tokens: 4}
team: {type: round_robin, max_turns: 1}
termination: {text: null}
task: Say something about {topic}.
"""


def test_a_workflow_runs_from_python_with_one_import(tmp_path: Path, tiny_server: EmbeddedServer) -> None:
    from autoqwen import RunOptions, SessionStore, load_workflow, run_workflow

    (tmp_path / "hello.yaml").write_text(FLOW)
    spec = load_workflow(tmp_path / "hello.yaml")
    result = run_workflow(spec, RunOptions(inputs={"topic": "dogs"}, base_url=tiny_server.base_url, seed=0))
    assert result.status == "finished" and result.turns == 1
    with SessionStore() as store:  # the default store, under the test's own data dir
        messages = store.get_messages(result.session_id)
    assert [m.source for m in messages] == ["user", "alice"] and messages[0].content == "Say something about dogs."


def test_load_workflow_takes_a_builtin_name() -> None:
    assert autoqwen.load_workflow("write-review").name == "write-review"


def test_load_workflow_names_an_unknown_workflow() -> None:
    from autoqwen.workflows.errors import WorkflowNotFound

    with pytest.raises(WorkflowNotFound, match="no workflow named 'nope'"):
        autoqwen.load_workflow("nope")


def test_the_version_is_defined_once() -> None:
    assert autoqwen.__version__ == importlib.metadata.version("autoqwen")
    root = Path(__file__).resolve().parent.parent
    for folder in ("autoqwen", "local_llm", "skills", "agents", "workflows"):
        for path in (root / folder).rglob("*.py"):
            assert f'"{autoqwen.__version__}"' not in path.read_text(encoding="utf-8"), f"{path} repeats the version"


def test_a_skill_file_with_the_old_import_gets_a_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from autoqwen.skills import SkillLoadError, add_skill_file

    root = Path(__file__).resolve().parent.parent  # where the folders live: not importable as top-level names
    monkeypatch.setattr(sys, "path", [p for p in sys.path if Path(p or ".").resolve() != root])
    old = tmp_path / "old.py"
    old.write_text("from skills import skill\n\n@skill\ndef hi(name: str) -> str:\n    '''Greet.'''\n    return name\n")
    with pytest.raises(SkillLoadError, match=r"old\.py, line 1: ModuleNotFoundError.*from autoqwen\.skills import"):
        add_skill_file(old)
