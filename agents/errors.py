"""Errors raised while turning agent specs into AutoGen agents; the CLI prints their message and exits with 1.

* AgentError                    root: catch this
  + ModelEndpointError          an external model server is misconfigured (e.g. its API key variable is unset)
  + AgentBuildError             an agent spec cannot be built (unknown skill, code execution not allowed, ...)
  + McpServerError              an MCP server did not start, list its tools or stop within its timeout
"""

from __future__ import annotations

__all__ = ["AgentBuildError", "AgentError", "McpServerError", "ModelEndpointError"]


class AgentError(Exception):
    """Base class of every error the agents package raises on purpose."""


class ModelEndpointError(AgentError):
    """The model server named by a spec cannot be used as configured."""


class AgentBuildError(AgentError):
    """An agent spec could not be turned into an AutoGen agent; `agent` names it."""

    def __init__(self, message: str, *, agent: str) -> None:
        super().__init__(message)
        self.agent = agent


class McpServerError(AgentError):
    """An MCP server that a workflow or agent names failed: it did not start, or did not list its tools in time.

    `server` is how the spec names it (its command line or URL; never its environment or headers)."""

    def __init__(self, message: str, *, server: str) -> None:
        super().__init__(message)
        self.server = server
