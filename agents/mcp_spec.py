"""MCP servers as written in workflow and agent YAML: their tools become an assistant's tools.

mcp:
  - {command: python, args: [my_server.py], env: {LOG_LEVEL: info}, timeout: 10}   # stdio: a process we start
  - {url: "http://127.0.0.1:8000/mcp", timeout: 5}                                 # streamable HTTP

`transport` (stdio or http) may be left out: an entry with a `url` is http, any other is stdio. `timeout` bounds
every step with the server (start and list its tools, one tool call, shutdown). `env` and `headers` often hold
secrets: they are kept out of reprs, logs and error messages.
"""

from __future__ import annotations

import shlex
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from autoqwen.agents.errors import McpServerError

__all__ = ["MCP_TRANSPORTS", "McpHttpServer", "McpServerSpec", "McpStdioServer", "parse_mcp_server"]

_SPEC = ConfigDict(extra="forbid", frozen=True)
DEFAULT_TIMEOUT_S = 10.0


class McpStdioServer(BaseModel):
    """An MCP server that autoqwen starts as a process and talks to over its stdin/stdout."""

    model_config = _SPEC
    transport: Literal["stdio"] = Field(default="stdio", description="stdio (the default when there is no url)")
    command: str = Field(min_length=1, description="the program to start, e.g. python, npx, uvx")
    args: tuple[str, ...] = Field(default=(), description="its arguments")
    env: dict[str, str] = Field(
        default_factory=dict,
        repr=False,
        description="extra environment variables (the process gets only these plus PATH, HOME and the like)",
    )
    cwd: str | None = Field(default=None, description="the folder to start it in")
    timeout: float = Field(
        default=DEFAULT_TIMEOUT_S, gt=0, le=3600, description="seconds allowed to start and list tools, or for a call"
    )

    @property
    def label(self) -> str:
        """How messages name the server: its command line (never its environment)."""
        return shlex.join([self.command, *self.args])


class McpHttpServer(BaseModel):
    """An MCP server already running, reached over streamable HTTP."""

    model_config = _SPEC
    transport: Literal["http"] = Field(default="http", description="streamable HTTP (the default with a url)")
    url: str = Field(pattern=r"^https?://", description="its endpoint, e.g. http://127.0.0.1:8000/mcp")
    headers: dict[str, str] = Field(default_factory=dict, repr=False, description="HTTP headers sent on each request")
    timeout: float = Field(
        default=DEFAULT_TIMEOUT_S, gt=0, le=3600, description="seconds allowed to connect and list tools, or for a call"
    )

    @property
    def label(self) -> str:
        """How messages name the server: its URL."""
        return self.url


MCP_TRANSPORTS: dict[str, type[BaseModel]] = {"stdio": McpStdioServer, "http": McpHttpServer}


def _default_transport(data: Any) -> Any:
    # A discriminated union needs its tag present: an entry with a url is http, any other one stdio.
    if isinstance(data, dict) and "transport" not in data:
        return {**data, "transport": "http" if "url" in data else "stdio"}
    return data


McpServerSpec = Annotated[
    Annotated[McpStdioServer | McpHttpServer, Field(discriminator="transport")],
    BeforeValidator(_default_transport),
]
"""One MCP server: a union on `transport` (stdio: `command`, `args`, `env`; http: `url`, `headers`)."""


def parse_mcp_server(text: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> McpStdioServer | McpHttpServer:
    """A server from one command-line string: `http(s)://...` is a URL, anything else a command line to start;
    `McpServerError` when it cannot be read.

    parse_mcp_server("python server.py --flag")      # McpStdioServer(command="python", args=("server.py", "--flag"))
    parse_mcp_server("http://127.0.0.1:8000/mcp")    # McpHttpServer(url=...)
    """
    text = text.strip()
    try:
        if text.startswith(("http://", "https://")):
            return McpHttpServer(url=text, timeout=timeout)
        words = shlex.split(text)
        if not words:
            raise ValueError("give a command line or an http(s) URL")
        return McpStdioServer(command=words[0], args=tuple(words[1:]), timeout=timeout)
    except ValueError as exc:  # shlex's, ours, or pydantic's (a ValidationError is a ValueError)
        problem = "; ".join(e["msg"] for e in exc.errors()) if isinstance(exc, ValidationError) else str(exc)
        raise McpServerError(f"cannot read the MCP server {text!r}: {problem}", server=text) from None
