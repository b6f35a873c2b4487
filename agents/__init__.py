"""AutoGen agents (assistant, user proxy, code executor) and model clients built from YAML specs.

Agents reach the model only over the OpenAI HTTP API: the embedded local_llm server or any external one. Their
model contexts fit the model's context window (`ContextWindow`); code blocks run under `code_execution`'s limits.
"""

from __future__ import annotations

from autoqwen.agents.build import AgentContext, Endpoint, HumanMode, build_agent, external_endpoint, model_client
from autoqwen.agents.errors import AgentBuildError, AgentError, ModelEndpointError
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

__all__ = [
    "AGENT_KINDS",
    "DEFAULT_CONTEXT_WINDOW",
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
    "ModelEndpointError",
    "ModelSpec",
    "TokenEstimate",
    "UserProxySpec",
    "build_agent",
    "external_endpoint",
    "model_client",
]
