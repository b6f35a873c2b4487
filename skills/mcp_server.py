"""autoqwen's skills as an MCP server, for any MCP client (Claude Desktop, an IDE, another agent framework).

    server = skills_mcp_server(load_skills(), names=["web_fetch"])   # every skill when names is empty
    await serve_stdio(server)                                         # or: serve_http(server, port=8000)

Built on the `mcp` SDK's low-level server: each skill's own JSON schema is the tool's input schema (so the client
sees exactly what agents see), a result is text content (a string as is, anything else as JSON), and a skill that
raises (bad arguments, a missing secret, a failure) answers an error result (`isError`), never a crash. Over HTTP
the server listens on 127.0.0.1 only, with the SDK's DNS-rebinding protection on.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from autoqwen.skills._registry import SkillRegistry
from autoqwen.skills._skill import Skill
from autoqwen.skills.errors import SkillError

if TYPE_CHECKING:
    from mcp import types
    from mcp.server.lowlevel import Server
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
    from starlette.applications import Starlette
    from starlette.types import Receive, Scope, Send

__all__ = ["MCP_PATH", "http_app", "serve_http", "serve_stdio", "skills_mcp_server"]

log = logging.getLogger("autoqwen.skills")

MCP_PATH = "/mcp"
"""Where the streamable HTTP endpoint is: http://127.0.0.1:PORT/mcp."""


def skills_mcp_server(registry: SkillRegistry, names: Iterable[str] = ()) -> Server[Any, Any]:
    """An MCP server offering the named skills of `registry` (all of them when `names` is empty) as tools.

    An unknown name raises `SkillNotFound` here, before anything is served."""
    from mcp import types
    from mcp.server.lowlevel import Server

    wanted = list(dict.fromkeys(names))
    skills: dict[str, Skill] = (
        {n: registry.get(n) for n in wanted} if wanted else {r.skill.name: r.skill for r in registry}
    )
    server: Server[Any, Any] = Server("autoqwen-skills", instructions="autoqwen skills: typed Python functions.")

    @server.list_tools()  # type: ignore[no-untyped-call,untyped-decorator]
    async def list_tools() -> list[types.Tool]:
        return [
            types.Tool(name=skill.name, description=skill.description, inputSchema=skill.parameters)
            for skill in skills.values()
        ]

    # The skill validates its own arguments (pydantic, with messages naming the field): no second check by jsonschema.
    @server.call_tool(validate_input=False)  # type: ignore[untyped-decorator]
    async def call_tool(name: str, arguments: dict[str, Any]) -> types.CallToolResult:
        skill = skills.get(name)
        if skill is None:
            return _error(f"no skill called {name!r} is served here (tools: {', '.join(skills) or 'none'})")
        try:
            result = await skill.acall(arguments)
        except SkillError as exc:
            return _error(str(exc))
        except Exception as exc:  # a skill's own failure is its caller's to read, not the server's end
            log.info("skill %s failed: %s: %s", name, type(exc).__name__, exc)
            return _error(f"skill {name!r} failed: {type(exc).__name__}: {exc}")
        return types.CallToolResult(content=[types.TextContent(type="text", text=_as_text(result))])

    return server


async def serve_stdio(server: Server[Any, Any]) -> None:
    """Serve over this process's stdin/stdout until the client closes them."""
    from mcp.server.stdio import stdio_server

    async with stdio_server() as (read, write):
        # The transport holds the real stdout now; a skill that prints must not write into the protocol stream.
        real_stdout, sys.stdout = sys.stdout, sys.stderr
        try:
            await server.run(read, write, server.create_initialization_options())
        finally:
            sys.stdout = real_stdout


def http_app(server: Server[Any, Any]) -> Starlette:
    """The streamable HTTP app (endpoint MCP_PATH) for `server`, accepting only loopback Host and Origin headers."""
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
    from mcp.server.transport_security import TransportSecuritySettings
    from starlette.applications import Starlette
    from starlette.routing import Route

    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
        allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
    )
    manager = StreamableHTTPSessionManager(app=server, security_settings=security)
    return Starlette(
        routes=[Route(MCP_PATH, endpoint=_Endpoint(manager), methods=["GET", "POST", "DELETE"])],
        lifespan=lambda _app: manager.run(),
    )


def serve_http(server: Server[Any, Any], *, port: int = 8000) -> None:
    """Serve over streamable HTTP at http://127.0.0.1:PORT/mcp until interrupted (loopback only, by design)."""
    import uvicorn

    uvicorn.run(http_app(server), host="127.0.0.1", port=port, log_level="warning")


class _Endpoint:
    """The session manager as a plain ASGI endpoint (Starlette passes it the raw scope, as the SDK's own does)."""

    def __init__(self, manager: StreamableHTTPSessionManager) -> None:
        self.manager = manager

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.manager.handle_request(scope, receive, send)


def _error(message: str) -> types.CallToolResult:
    from mcp import types

    return types.CallToolResult(content=[types.TextContent(type="text", text=message)], isError=True)


def _as_text(result: Any) -> str:
    """A skill's result as the text a client reads: a string unchanged, anything else as JSON."""
    if isinstance(result, str):
        return result
    return json.dumps(result, default=str, ensure_ascii=False)
