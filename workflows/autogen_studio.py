"""Workflows as AutoGen AgentChat component JSON (what `team.dump_component()` writes and AutoGen Studio imports).

    component = export_team(load_workflow(path))          # the team, loadable with BaseGroupChat.load_component
    gallery = export_gallery([spec, ...], load_skills())  # an AutoGen Studio gallery of every workflow and skill

The team is built from AutoGen's own classes (AssistantAgent, UserProxyAgent, CodeExecutorAgent, RoundRobinGroupChat,
SelectorGroupChat, the termination conditions the runner uses) and dumped with AutoGen's component API, so the JSON
is exactly what AutoGen writes. It is not the team a run builds: that one holds pieces that live in this process only
(the windowed model context that notes trims in the transcript, the code approval callback, the process-group
executor), which AutoGen cannot serialise. Skills become `FunctionTool` components whose code calls the installed
skill by name (see autoqwen.skills._portable). What AutoGen has no field for (the task and its inputs, tags, human
input mode, an embedded model's setting, ...) goes under the component's `autoqwen` key, which AutoGen ignores and
`import_team` reads back, so a workflow survives the round trip.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import warnings
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from autoqwen.agents import (
    AgentSpec,
    AssistantSpec,
    CodeExecutorSpec,
    EmbeddedModel,
    Endpoint,
    ExternalModel,
    model_client,
)
from autoqwen.skills import SkillError, SkillRegistry, load_skills
from autoqwen.workflows.errors import InteropError
from autoqwen.workflows.spec import SelectorTeam, WorkflowSpec

if TYPE_CHECKING:
    from autogen_agentchat.base import ChatAgent, Team

__all__ = [
    "EMBEDDED_BASE_URL",
    "HINTS_KEY",
    "export_gallery",
    "export_notes",
    "export_team",
    "gallery_of_workflows",
    "served_name",
]

EMBEDDED_BASE_URL = "http://127.0.0.1:1234/v1"
"""Where `autoqwen serve` listens by default: exported embedded-model workflows point there."""

HINTS_KEY = "autoqwen"
"""The key, beside `provider` and `config`, holding what AutoGen has no field for (AutoGen ignores it)."""

HINTS_FORMAT = 1
_OPENAI_CLIENT = "autogen_ext.models.openai.OpenAIChatCompletionClient"
_SELECTOR_TOKENS = 64  # the runner's selector answers with a name, not an essay


def served_name(model: str) -> str:
    """The model name `autoqwen serve --model MODEL` answers to, found without loading or downloading anything."""
    from pathlib import Path

    from autoqwen.local_llm import BUNDLED, LocalLLMError, resolve_model
    from autoqwen.local_llm.resolve import BUNDLED_ID

    if model == BUNDLED:
        return BUNDLED_ID
    if model.count("/") == 1 and not model.startswith((".", "/", "~")) and not Path(model).exists():
        return model  # a hub id: the server serves it under that id (resolving it could start a download)
    resolver = logging.getLogger("autoqwen.local_llm.resolve")
    level = resolver.level
    resolver.setLevel(logging.ERROR)  # "auto falls back to the bundled model" is news for a run, not an export
    try:
        return resolve_model(model).model_id
    except LocalLLMError:
        return model
    finally:
        resolver.setLevel(level)


def export_team(
    spec: WorkflowSpec,
    *,
    skills: SkillRegistry | None = None,
    base_url: str | None = None,
    model: str | None = None,
) -> dict[str, Any]:
    """The workflow's team as an AgentChat component (a JSON-ready dict); `base_url` and `model` override where its
    model clients point (by default: the workflow's external server, or `autoqwen serve`'s default address)."""
    registry = skills if skills is not None else load_skills()
    endpoint = _endpoint(spec, base_url, model)
    team = _team(spec, registry, endpoint)
    component = team.dump_component()
    component.label = spec.name
    component.description = spec.description or None
    data: dict[str, Any] = component.model_dump(mode="json")
    for participant in data["config"]["participants"]:  # Studio lists agents by label: their names say more
        participant["label"] = participant["config"]["name"]
    key_env = spec.model.api_key_env if isinstance(spec.model, ExternalModel) else None
    for node in _components(data):
        if node.get("provider") == _OPENAI_CLIENT and isinstance(node.get("config"), dict):
            # AutoGen writes a masked key; ours is a placeholder, or comes from the variable the workflow names.
            node["config"].pop("api_key", None)
            if key_env is None:
                node["config"]["api_key"] = endpoint.api_key
        if str(node.get("provider", "")).endswith("LocalCommandLineCodeExecutor"):
            node["config"].pop("work_dir", None)  # this machine's temporary folder means nothing elsewhere
    data[HINTS_KEY] = _hints(spec, endpoint)
    return data


def export_notes(spec: WorkflowSpec) -> list[str]:
    """What the exported team does differently from `autoqwen run`, one sentence each, for the user to read."""
    notes = []
    for agent in spec.agents:
        if isinstance(agent, CodeExecutorSpec):
            notes.append(
                f"agent {agent.name} runs code blocks with AutoGen's LocalCommandLineCodeExecutor: AutoGen Studio runs "
                "them on its machine without asking (autoqwen runs code only with --execute-code)"
            )
    if spec.human_input != "never" and not any(agent.kind == "user_proxy" for agent in spec.agents):
        notes.append(f"human_input {spec.human_input} is not part of the team: AutoGen Studio adds no user agent")
    if spec.termination.text:
        notes.append(
            f"TextMentionTermination({spec.termination.text!r}) also matches the task: AutoGen does not store "
            "which sources it listens to"
        )
    if spec.mcp_servers():
        notes.append("its MCP servers are not exported: add them in AutoGen Studio as McpWorkbench components")
    return notes


def export_gallery(
    specs: Sequence[WorkflowSpec],
    skills: SkillRegistry,
    *,
    base_url: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """An AutoGen Studio gallery (id, name, metadata, components: teams, agents, models, tools, terminations) of
    the workflows and every skill, for one-step import in AutoGen Studio's gallery view."""
    from autoqwen.skills import as_tool

    settings = {spec.model.model for spec in specs if isinstance(spec.model, EmbeddedModel)}
    names = {setting: served_name(setting) for setting in settings}
    teams = [
        export_team(
            spec,
            skills=skills,
            base_url=base_url,
            model=names[spec.model.model] if isinstance(spec.model, EmbeddedModel) else None,
        )
        for spec in specs
    ]
    agents: list[dict[str, Any]] = []
    models: list[dict[str, Any]] = []
    terminations: list[dict[str, Any]] = []
    for team in teams:
        config = team["config"]
        agents.extend(config["participants"])
        models.extend(p["config"]["model_client"] for p in config["participants"] if p["config"].get("model_client"))
        if config.get("model_client"):
            models.append(config["model_client"])
        if config.get("termination_condition"):
            terminations.append(config["termination_condition"])
    tools = []
    for registration in skills:
        tool = as_tool(registration.skill).dump_component()
        tool.label, tool.description = registration.skill.name, registration.skill.summary
        tools.append(tool.model_dump(mode="json"))
    version = importlib.metadata.version("autoqwen")
    return {
        "id": "autoqwen",
        "name": "autoqwen workflows",
        "url": None,
        "metadata": {
            "author": "autoqwen",
            "version": version,
            "description": "autoqwen's workflows as AutoGen teams, and its skills as tools (they need autoqwen "
            "installed where AutoGen Studio runs, and `autoqwen serve` for the embedded model).",
            "tags": sorted({tag for spec in specs for tag in spec.tags} | {"autoqwen"}),
            "license": _license(),
            "homepage": None,
            "category": "conversation",
            "last_synced": (now or datetime.now(UTC)).isoformat(),
        },
        "components": {
            "teams": teams,
            "agents": _unique(agents),
            "models": _unique(models),
            "tools": tools,
            "terminations": _unique(terminations),
        },
    }


