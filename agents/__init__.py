"""AutoGen agents (assistant, user proxy, code executor) and model clients built from YAML specs.

Agents reach the model only over the OpenAI HTTP API: the embedded local_llm server or any external one. Their
model contexts fit the model's context window (`ContextWindow`); code blocks run under `code_execution`'s limits.
"""

from __future__ import annotations

import typing as _typing

from autoqwen.agents.build import AgentContext, Endpoint, HumanMode, build_agent, external_endpoint, model_client
from autoqwen.agents.errors import AgentBuildError, AgentError, McpServerError, ModelEndpointError
from autoqwen.agents.mcp_spec import MCP_TRANSPORTS, McpHttpServer, McpServerSpec, McpStdioServer, parse_mcp_server
from autoqwen.agents.spec import (
    AGENT_KINDS,
    AgentSpec,
    AssistantSpec,
    CodeExecutorSpec,
    EmbeddedModel,
    ExternalModel,
    ModelSpec,
    UserProxySpec,
)
from autoqwen.agents.window import DEFAULT_CONTEXT_WINDOW, ContextWindow, TokenEstimate

if _typing.TYPE_CHECKING:
    from autoqwen.agents.mcp_tools import McpServers, list_mcp_tools

__all__ = [
    "AGENT_KINDS",
    "DEFAULT_CONTEXT_WINDOW",
    "MCP_TRANSPORTS",
    "AgentBuildError",
    "AgentContext",
    "AgentError",
    "AgentSpec",
    "AssistantSpec",
    "CodeExecutorSpec",
    "ContextWindow",
    "EmbeddedModel",
    "Endpoint",
    "ExternalModel",
    "HumanMode",
    "McpHttpServer",
    "McpServerError",
    "McpServerSpec",
    "McpServers",
    "McpStdioServer",
    "ModelEndpointError",
    "ModelSpec",
    "TokenEstimate",
    "UserProxySpec",
    "build_agent",
    "external_endpoint",
    "list_mcp_tools",
    "model_client",
    "parse_mcp_server",
]


def __getattr__(name: str) -> _typing.Any:
    # The MCP client imports autogen_core and the mcp SDK: load it only when asked for, so the CLI starts fast.
    if name in ("McpServers", "list_mcp_tools"):
        from autoqwen.agents import mcp_tools

        return getattr(mcp_tools, name)
    raise AttributeError(f"module 'autoqwen.agents' has no attribute {name!r}")
