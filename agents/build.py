"""Build AutoGen AgentChat agents and model clients from specs; agents reach the model only over HTTP.

endpoint = Endpoint(base_url=server.base_url, model=server.engine.model_id, context_window=4096)
agent = build_agent(spec, AgentContext(endpoint=endpoint, skills=load_skills(), work_dir=folder))

Each assistant gets a model context sized to the endpoint's window (see context.py), so long runs keep going.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from autoqwen.agents.errors import AgentBuildError, ModelEndpointError
from autoqwen.agents.model_info import DEFAULT_MODEL_INFO
from autoqwen.agents.spec import AgentSpec, AssistantSpec, CodeExecutorSpec, ExternalModel, UserProxySpec
from autoqwen.agents.window import DEFAULT_CONTEXT_WINDOW, ContextWindow
from autoqwen.skills import SkillError, SkillRegistry

if TYPE_CHECKING:
    from autogen_agentchat.base import ChatAgent
    from autogen_core.tools import BaseTool
    from autogen_ext.models.openai import OpenAIChatCompletionClient

    from autoqwen.agents.mcp_tools import McpServers

__all__ = ["AgentContext", "Endpoint", "HumanMode", "build_agent", "external_endpoint", "model_client"]

HumanMode = Literal["never", "terminate", "always"]


@dataclass(frozen=True)
class Endpoint:
    """An OpenAI-compatible server as agents see it: base URL, model name, API key, context window in tokens
    (None when the server does not say: agents then assume DEFAULT_CONTEXT_WINDOW), and AutoGen's model_info
    (None: DEFAULT_MODEL_INFO with `function_calling`; see model_info.py)."""

    base_url: str
    model: str
    api_key: str = "none"
    function_calling: bool = True
    context_window: int | None = None
    model_info: Mapping[str, object] | None = None


def external_endpoint(spec: ExternalModel) -> Endpoint:
    """The endpoint of an external server; its API key comes from the environment variable the spec names."""
    api_key = "none"
    if spec.api_key_env:
        api_key = os.environ.get(spec.api_key_env, "")
        if not api_key:
            raise ModelEndpointError(
                f"the model server {spec.base_url} needs an API key: set the environment variable {spec.api_key_env}"
            )
    calls = spec.function_calling if spec.function_calling is not None else True
    return Endpoint(spec.base_url, spec.model, api_key, calls, spec.context_window)


def model_client(
    endpoint: Endpoint,
    *,
    temperature: float | None = None,
    max_tokens: int | None = None,
    seed: int | None = None,
    window: ContextWindow | None = None,
    agent: str = "",
) -> OpenAIChatCompletionClient:
    """An AutoGen OpenAI client for `endpoint`; `model_info` (the endpoint's) is always given so any model name works.

    With a `window`, the client calibrates its token estimate from each reply, and re-trims and retries a prompt
    the server refuses as too long (reported as `agent`'s trim).
    """
    from autogen_ext.models.openai import OpenAIChatCompletionClient

    from autoqwen.agents.context import WindowedClient

    options = {"temperature": temperature, "max_tokens": max_tokens, "seed": seed}
    windowed = {"window": window, "agent": agent, "reserve": window.reserve(max_tokens)} if window else {}
    cls = WindowedClient if window else OpenAIChatCompletionClient
    info = {**DEFAULT_MODEL_INFO, "function_calling": endpoint.function_calling, **(endpoint.model_info or {})}
    return cls(
        **windowed,  # type: ignore[arg-type]
        model=endpoint.model,
        base_url=endpoint.base_url,
        api_key=endpoint.api_key,
        model_info=info,  # type: ignore[arg-type]
        **{k: v for k, v in options.items() if v is not None},  # type: ignore[arg-type]
    )


@dataclass
class AgentContext:
    """What building agents needs besides their specs: the model endpoint, skills, human input, a work folder."""

    endpoint: Endpoint
    skills: SkillRegistry
    work_dir: Path
    human: HumanMode = "never"
    input_func: Callable[[str], str] = input
    code_execution: bool = False
    seed: int | None = None
    window: ContextWindow = field(default_factory=lambda: ContextWindow(tokens=0))
    """The model's window, shared by the run's agents; left unset, it is the endpoint's (else the default)."""
    mcp: McpServers | None = None
    """The run's MCP servers, started (`McpServers.serve`); their tools join each assistant's skills."""

    def __post_init__(self) -> None:
        if self.window.tokens <= 0:
            self.window.tokens = self.endpoint.context_window or DEFAULT_CONTEXT_WINDOW


def build_agent(spec: AgentSpec, ctx: AgentContext) -> ChatAgent:
    """The AutoGen agent for one spec."""
    if isinstance(spec, AssistantSpec):
        return _assistant(spec, ctx)
    if isinstance(spec, UserProxySpec):
        return _user_proxy(spec, ctx)
    return _code_executor(spec, ctx)


def _assistant(spec: AssistantSpec, ctx: AgentContext) -> ChatAgent:
    from autogen_agentchat.agents import AssistantAgent

    from autoqwen.skills import as_tool

    try:
        tools: list[BaseTool[Any, Any]] = [as_tool(ctx.skills.get(name)) for name in spec.skills]
    except SkillError as exc:
        raise AgentBuildError(f"agent {spec.name}: {exc}", agent=spec.name) from exc
    tools += _mcp_tools(spec, ctx, {tool.name for tool in tools})
    if tools and not ctx.endpoint.function_calling:
        raise AgentBuildError(
            f"agent {spec.name} uses skills or MCP tools, but the model server is marked function_calling: false",
            agent=spec.name,
        )
    from autoqwen.agents.context import WindowedContext

    client = model_client(
        ctx.endpoint,
        temperature=spec.temperature,
        max_tokens=spec.max_tokens,
        seed=ctx.seed,
        window=ctx.window,
        agent=spec.name,
    )
    extra = {"system_message": spec.system_message} if spec.system_message is not None else {}
    default_system = inspect.signature(AssistantAgent).parameters["system_message"].default
    system = spec.system_message if spec.system_message is not None else default_system
    schemas = json.dumps([tool.schema for tool in tools])
    context = WindowedContext(
        ctx.window, agent=spec.name, fixed_text=system + schemas, reserve=ctx.window.reserve(spec.max_tokens)
    )
    return AssistantAgent(
        spec.name,
        client,
        model_context=context,
        tools=list(tools) or None,
        description=spec.description or "An agent that provides assistance with ability to use tools.",
        reflect_on_tool_use=spec.reflect_on_tool_use if tools else None,
        max_tool_iterations=spec.max_tool_iterations,
        **extra,  # type: ignore[arg-type]
    )


def _mcp_tools(spec: AssistantSpec, ctx: AgentContext, taken: set[str]) -> list[BaseTool[Any, Any]]:
    """The tools of the MCP servers the assistant (or its workflow) names; a name given twice is refused."""
    if ctx.mcp is None:
        if spec.mcp:
            raise AgentBuildError(
                f"agent {spec.name} names MCP servers, which must be started first (McpServers.serve)", agent=spec.name
            )
        return []
    tools = ctx.mcp.tools(spec.mcp)
    for tool in tools:
        if tool.name in taken:
            raise AgentBuildError(
                f"agent {spec.name}: two of its tools are called {tool.name!r} (a skill or another MCP server's)",
                agent=spec.name,
            )
        taken.add(tool.name)
    return tools


def _user_proxy(spec: UserProxySpec, ctx: AgentContext) -> ChatAgent:
    from autogen_agentchat.agents import UserProxyAgent

    def reply(prompt: str) -> str:
        return ctx.input_func(prompt) if ctx.human == "always" else spec.auto_reply

    return UserProxyAgent(spec.name, description=spec.description or "A human user", input_func=reply)


def _code_executor(spec: CodeExecutorSpec, ctx: AgentContext) -> ChatAgent:
    from autogen_agentchat.agents import ApprovalRequest, ApprovalResponse, CodeExecutorAgent

    from autoqwen.agents.code_execution import BLOCK_NAMES, GroupKillingExecutor

    def approve(_: ApprovalRequest) -> ApprovalResponse:
        if ctx.code_execution:
            return ApprovalResponse(approved=True, reason="code execution is enabled for this run")
        return ApprovalResponse(
            approved=False,
            reason="code execution is off for this workflow: run it again with --execute-code to let it run code",
        )

    ctx.work_dir.mkdir(parents=True, exist_ok=True)
    executor = GroupKillingExecutor(ctx.work_dir, timeout_s=spec.timeout_s, languages=spec.languages)
    return CodeExecutorAgent(
        spec.name,
        executor,
        description=spec.description or "Runs the code blocks it receives and reports their output.",
        # Every fence name is picked out, so a block in a language the workflow does not allow is refused with a
        # reason (by the executor) rather than passed over in silence.
        supported_languages=list(BLOCK_NAMES),
        approval_func=approve,
    )
