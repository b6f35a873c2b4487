"""Errors raised while turning agent specs into AutoGen agents; the CLI prints their message and exits with 1.

* AgentError                    root: catch this
  + ModelEndpointError          an external model server is misconfigured (e.g. its API key variable is unset)
  + AgentBuildError             an agent spec cannot be built (unknown skill, code execution not allowed, ...)
"""

from __future__ import annotations

__all__ = ["AgentBuildError", "AgentError", "ModelEndpointError"]


class AgentError(Exception):
    """Base class of every error the agents package raises on purpose."""


class ModelEndpointError(AgentError):
    """The model server named by a spec cannot be used as configured."""


class AgentBuildError(AgentError):
    """An agent spec could not be turned into an AutoGen agent; `agent` names it."""

    def __init__(self, message: str, *, agent: str) -> None:
        super().__init__(message)
        self.agent = agent
