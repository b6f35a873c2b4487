"""Workflow YAML: loading, every error path (file, line, field), agent kinds, team types, catalog, JSON Schema."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import jsonschema
import pytest
import yaml
from pydantic import ValidationError
from typer.testing import CliRunner

from autoqwen.agents import AssistantSpec, CodeExecutorSpec
from autoqwen.cli import app
from autoqwen.paths import user_workflows_dir
from autoqwen.skills import load_skills
from autoqwen.workflows.catalog import BUILTIN_DIR, find_workflow, list_workflows
from autoqwen.workflows.errors import SpecError, WorkflowNotFound
from autoqwen.workflows.loader import MAX_YAML_BYTES, load_workflow
from autoqwen.workflows.spec import RoundRobinTeam, WorkflowSpec

GOOD = """\
name: demo
description: A demo.
inputs:
  topic: {default: cats}
agents:
  - name: writer
    system_message: You write.
    skills: [web_fetch]
  - ref: agents/critic.yaml
team: {type: two_agent, max_turns: 2}
termination: {text: DONE, after: [critic]}
task: Write about {topic}.
"""
CRITIC = "name: critic\nsystem_message: You review.\n"


def write(folder: Path, text: str, name: str = "flow.yaml") -> Path:
    (folder / "agents").mkdir(exist_ok=True)
    (folder / "agents" / "critic.yaml").write_text(CRITIC)
    path = folder / name
    path.write_text(text)
    return path


def test_a_good_file_loads_with_its_agent_ref(tmp_path: Path) -> None:
    spec = load_workflow(write(tmp_path, GOOD), skills=load_skills())
    assert [a.name for a in spec.agents] == ["writer", "critic"]
    assert spec.agents[1].system_message == "You review."
    assert spec.render_task({}) == "Write about cats." and spec.render_task({"topic": "dogs"}) == "Write about dogs."
    assert spec.model.kind == "embedded"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("team: {type: two_agent, max_turns: 2}", "team: {type: two_agent, max_turns: 2"), ":11: invalid YAML"),
        (("description: A demo.", "descripton: A demo."), ":2: descripton: unknown field"),
        (("skills: [web_fetch]", "skills: [web_fetch, fly]"), ":8: agents.0.skills.1: unknown skill 'fly'"),
        (("ref: agents/critic.yaml", "ref: agents/nobody.yaml"), ":9: agents.1.ref: agent file not found"),
        (("task: Write about {topic}.\n", ""), ":1: task: field required"),
        (("Write about {topic}.", "Write about {subject}."), "task uses {subject} but inputs has no 'subject'"),
        (("after: [critic]", "after: [judge]"), "termination.after names 'judge'"),
        (("max_turns: 2}", "max_turns: 500}"), ":10: team.max_turns: Input should be less than or equal to 100"),
        (("  - name: writer", "  - name: 'bad name'"), ":6: agents.0.name: String should match pattern"),
        (("type: two_agent", "type: pairs"), ":10: team.type: Input should be 'two_agent', 'round_robin' or"),
        # A field of another agent kind or team type, named at its own line with the kind that has it.
        (
            ("    skills: [web_fetch]\n", "    skills: [web_fetch]\n    timeout_s: 30\n"),
            ":9: agents.0.timeout_s: unknown field for kind assistant (it belongs to kind code_executor)",
        ),
        (
            ("  - name: writer\n", "  - name: writer\n    kind: code_executor\n"),
            ":8: agents.0.system_message: unknown field for kind code_executor (it belongs to kind assistant)",
        ),
        (
            ("    skills: [web_fetch]\n", "    timout_s: 30\n"),
            ":8: agents.0.timout_s: unknown field for kind assistant",
        ),
        (
            ("max_turns: 2}", "max_turns: 2, selector_prompt: Pick one.}"),
            ":10: team.selector_prompt: unknown field for type two_agent (it belongs to type selector)",
        ),
        (("  - name: writer", "  - name: writer\n    kind: robot"), ":7: agents.0.kind: Input should be 'assistant',"),
    ],
)
def test_errors_name_file_line_and_field(tmp_path: Path, change: tuple[str, str], expected: str) -> None:
    path = write(tmp_path, GOOD.replace(*change))
    with pytest.raises(SpecError) as info:
        load_workflow(path, skills=load_skills())
    assert str(info.value).startswith(str(path))
    assert expected in str(info.value)


def test_kind_and_type_have_defaults(tmp_path: Path) -> None:
    text = GOOD.replace("team: {type: two_agent, max_turns: 2}", "team: {max_turns: 3}")
    spec = load_workflow(write(tmp_path, text))
    assert [a.kind for a in spec.agents] == ["assistant", "assistant"]
    assert isinstance(spec.agents[0], AssistantSpec) and spec.agents[0].skills == ("web_fetch",)
    assert isinstance(spec.team, RoundRobinTeam) and spec.team.max_turns == 3
    bare = WorkflowSpec.model_validate({"name": "x", "agents": [{"name": "a"}], "task": "t"})
    assert isinstance(bare.team, RoundRobinTeam) and isinstance(bare.agents[0], AssistantSpec)


def test_a_field_of_another_team_type_is_refused_without_a_file() -> None:
    with pytest.raises(ValidationError, match=r"team\.round_robin\.selector_prompt\s+Extra inputs"):
        WorkflowSpec.model_validate(
            {"name": "x", "agents": [{"name": "a"}], "team": {"selector_prompt": "p"}, "task": "t"}
        )


def test_a_wrong_field_in_an_agent_file_names_that_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    (tmp_path / "agents" / "critic.yaml").write_text("name: critic\nsystem_message: You review.\nauto_reply: ok\n")
    with pytest.raises(SpecError, match=r"critic\.yaml:3: auto_reply: unknown field for kind assistant \(it belongs"):
        load_workflow(path)


def test_old_flat_snapshots_still_resume() -> None:
    # What sessions stored before agent kinds had fields of their own: every field on every agent and team.
    flat = {"description": "", "system_message": None, "skills": [], "reflect_on_tool_use": True}
    flat |= {"max_tool_iterations": 1, "temperature": None, "max_tokens": None, "auto_reply": "Go on.", "timeout_s": 60}
    snapshot = {
        "name": "old",
        "agents": [{**flat, "name": "coder", "kind": "assistant"}, {**flat, "name": "run", "kind": "code_executor"}],
        "team": {"type": "two_agent", "max_turns": 4, "selector_prompt": None},
        "task": "Go.",
    }
    with pytest.raises(ValidationError):
        WorkflowSpec.model_validate(snapshot)
    spec = WorkflowSpec.from_snapshot(snapshot)
    assert isinstance(spec.agents[1], CodeExecutorSpec) and spec.agents[1].timeout_s == 60
    assert WorkflowSpec.from_snapshot(spec.model_dump(mode="json")) == spec


def test_two_agent_team_needs_two_agents(tmp_path: Path) -> None:
    text = GOOD.replace("  - ref: agents/critic.yaml\n", "").replace("after: [critic]", "after: [writer]")
    with pytest.raises(SpecError, match="two_agent team needs exactly 2 agents"):
        load_workflow(write(tmp_path, text))


def test_bad_agent_file_names_its_own_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    (tmp_path / "agents" / "critic.yaml").write_text("name: critic\nkind: robot\n")
    with pytest.raises(SpecError, match=r"critic\.yaml:2: kind: Input should be"):
        load_workflow(path)


def test_builtins_are_valid_and_listed() -> None:
    registry = load_skills()
    names = {e.name for e in list_workflows() if e.source == "builtin"}
    assert {"research", "web-summary", "write-review", "code"} <= names
    for path in BUILTIN_DIR.glob("*.yaml"):
        assert load_workflow(path, skills=registry).name == path.stem


def test_user_workflows_are_found_and_never_shadow_builtins() -> None:
    folder = user_workflows_dir()
    folder.mkdir(parents=True)
    (folder / "mine.yaml").write_text(
        GOOD.replace("name: demo", "name: mine").replace("  - ref: agents/critic.yaml\n", "  - {name: critic}\n")
    )
    (folder / "research.yaml").write_text("name: research\n")
    entries = {(e.name, e.source): e for e in list_workflows()}
    assert entries[("mine", "user")].problem is None
    assert "builtin workflow is already named" in str(entries[("research", "user")].problem)
    assert find_workflow("mine") == folder / "mine.yaml"
    assert find_workflow("research").parent == BUILTIN_DIR
    with pytest.raises(WorkflowNotFound, match="no workflow named 'nope'"):
        find_workflow("nope")


def test_json_schema_describes_the_format(tmp_path: Path) -> None:
    schema = WorkflowSpec.model_json_schema()
    assert {"name", "agents", "team", "termination", "task"} <= set(schema["properties"])
    result = CliRunner().invoke(app, ["workflows", "schema", "-o", str(tmp_path / "s.json")])
    assert result.exit_code == 0 and json.loads((tmp_path / "s.json").read_text()) == schema
    validator = jsonschema.Draft202012Validator(schema)
    validator.check_schema(schema)
    for path in BUILTIN_DIR.glob("*.yaml"):  # what the loader accepts, an editor accepts too
        validator.validate(yaml.safe_load(path.read_text()))
    one = {"name": "x", "task": "t", "agents": [{"name": "a", "timeout_s": 5}]}
    assert not validator.is_valid(one)
    assert validator.is_valid({**one, "agents": [{"name": "a", "kind": "code_executor", "timeout_s": 5}]})
    assert not validator.is_valid(
        {**one, "agents": [{"name": "a"}], "team": {"type": "two_agent", "selector_prompt": "p"}}
    )


def test_cli_validate_show_and_list(tmp_path: Path) -> None:
    runner = CliRunner()
    good = write(tmp_path, GOOD)
    assert runner.invoke(app, ["workflows", "validate", str(good), "write-review"]).exit_code == 0
    bad = write(tmp_path, GOOD.replace("description:", "descripton:"), "bad.yaml")
    result = runner.invoke(app, ["workflows", "validate", str(bad)])
    assert result.exit_code == 1 and f"{bad}:2: descripton: unknown field" in result.output.replace("\n", "")
    assert "name: write-review" in runner.invoke(app, ["workflows", "show", "write-review"]).output
    listing = runner.invoke(app, ["workflows", "list"], env={"COLUMNS": "200", **os.environ}).output
    assert "web-summary" in listing and "research" in listing


def alias_bomb(levels: int) -> str:
    """A billion-laughs document: each level lists the previous one ten times (10**levels strings in all)."""
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{n}: &l{n} [" + ", ".join([f"*l{n - 1}"] * 10) + "]" for n in range(1, levels)]
    return "\n".join(lines) + "\n" + GOOD


def test_yaml_aliases_are_refused_fast(tmp_path: Path) -> None:
    bomb = write(tmp_path, alias_bomb(6))  # 10**6 nodes: seconds and hundreds of MB if expanded
    assert bomb.stat().st_size < 1000
    started = time.perf_counter()
    with pytest.raises(SpecError, match=r"flow\.yaml:2: invalid YAML: aliases \(\*name\) are not allowed"):
        load_workflow(bomb)
    assert time.perf_counter() - started < 0.5
    user_workflows_dir().mkdir(parents=True)
    shutil.copy(bomb, user_workflows_dir() / "bomb.yaml")
    started = time.perf_counter()
    [entry] = [e for e in list_workflows() if e.name == "bomb"]  # `workflows list` reads each description
    assert "aliases" in entry.description and time.perf_counter() - started < 0.5
    merge = write(tmp_path, "base: &b {max_turns: 2}\n" + GOOD.replace("team: {", "team: {<<: *b, "))
    with pytest.raises(SpecError, match="aliases"):
        load_workflow(merge)


def test_large_yaml_files_are_refused_before_parsing(tmp_path: Path) -> None:
    big = write(tmp_path, GOOD + "# " + "x" * MAX_YAML_BYTES + "\n")
    with pytest.raises(SpecError, match=r"flow\.yaml: larger than 256 KiB"):
        load_workflow(big)
    deep = write(tmp_path, "name: " + "[" * 50_000 + "\n")
    with pytest.raises(SpecError, match="nested too deeply"):
        load_workflow(deep)
    anchored = GOOD.replace("team: {", "team: &team {")
    assert load_workflow(write(tmp_path, anchored)).name == "demo"  # an anchor without an alias is harmless
