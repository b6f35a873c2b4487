"""AutoGen Studio interop: workflows out as AgentChat component JSON (loaded and run by AutoGen itself), teams in."""

from __future__ import annotations

import asyncio
import json
import warnings
from pathlib import Path
from typing import Any

import pytest
from openai_stub import serve_stub
from typer.testing import CliRunner

from autoqwen.cli import app
from autoqwen.local_llm import EmbeddedServer
from autoqwen.paths import user_skills_dir, user_workflows_dir
from autoqwen.skills import as_tool, load_skills
from autoqwen.workflows.autogen_import import MAX_COMPONENT_BYTES, import_team_file, team_to_spec, workflow_yaml
from autoqwen.workflows.autogen_studio import EMBEDDED_BASE_URL, export_gallery, export_team
from autoqwen.workflows.catalog import BUILTIN_DIR
from autoqwen.workflows.errors import InteropError
from autoqwen.workflows.loader import load_workflow

BUILTINS = sorted(BUILTIN_DIR.glob("*.yaml"))
PICK = '''
from typing import Literal
from autoqwen.skills import skill

@skill
def pick(color: Literal["red", "green"]) -> str:
    """Pick a colour."""
    return f"picked {color}!"
'''
TOOLS = """\
name: tools
agents:
  - {name: picker, skills: [pick], max_tokens: 120, temperature: 0}
team: {type: round_robin, max_turns: 1}
termination: {after: [picker]}
task: Pick a colour with pick.
"""


def load_team(data: dict[str, Any]) -> Any:
    """The team AutoGen builds from the JSON text, as AutoGen Studio would (its FunctionTool warning silenced)."""
    from autogen_agentchat.teams import BaseGroupChat

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return BaseGroupChat.load_component(json.loads(json.dumps(data)))


def add_pick_skill() -> None:
    user_skills_dir().mkdir(parents=True, exist_ok=True)
    (user_skills_dir() / "pick.py").write_text(PICK)


