"""How an AgentChat team component maps onto a workflow spec (used by autogen_import; see its docstring).

Every value is read as data and checked; what has no autoqwen equivalent is named in a note with its JSON path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from autoqwen.skills import SkillRegistry, load_skills
from autoqwen.workflows.autogen_studio import HINTS_KEY
from autoqwen.workflows.errors import InteropError
from autoqwen.workflows.spec import MAX_TURNS_CAP, WorkflowSpec

__all__ = ["ImportedTeam", "slug", "team_to_spec"]

_LANGUAGES = ("python", "bash", "sh")
_KNOWN_KEYS = ("none", "", "**********")  # placeholders, not keys
_EXTERNAL_HINTS = ("base_url", "api_key_env", "function_calling", "model_info", "context_window")


@dataclass
class ImportedTeam:
    """A workflow made from a team component: its spec, what was not mapped, and the file written (if any)."""

    spec: WorkflowSpec
    notes: list[str] = field(default_factory=list)
    path: Path | None = None


def team_to_spec(
    component: Any,
    *,
    name: str | None = None,
    skills: SkillRegistry | None = None,
    where: str = "$",
    path: Path | None = None,
) -> ImportedTeam:
    """The workflow a team component describes, and notes on what it leaves out."""
    return _Mapper(skills if skills is not None else load_skills(), path).team(component, where, name)


def slug(text: str) -> str:
    """A workflow name from a label: lower case, runs of other characters as '-'."""
    return re.sub(r"[^a-z0-9_]+", "-", text.lower()).strip("-_") or "imported"


def _short(provider: str) -> str:
    return provider.rsplit(".", 1)[-1]


def _default(cls_path: str, parameter: str) -> Any:
    """An AutoGen class's default for a constructor argument (what a dump holds when none was given)."""
    import importlib
    import inspect

    module, _, name = cls_path.rpartition(".")
    return inspect.signature(getattr(importlib.import_module(module), name)).parameters[parameter].default


