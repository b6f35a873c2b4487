"""AutoGen agents (assistant, user proxy, code executor) and model clients built from YAML specs.

Agents reach the model only over the OpenAI HTTP API: the embedded local_llm server or any external one.
"""

from __future__ import annotations

from autoqwen.agents.build import AgentContext, Endpoint, HumanMode, build_agent, external_endpoint, model_client
from autoqwen.agents.errors import AgentBuildError, AgentError, ModelEndpointError
from autoqwen.agents.spec import AgentSpec, EmbeddedModel, ExternalModel, ModelSpec

__all__ = [
    "AgentBuildError",
    "AgentContext",
    "AgentError",
    "AgentSpec",
    "EmbeddedModel",
    "Endpoint",
    "ExternalModel",
    "HumanMode",
    "ModelEndpointError",
    "ModelSpec",
    "build_agent",
    "external_endpoint",
    "model_client",
]