def write(tmp_path: Path, data: Any, name: str = "team.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_exported_team_loads_in_autogen_and_runs_on_a_loopback_server() -> None:
    spec = load_workflow(BUILTIN_DIR / "write-review.yaml")
    with serve_stub("Fine. APPROVED") as stub:
        data = export_team(spec, base_url=stub.base_url, model="stub")
        team = load_team(data)
        result = asyncio.run(team.run(task="Write about owls."))
    assert [m.source for m in result.messages] == ["user", "writer"]
    assert "APPROVED" in (result.stop_reason or "")
    assert any(path == "/v1/chat/completions" for method, path, _ in stub.requests if method == "POST")
    client = data["config"]["participants"][0]["config"]["model_client"]
    assert client["provider"] == "autogen_ext.models.openai.OpenAIChatCompletionClient"
    assert client["config"]["base_url"] == stub.base_url and client["config"]["max_tokens"] == 160
    assert client["config"]["model_info"]["function_calling"] is True


def test_exported_skill_tool_calls_the_installed_skill(tiny_server: EmbeddedServer, tmp_path: Path) -> None:
    from autogen_agentchat.messages import ToolCallExecutionEvent

    add_pick_skill()
    (tmp_path / "tools.yaml").write_text(TOOLS)
    spec = load_workflow(tmp_path / "tools.yaml", skills=load_skills())
    data = export_team(spec, base_url=tiny_server.base_url, model=tiny_server.engine.model_id)
    tool = data["config"]["participants"][0]["config"]["workbench"][0]["config"]["tools"][0]
    assert tool["provider"] == "autogen_core.tools.FunctionTool" and tool["config"]["name"] == "pick"
    assert "load_skills().get('pick')" in tool["config"]["source_code"]  # a call by name, not a copy of the code
    team = load_team(data)
    result = asyncio.run(team.run(task="Pick a colour with pick."))
    outcomes = [r for m in result.messages if isinstance(m, ToolCallExecutionEvent) for r in m.content]
    assert outcomes and outcomes[0].content in ("picked red!", "picked green!") and not outcomes[0].is_error


def test_skill_tool_component_keeps_the_schema_and_runs_the_skill() -> None:
    from autogen_core import CancellationToken
    from autogen_core.tools import FunctionTool

    add_pick_skill()
    tool = as_tool(load_skills().get("pick"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = FunctionTool.load_component(tool.dump_component().model_dump(mode="json"))
    assert loaded.name == "pick" and loaded.description == "Pick a colour."
    assert loaded.schema["parameters"]["properties"]["color"]["enum"] == ["red", "green"]
    assert asyncio.run(loaded.run_json({"color": "green"}, CancellationToken())) == "picked green!"


@pytest.mark.parametrize("path", BUILTINS, ids=[p.stem for p in BUILTINS])
def test_builtin_workflows_survive_yaml_json_yaml(path: Path, tmp_path: Path) -> None:
    spec = load_workflow(path)
    data = json.loads(json.dumps(export_team(spec)))
    imported = team_to_spec(data)
    assert imported.spec == spec
    again = tmp_path / f"{spec.name}.yaml"
    again.write_text(workflow_yaml(imported.spec))
    assert load_workflow(again) == spec
    client = data["config"]["participants"][0]["config"]["model_client"]["config"]
    assert client["base_url"] == EMBEDDED_BASE_URL and client["api_key"] == "none"


def test_cli_export_and_import_write_a_runnable_workflow(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "wr.json"
    result = runner.invoke(app, ["workflows", "export", "write-review", "--format", "autogen", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["label"] == "write-review"
    result = runner.invoke(app, ["workflows", "import", str(out), "--name", "reviewed"])
    assert result.exit_code == 0, result.output
    assert (
        load_workflow(user_workflows_dir() / "reviewed.yaml").agents
        == load_workflow(BUILTIN_DIR / "write-review.yaml").agents
    )
    again = runner.invoke(app, ["workflows", "import", str(out), "--name", "reviewed"])
    assert again.exit_code == 1 and "--replace" in again.output
    builtin = runner.invoke(app, ["workflows", "import", str(out)])
    assert builtin.exit_code == 1 and "builtin workflow is named 'write-review'" in builtin.output
    assert runner.invoke(app, ["workflows", "validate", "reviewed"]).exit_code == 0


def test_gallery_export_has_every_workflow_and_skill_and_imports_by_label(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "gallery.json"
    result = runner.invoke(app, ["gallery", "export-autogen", "-o", str(out)])
    assert result.exit_code == 0, result.output
    gallery = json.loads(out.read_text())
    assert {"id", "name", "url", "metadata", "components"} <= set(gallery)
    assert {"author", "version", "description", "tags", "license", "category", "last_synced"} <= set(
        gallery["metadata"]
    )
    components = gallery["components"]
    assert sorted(t["label"] for t in components["teams"]) == sorted(p.stem for p in BUILTINS)
    assert {t["config"]["name"] for t in components["tools"]} == set(load_skills().names())
    assert components["models"] and components["terminations"] and components["agents"]
    for team in components["teams"]:
        load_team(team)
    unchosen = runner.invoke(app, ["workflows", "import", str(out)])
    assert unchosen.exit_code == 1 and "--team" in unchosen.output and "'research'" in unchosen.output
    chosen = runner.invoke(app, ["workflows", "import", str(out), "--team", "research", "--name", "mine"])
    assert chosen.exit_code == 0, chosen.output
    assert load_workflow(user_workflows_dir() / "mine.yaml").skill_names() == ["paper_search", "web_fetch"]


def test_export_gallery_points_every_team_at_one_server() -> None:
    specs = [load_workflow(path) for path in BUILTINS]
    gallery = export_gallery(specs, load_skills(), base_url="http://127.0.0.1:9999/v1")
    urls = {m["config"]["base_url"] for m in gallery["components"]["models"]}
    assert urls == {"http://127.0.0.1:9999/v1"}


def foreign_team(marker: Path) -> dict[str, Any]:
    """A team as AutoGen Studio writes one: its own tool as source code, a keyed OpenAI model, another client."""
    source = (
        f"open({str(marker)!r}, 'w').write('ran')\ndef calculator(a: float, b: float) -> float:\n    return a + b\n"
    )
    tool = {
        "provider": "autogen_core.tools.FunctionTool",
        "component_type": "tool",
        "config": {"source_code": source, "name": "calculator", "description": "Add.", "global_imports": ["os"]},
    }
    client = {
        "provider": "autogen_ext.models.openai.OpenAIChatCompletionClient",
        "config": {"model": "gpt-4o-mini", "api_key": "sk-secret"},
    }
    assistant = {
        "provider": "autogen_agentchat.agents.AssistantAgent",
        "config": {
            "name": "assistant_agent",
            "model_client": client,
            "workbench": [{"provider": "autogen_core.tools.StaticWorkbench", "config": {"tools": [tool]}}],
            "system_message": "Solve tasks. Say TERMINATE when done.",
            "reflect_on_tool_use": False,
        },
    }
    surfer = {"provider": "autogen_ext.agents.web_surfer.MultimodalWebSurfer", "config": {"name": "surfer"}}
    text = {"provider": "autogen_agentchat.conditions.TextMentionTermination", "config": {"text": "TERMINATE"}}
    tokens = {"provider": "autogen_agentchat.conditions.TokenUsageTermination", "config": {"max_total_token": 9}}
    return {
        "provider": "autogen_agentchat.teams.RoundRobinGroupChat",
        "label": "Calculator Team",
        "config": {
            "participants": [assistant, surfer],
            "termination_condition": {
                "provider": "autogen_agentchat.base.OrTerminationCondition",
                "config": {"conditions": [text, tokens]},
            },
            "max_turns": 5,
        },
    }


def test_a_studio_team_is_mapped_and_nothing_in_it_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran.txt"
    result = import_team_file(write(tmp_path, foreign_team(marker)))
    assert not marker.exists()
    spec = result.spec
    assert spec.name == "calculator-team" and [a.name for a in spec.agents] == ["assistant_agent"]
    assert spec.agents[0].skills == () and spec.agents[0].system_message == "Solve tasks. Say TERMINATE when done."
    assert spec.model.kind == "external" and spec.model.model == "gpt-4o-mini"
    assert spec.model.api_key_env == "OPENAI_API_KEY"
    assert spec.termination.text == "TERMINATE" and spec.termination.max_messages is None
    assert spec.team.max_turns == 5 and spec.task == "{task}" and not spec.code_execution
    notes = "\n".join(result.notes)
    assert "'calculator' is given as source code, which is never run" in notes
    assert "$.config.participants[1]: agent 'surfer'" in notes and "TokenUsageTermination" in notes
    assert "API key is not copied" in notes
    assert "sk-secret" not in result.path.read_text()  # type: ignore[union-attr]
    assert result.path == user_workflows_dir() / "calculator-team.yaml"


def test_a_studio_tool_named_like_a_skill_maps_to_it(tmp_path: Path) -> None:
    data = foreign_team(tmp_path / "ran.txt")
    tool = data["config"]["participants"][0]["config"]["workbench"][0]["config"]["tools"][0]
    tool["config"]["name"] = "web_fetch"
    spec = team_to_spec(data).spec
    assert spec.agents[0].skills == ("web_fetch",) and spec.agents[0].reflect_on_tool_use is False


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda d: d["config"]["participants"][0]["config"].pop("name"), "$.config.participants[0].config.name"),
        (lambda d: d["config"]["participants"][0]["config"].update(name="bad name"), "$.config.participants[0]"),
        (lambda d: d["config"].update(participants="x"), "$.config.participants"),
        (lambda d: d.update(config=[]), "$.config"),
        (lambda d: d["config"]["participants"].pop(0), "$.config.participants"),
    ],
)
def test_bad_team_files_name_the_json_path(tmp_path: Path, change: Any, where: str) -> None:
    data = foreign_team(tmp_path / "ran.txt")
    change(data)
    with pytest.raises(InteropError) as info:
        import_team_file(write(tmp_path, data))
    assert f"team.json: {where}" in str(info.value)


def test_untrusted_files_are_refused_fast(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (MAX_COMPONENT_BYTES + 1))
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    for path, message in ((big, "larger than"), (deep, "nested too deeply"), (write(tmp_path, [1]), r"\$: expected")):
        with pytest.raises(InteropError, match=message):
            import_team_file(path)
    with pytest.raises(InteropError, match="no team labelled 'nope'"):
        import_team_file(write(tmp_path, {"components": {"teams": []}}), team="nope")


EXTERNAL = """\
name: outside
agents:
  - {name: helper, system_message: Help., temperature: 0.5}
model:
  base_url: http://127.0.0.1:11434/v1
  model: qwen:0.5b
  api_key_env: MY_KEY
  context_window: 8192
  function_calling: false
  model_info: {vision: true}
mcp:
  - {url: "http://127.0.0.1:9/mcp"}
task: Help.
"""


def test_an_external_model_survives_the_round_trip_without_its_key(tmp_path: Path) -> None:
    from autoqwen.workflows.autogen_studio import export_notes

    (tmp_path / "outside.yaml").write_text(EXTERNAL)
    spec = load_workflow(tmp_path / "outside.yaml")
    data = export_team(spec)
    client = data["config"]["participants"][0]["config"]["model_client"]["config"]
    assert "api_key" not in client and client["model_info"]["vision"] is True
    assert client["model_info"]["function_calling"] is False
    back = team_to_spec(json.loads(json.dumps(data))).spec
    assert back.model == spec.model and back.agents == spec.agents
    assert back.mcp == ()  # an MCP server is a command or an address: never taken from a file
    assert any("MCP servers are not exported" in note for note in export_notes(spec))