def gallery_of_workflows(*, base_url: str | None = None) -> tuple[dict[str, Any], list[str]]:
    """The gallery of every named workflow (builtin and user) and skill, and a note per workflow left out."""
    from autoqwen.workflows.catalog import list_workflows
    from autoqwen.workflows.errors import WorkflowError
    from autoqwen.workflows.loader import load_workflow

    skills = load_skills()
    specs, notes = [], []
    for entry in list_workflows():
        if entry.problem is not None:
            notes.append(f"{entry.path}: left out: {entry.problem}")
            continue
        try:
            specs.append(load_workflow(entry.path, skills=skills))
        except WorkflowError as exc:
            notes.append(f"left out: {exc}")
    return export_gallery(specs, skills, base_url=base_url), notes


def _endpoint(spec: WorkflowSpec, base_url: str | None, model: str | None) -> Endpoint:
    if isinstance(spec.model, ExternalModel):
        return Endpoint(
            base_url or spec.model.base_url,
            model or spec.model.model,
            function_calling=spec.model.function_calling is not False,
            context_window=spec.model.context_window,
            model_info=_model_info(spec.model),
        )
    return Endpoint(base_url or EMBEDDED_BASE_URL, model or served_name(spec.model.model))


def _model_info(spec: ExternalModel) -> dict[str, Any] | None:
    """The model_info fields the workflow sets (they win over the defaults, as in a run)."""
    info = getattr(spec, "model_info", None)
    return info.model_dump(mode="json", exclude_none=True) if info is not None else None