class _Mapper:
    """One import: the skills tools map to, the notes gathered on the way, the JSON path of each agent."""

    def __init__(self, skills: SkillRegistry, path: Path | None) -> None:
        self.skills = skills
        self.path = path
        self.notes: list[str] = []
        self.agent_paths: list[str] = []

    def fail(self, where: str, message: str) -> InteropError:
        prefix = f"{self.path}: " if self.path else ""
        return InteropError(f"{prefix}{where}: {message}", path=self.path, where=where)

    def mapping(self, value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, f"expected an object, got {type(value).__name__}")
        return value

    def text(self, obj: dict[str, Any], key: str, where: str) -> str:
        value = obj.get(key)
        if not isinstance(value, str):
            raise self.fail(f"{where}.{key}", "expected a string" if key in obj else "missing")
        return value

    def items(self, obj: dict[str, Any], key: str, where: str) -> list[Any]:
        value = obj.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(f"{where}.{key}", "expected a list")
        return value

    def team(self, component: Any, where: str, name: str | None) -> ImportedTeam:
        team = self.mapping(component, where)
        provider = _short(self.text(team, "provider", where))
        config = self.mapping(team.get("config"), f"{where}.config")
        hints = _obj(team.get(HINTS_KEY))
        agents: list[dict[str, Any]] = []
        clients: list[tuple[dict[str, Any], str]] = []
        for i, item in enumerate(self.items(config, "participants", f"{where}.config")):
            at = f"{where}.config.participants[{i}]"
            agent = self.agent(self.mapping(item, at), at, hints, clients)
            if agent is not None:
                agents.append(agent)
                self.agent_paths.append(at)
        if not agents:
            raise self.fail(f"{where}.config.participants", "no agent this program can run (see the notes)")
        team_spec = self.team_type(provider, config, where, hints, len(agents), clients)
        data: dict[str, Any] = {
            "name": name or hints.get("name") or slug(str(team.get("label") or "imported")),
            "description": hints.get("description", " ".join(str(team.get("description") or "").split())[:300]),
            "tags": hints.get("tags", []),
            "agents": agents,
            "team": team_spec,
            "termination": self.termination(config.get("termination_condition"), f"{where}.config"),
            "human_input": hints.get("human_input", "never"),
            "model": self.model(clients, hints),
            "task": hints.get("task", "{task}"),
            "inputs": hints.get("inputs", {"task": {"description": "The task for the team"}}),
        }
        if any(agent.get("kind") == "code_executor" for agent in agents):
            self.notes.append("code execution stays off: run it with --execute-code to let its code executor run code")
        try:
            spec = WorkflowSpec.model_validate(data)
        except ValidationError as exc:
            raise self.fail(*self.locate(exc)) from None
        return ImportedTeam(spec, self.notes)

    def locate(self, exc: ValidationError) -> tuple[str, str]:
        """The JSON path of the first validation error's agent (else the team) and its message."""
        error = exc.errors()[0]
        loc = [part for part in error["loc"] if not (isinstance(part, str) and part[:1].isupper())]
        loc = [part for part in loc if part not in ("assistant", "user_proxy", "code_executor")]
        field_name = ".".join(str(part) for part in loc)
        message = error["msg"].removeprefix("Value error, ")
        if len(loc) >= 2 and loc[0] == "agents" and isinstance(loc[1], int) and loc[1] < len(self.agent_paths):
            return self.agent_paths[loc[1]], f"the workflow field {field_name}: {message}"
        return "$", f"the workflow field {field_name or 'workflow'}: {message}"

    def agent(
        self, agent: dict[str, Any], where: str, hints: dict[str, Any], clients: list[tuple[dict[str, Any], str]]
    ) -> dict[str, Any] | None:
        provider = self.text(agent, "provider", where)
        config = self.mapping(agent.get("config"), f"{where}.config")
        name = self.text(config, "name", f"{where}.config")
        about = config.get("description")
        description = about if isinstance(about, str) else ""
        cls_path = _agentchat(provider)
        if cls_path is not None and description == _default(cls_path, "description"):
            description = ""  # AutoGen's own, written when the agent had none
        kind = _short(provider)
        if kind == "AssistantAgent":
            return self.assistant(config, f"{where}.config", name, description, clients)
        if kind == "UserProxyAgent":
            replies = _obj(hints.get("auto_replies"))
            reply = {"auto_reply": replies[name]} if name in replies else {}
            return {"name": name, "kind": "user_proxy", "description": description, **reply}
        if kind == "CodeExecutorAgent":
            return self.code_executor(config, f"{where}.config", name, description)
        self.notes.append(f"{where}: agent {name!r} ({provider}) has no autoqwen equivalent: left out")
        return None

    def assistant(
        self,
        config: dict[str, Any],
        where: str,
        name: str,
        description: str,
        clients: list[tuple[dict[str, Any], str]],
    ) -> dict[str, Any]:
        client = self.mapping(config.get("model_client"), f"{where}.model_client")
        clients.append((client, f"{where}.model_client"))
        options = _obj(client.get("config"))
        system = config.get("system_message")
        if system == _default("autogen_agentchat.agents.AssistantAgent", "system_message"):
            system = None
        skills = self.tools(config, where)
        agent: dict[str, Any] = {"name": name, "description": description, "system_message": system, "skills": skills}
        agent |= {key: options[key] for key in ("temperature", "max_tokens") if options.get(key) is not None}
        if skills and isinstance(config.get("reflect_on_tool_use"), bool):
            agent["reflect_on_tool_use"] = config["reflect_on_tool_use"]
        iterations = config.get("max_tool_iterations")
        if isinstance(iterations, int) and not isinstance(iterations, bool):
            agent["max_tool_iterations"] = min(max(iterations, 1), 10)
        return agent

    def tools(self, config: dict[str, Any], where: str) -> list[str]:
        """The skills an agent's tools map to, by name; every other tool is named in a note, never loaded."""
        found: list[tuple[Any, str]] = [
            (t, f"{where}.tools[{i}]") for i, t in enumerate(self.items(config, "tools", where))
        ]
        for i, bench in enumerate(self.items(config, "workbench", where)):
            at = f"{where}.workbench[{i}]"
            bench = self.mapping(bench, at)
            if not _short(str(bench.get("provider"))).startswith("Static"):
                self.notes.append(f"{at}: workbench {bench.get('provider')} (an MCP server?) is not imported")
                continue
            bench_config = self.mapping(bench.get("config", {}), f"{at}.config")
            found += [(t, f"{at}.config.tools[{j}]") for j, t in enumerate(self.items(bench_config, "tools", at))]
        skills = []
        for tool, at in found:
            tool = self.mapping(tool, at)
            tool_config = _obj(tool.get("config"))
            tool_name = tool_config.get("name")
            if isinstance(tool_name, str) and tool_name in self.skills:
                skills.append(tool_name)
            elif "source_code" in tool_config:
                self.notes.append(
                    f"{at}: tool {tool_name!r} is given as source code, which is never run here: left out "
                    "(write it as a skill: `autoqwen skills add`)"
                )
            else:
                self.notes.append(f"{at}: tool {tool_name!r} ({tool.get('provider')}) is not a known skill: left out")
        return list(dict.fromkeys(skills))

    def code_executor(self, config: dict[str, Any], where: str, name: str, description: str) -> dict[str, Any]:
        agent: dict[str, Any] = {"name": name, "kind": "code_executor", "description": description}
        executor = config.get("code_executor")
        timeout = _obj(_obj(executor).get("config")).get("timeout")
        if isinstance(timeout, int) and not isinstance(timeout, bool):
            agent["timeout_s"] = min(max(timeout, 1), 3600)
        languages = [str(x) for x in self.items(config, "supported_languages", where)]
        if languages:
            kept = [language for language in languages if language in _LANGUAGES]
            if len(kept) < len(languages):
                self.notes.append(f"{where}.supported_languages: only {', '.join(_LANGUAGES)} are run here")
            agent["languages"] = kept or ["python"]
        if config.get("model_client"):
            self.notes.append(f"{where}.model_client: a code executor that writes code itself is not supported")
        return agent

    def team_type(
        self,
        provider: str,
        config: dict[str, Any],
        where: str,
        hints: dict[str, Any],
        count: int,
        clients: list[tuple[dict[str, Any], str]],
    ) -> dict[str, Any]:
        turns = config.get("max_turns")
        if not isinstance(turns, int) or isinstance(turns, bool) or turns < 1:
            self.notes.append(f"{where}.config.max_turns: not set; the team stops after 10 turns")
            turns = 10
        elif turns > MAX_TURNS_CAP:
            self.notes.append(f"{where}.config.max_turns: {turns} turns capped at {MAX_TURNS_CAP}")
            turns = MAX_TURNS_CAP
        if provider == "SelectorGroupChat":
            prompt = config.get("selector_prompt")
            if prompt == _default("autogen_agentchat.teams.SelectorGroupChat", "selector_prompt"):
                prompt = None
            if isinstance(config.get("model_client"), dict):
                clients.append((config["model_client"], f"{where}.config.model_client"))
            return {"type": "selector", "max_turns": turns, "selector_prompt": prompt}
        if provider != "RoundRobinGroupChat":
            self.notes.append(f"{where}.provider: team {provider} has no autoqwen equivalent: imported as round_robin")
        two = hints.get("team_type") == "two_agent" and count == 2
        return {"type": "two_agent" if two else "round_robin", "max_turns": turns}

    def termination(self, component: Any, where: str) -> dict[str, Any]:
        """Our termination fields from an OR of AutoGen conditions; absent conditions are off."""
        found: dict[str, Any] = {"text": None, "after": [], "max_messages": None, "timeout_s": None}
        pending = [(component, f"{where}.termination_condition")] if component is not None else []
        fields = {
            "TextMentionTermination": ("text", "text"),
            "SourceMatchTermination": ("after", "sources"),
            "MaxMessageTermination": ("max_messages", "max_messages"),
            "TimeoutTermination": ("timeout_s", "timeout_seconds"),
        }
        while pending:
            item, at = pending.pop(0)
            item = self.mapping(item, at)
            kind = _short(str(item.get("provider")))
            config = self.mapping(item.get("config", {}), f"{at}.config")
            if kind == "OrTerminationCondition":
                pending += [
                    (c, f"{at}.config.conditions[{i}]") for i, c in enumerate(self.items(config, "conditions", at))
                ]
            elif kind in fields and fields[kind][1] in config:
                ours, theirs = fields[kind]
                if found[ours] not in (None, []):
                    self.notes.append(f"{at}: a second {kind} is left out (only one is kept)")
                else:
                    found[ours] = config[theirs]
            else:
                self.notes.append(f"{at}: termination {item.get('provider')} has no autoqwen equivalent: left out")
        return found

    def model(self, clients: list[tuple[dict[str, Any], str]], hints: dict[str, Any]) -> dict[str, Any]:
        """The workflow's model server, from the first model client (agents here share one)."""
        hint = _obj(hints.get("model"))
        if not clients:
            return {"kind": "embedded"}
        client, at = clients[0]
        provider = str(client.get("provider"))
        config = _obj(client.get("config"))
        if _short(provider) != "OpenAIChatCompletionClient" and provider != "openai_chat_completion_client":
            self.notes.append(f"{at}: model client {provider} is not supported: the workflow uses the embedded model")
            return {"kind": "embedded"}
        servers = {(_obj(c.get("config")).get("base_url"), _obj(c.get("config")).get("model")) for c, _ in clients}
        if len(servers) > 1:
            self.notes.append(f"{at}: the agents use different models; all of them use this one here")
        base_url, model = config.get("base_url"), config.get("model")
        if not isinstance(model, str):
            raise self.fail(f"{at}.config.model", "expected a string")
        if hint.get("kind") == "embedded" and hint.get("exported_base_url") == base_url:
            return {"kind": "embedded", "model": hint.get("model", "auto")}
        if config.get("api_key") not in _KNOWN_KEYS:
            self.notes.append(f"{at}.config.api_key: the API key is not copied: name its variable in model.api_key_env")
        ours: dict[str, Any] = {}
        if hint.get("kind") == "external" and (hint.get("exported_base_url"), hint.get("exported_model")) == (
            base_url,
            model,
        ):  # the workflow's own settings, for the server it was exported for
            ours = {key: hint[key] for key in _EXTERNAL_HINTS if key in hint}
        elif not isinstance(base_url, str):
            ours = {"api_key_env": "OPENAI_API_KEY"}
        info = _obj(config.get("model_info"))
        if "function_calling" not in ours and isinstance(info.get("function_calling"), bool):
            ours["function_calling"] = info["function_calling"]
        url = base_url if isinstance(base_url, str) else "https://api.openai.com/v1"
        return {"kind": "external", "base_url": hint.get("base_url", url) if ours else url, "model": model} | ours


def _agentchat(provider: str) -> str | None:
    """The AgentChat class path of an agent provider this module maps, else None."""
    kind = _short(provider)
    return (
        f"autogen_agentchat.agents.{kind}"
        if kind in ("AssistantAgent", "UserProxyAgent", "CodeExecutorAgent")
        else None
    )


def _obj(value: Any) -> dict[str, Any]:
    """`value` when it is a JSON object, else an empty one (for optional parts read leniently)."""
    return value if isinstance(value, dict) else {}
