"""AutoGen agents (assistant, user proxy, code executor) and model clients built from YAML specs.

Agents reach the model only over the OpenAI HTTP API: the embedded local_llm server or any external one.
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

__all__ = [
    "AGENT_KINDS",
    "AgentBuildError",
    "AgentContext",
    "AgentError",
    "AgentSpec",
    "AssistantSpec",
    "CodeExecutorSpec",
    "EmbeddedModel",
    "Endpoint",
    "ExternalModel",
    "HumanMode",
    "ModelEndpointError",
    "ModelSpec",
    "UserProxySpec",
    "build_agent",
    "external_endpoint",
    "model_client",
]