def _team(spec: WorkflowSpec, skills: SkillRegistry, endpoint: Endpoint) -> Team:
    from autogen_agentchat.teams import RoundRobinGroupChat, SelectorGroupChat

    from autoqwen.workflows.runner import _termination as termination_condition  # the one runs use

    agents: list[ChatAgent | Team] = [_agent(agent, skills, endpoint) for agent in spec.agents]
    termination = termination_condition(spec, [agent.name for agent in spec.agents])
    max_turns = spec.team.max_turns
    about: dict[str, Any] = {"name": spec.name} | ({"description": spec.description} if spec.description else {})
    if isinstance(spec.team, SelectorTeam):
        client = model_client(endpoint, temperature=0, max_tokens=_SELECTOR_TOKENS)
        prompt = {"selector_prompt": spec.team.selector_prompt} if spec.team.selector_prompt else {}
        return SelectorGroupChat(
            agents,
            client,
            termination_condition=termination,
            max_turns=max_turns,
            **about,
            **prompt,  # type: ignore[arg-type]
        )
    return RoundRobinGroupChat(agents, termination_condition=termination, max_turns=max_turns, **about)


def _agent(spec: AgentSpec, skills: SkillRegistry, endpoint: Endpoint) -> ChatAgent:
    """A portable AutoGen agent for one spec: the same settings `build_agent` gives, AutoGen's own parts."""
    from autogen_agentchat.agents import AssistantAgent, CodeExecutorAgent, UserProxyAgent

    from autoqwen.skills import as_tool

    description = {"description": spec.description} if spec.description else {}
    if isinstance(spec, AssistantSpec):
        try:
            tools = [as_tool(skills.get(name)) for name in spec.skills]
        except SkillError as exc:
            raise InteropError(f"workflow agent {spec.name}: {exc}") from exc
        client = model_client(endpoint, temperature=spec.temperature, max_tokens=spec.max_tokens)
        system = {"system_message": spec.system_message} if spec.system_message is not None else {}
        return AssistantAgent(
            spec.name,
            client,
            tools=list(tools) or None,
            reflect_on_tool_use=spec.reflect_on_tool_use if tools else None,
            max_tool_iterations=spec.max_tool_iterations,
            **system,  # type: ignore[arg-type]
            **description,  # type: ignore[arg-type]
        )
    if isinstance(spec, CodeExecutorSpec):
        from autogen_ext.code_executors.local import LocalCommandLineCodeExecutor

        with warnings.catch_warnings():  # "runs code on this machine, without approval": export_notes says it
            warnings.simplefilter("ignore")
            executor = LocalCommandLineCodeExecutor(timeout=spec.timeout_s)
            return CodeExecutorAgent(
                spec.name,
                executor,
                supported_languages=list(spec.languages),
                **description,  # type: ignore[arg-type]
            )
    return UserProxyAgent(spec.name, **description)  # type: ignore[arg-type]


def _hints(spec: WorkflowSpec, endpoint: Endpoint) -> dict[str, Any]:
    """What the workflow says that AutoGen's component has no field for."""
    model = spec.model.model_dump(mode="json") | {
        "exported_base_url": endpoint.base_url,
        "exported_model": endpoint.model,
    }
    return {
        "format": HINTS_FORMAT,
        "name": spec.name,
        "description": spec.description,
        "tags": list(spec.tags),
        "inputs": {name: value.model_dump(mode="json") for name, value in spec.inputs.items()},
        "task": spec.task,
        "human_input": spec.human_input,
        "team_type": spec.team.type,
        "model": model,
        "auto_replies": {a.name: a.auto_reply for a in spec.agents if a.kind == "user_proxy"},
    }


def _components(data: Any) -> Iterator[dict[str, Any]]:
    """Every component (a mapping with a `provider`) inside `data`, outer ones first."""
    if isinstance(data, dict):
        if "provider" in data:
            yield data
        for value in data.values():
            yield from _components(value)
    elif isinstance(data, list):
        for item in data:
            yield from _components(item)


def _unique(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The items without repeats (same JSON), in order."""
    seen: dict[str, dict[str, Any]] = {}
    for item in items:
        seen.setdefault(json.dumps(item, sort_keys=True), item)
    return list(seen.values())


def _license() -> str | None:
    try:
        metadata = importlib.metadata.metadata("autoqwen")
    except importlib.metadata.PackageNotFoundError:
        return None
    return metadata["License-Expression"] or metadata["License"] or None
