"""MCP servers' tools as an assistant's tools, through AutoGen's MCP support, with every step bounded in time.

    servers = McpServers(shared=workflow.mcp)         # servers every assistant gets
    result = await servers.serve(run_the_team())        # start them all, run, stop them all
    tools = servers.tools(assistant.mcp)                # while serving: AutoGen tools for one assistant

Each server is started (stdio) or reached (streamable HTTP) once per run by a task of its own that holds the `mcp`
SDK's client session; AutoGen's `mcp_server_tools` turns its tools into AutoGen tools sharing that session. A
server that does not start, or does not answer `list_tools` within its `timeout`, is an `McpServerError` before the
team runs (AutoGen alone waits forever there, microsoft/autogen#6468); a tool call that fails or takes longer than
the timeout is an error result the model sees, and the run goes on.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import tempfile
from collections.abc import AsyncIterator, Awaitable, Iterable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from typing import IO, Any, TypeVar

from autogen_core import CancellationToken
from autogen_core.tools import BaseTool, ToolSchema
from mcp import ClientSession
from mcp.types import TextContent, Tool

from autoqwen.agents.errors import McpServerError
from autoqwen.agents.mcp_spec import McpHttpServer, McpServerSpec, McpStdioServer

__all__ = ["McpConnection", "McpServers", "list_mcp_tools"]

T = TypeVar("T")
_STDERR_TAIL = 600
_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


class McpConnection:
    """One MCP server for the length of a run: started once, its tools listed, stopped at the end.

    conn = McpConnection(McpStdioServer(command="python", args=("server.py",), timeout=5))
    await conn.open()          # McpServerError if it fails or takes longer than its timeout
    conn.tools                 # AutoGen tools, one per MCP tool
    await conn.aclose()
    """

    def __init__(self, server: McpServerSpec) -> None:
        self.server = server
        self.tools: list[BaseTool[Any, Any]] = []
        self._task: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()
        self._stderr: IO[bytes] | None = None

    @property
    def label(self) -> str:
        """The server as messages name it (command line or URL)."""
        return self.server.label

    async def open(self) -> None:
        """Start (or reach) the server and list its tools, within its timeout."""
        if self._task is not None:
            return
        ready: asyncio.Future[list[BaseTool[Any, Any]]] = asyncio.get_running_loop().create_future()
        self._closing = asyncio.Event()
        self._task = asyncio.create_task(self._hold(ready), name=f"mcp server {self.label}")
        try:
            self.tools = await asyncio.wait_for(asyncio.shield(ready), self.server.timeout)
        except TimeoutError:
            tail = self._stderr_tail()
            await self.aclose(wait=False)
            raise McpServerError(
                f"the MCP server {self.label} did not list its tools within {self.server.timeout:g} s "
                f"(set a longer `timeout:` if it is slow to start){tail}",
                server=self.label,
            ) from None
        except McpServerError:
            await self.aclose()
            raise

    async def aclose(self, *, wait: bool = True) -> None:
        """Stop the server: ask it to end (unless `wait` is false), then cancel (the SDK ends a stdio process that
        stays: it closes its stdin, waits two seconds, then terminates it)."""
        task, self._task = self._task, None
        if task is not None:
            self._closing.set()
            done, _ = await asyncio.wait({task}, timeout=self.server.timeout if wait else 0)
            if not done:
                task.cancel()
                await asyncio.wait({task}, timeout=self.server.timeout)
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    async def _hold(self, ready: asyncio.Future[list[BaseTool[Any, Any]]]) -> None:
        """Own the client session (its transport's task group must be entered and left by one task)."""
        try:
            async with AsyncExitStack() as stack:
                session = await stack.enter_async_context(self._session())
                await session.initialize()
                listed = await session.list_tools()
                ready.set_result(
                    [McpTool(_adapter(self.server, tool, session), tool, self.server) for tool in listed.tools]
                )
                await self._closing.wait()
        except Exception as exc:  # the server failed to start, or died; later calls fail as tool results
            if not ready.done():
                message = f"the MCP server {self.label} failed: {describe(exc)}{self._stderr_tail()}"
                ready.set_exception(McpServerError(message, server=self.label))

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[ClientSession]:
        """The `mcp` SDK's client session over stdio or streamable HTTP, every request bounded by the timeout."""
        # The SDK's own timeout is a little longer than ours, so ours (with its clearer message) fires first.
        read_timeout = timedelta(seconds=self.server.timeout + 1)
        async with AsyncExitStack() as stack:
            if isinstance(self.server, McpStdioServer):
                from mcp.client.stdio import StdioServerParameters, stdio_client

                # The server's stderr is untrusted text: kept in a file, and quoted (escaped) only in errors.
                self._stderr = tempfile.TemporaryFile()  # noqa: SIM115  # closed by aclose(), read by errors
                params = StdioServerParameters(
                    command=self.server.command,
                    args=list(self.server.args),
                    env=resolve_values(self.server.env, self.label, "env"),
                    cwd=self.server.cwd,
                )
                read, write = await stack.enter_async_context(stdio_client(params, errlog=self._stderr))  # type: ignore[arg-type]
            else:
                import httpx
                from mcp.client.streamable_http import streamable_http_client

                headers = resolve_values(self.server.headers, self.label, "headers")
                client = await stack.enter_async_context(
                    httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(self.server.timeout + 1))
                )
                read, write, _ = await stack.enter_async_context(
                    streamable_http_client(self.server.url, http_client=client)
                )
            yield await stack.enter_async_context(ClientSession(read, write, read_timeout_seconds=read_timeout))

    def _stderr_tail(self) -> str:
        """The end of what a stdio server wrote to stderr, for error messages (empty when it wrote nothing)."""
        if self._stderr is None or self._stderr.closed:
            return ""
        self._stderr.seek(0)
        text = self._stderr.read().decode("utf-8", errors="replace").strip()
        if not text:
            return ""
        tail = text[-_STDERR_TAIL:]
        return f"; its stderr ends with: {tail if len(text) <= _STDERR_TAIL else '...' + tail}"


class McpTool(BaseTool[Any, Any]):
    """One MCP tool as an AutoGen tool: AutoGen's adapter runs it; the model sees the server's own input schema
    (closed unless it says otherwise), results are text, failures and overlong calls are error results."""

    def __init__(self, adapter: BaseTool[Any, Any], tool: Tool, server: McpServerSpec) -> None:
        self._adapter = adapter
        self._server = server
        self._parameters = _closed(dict(tool.inputSchema))
        super().__init__(adapter.args_type(), object, adapter.name, adapter.description)

    @property
    def schema(self) -> ToolSchema:
        return ToolSchema(name=self.name, description=self.description, parameters=self._parameters, strict=False)  # type: ignore[typeddict-item]

    async def run(self, args: Any, cancellation_token: CancellationToken) -> Any:
        """Call the tool on its server; a failure or a call past the timeout raises, which AutoGen reports to the
        model as an error result."""
        try:
            async with asyncio.timeout(self._server.timeout):
                return await self._adapter.run(args, cancellation_token)
        except TimeoutError:
            raise McpServerError(
                f"the MCP tool {self.name} did not answer within {self._server.timeout:g} s", server=self._server.label
            ) from None
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise McpServerError(
                f"the MCP tool {self.name} failed: {describe(exc)}", server=self._server.label
            ) from exc

    def return_value_as_string(self, value: Any) -> str:
        """Text content as plain text (one part a line); other content as the adapter writes it (JSON)."""
        if isinstance(value, list):
            return "\n".join(
                item.text if isinstance(item, TextContent) else self._adapter.return_value_as_string([item])
                for item in value
            )
        return str(value)


def describe(exc: BaseException) -> str:
    """A one-line account of an error from the SDK or AutoGen: the first leaf of a group, text of MCP content."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc)
    try:  # AutoGen's adapter raises a failed call's content as JSON: keep its text
        parts = json.loads(text)
        text = " ".join(str(p.get("text", "")) for p in parts if isinstance(p, dict)) or text
    except (ValueError, TypeError, AttributeError):
        pass
    return f"{type(exc).__name__}: {text}" if type(exc).__name__ not in ("Exception", "McpError") else text


def resolve_values(values: dict[str, str], server: str, field: str) -> dict[str, str]:
    """`env` / `headers` with `${NAME}` values read from autoqwen's environment (so secrets stay out of YAML)."""
    resolved = {}
    for key, value in values.items():
        match = _ENV_REF.match(value)
        if match:
            name = match.group(1)
            if name not in os.environ:
                raise McpServerError(
                    f"the MCP server {server} needs the environment variable {name} (for {field}.{key})", server=server
                )
            value = os.environ[name]
        resolved[key] = value
    return resolved


class McpServers:
    """The MCP servers of one run, each started once and shared by the assistants that name it.

    `shared` servers are given to every assistant (a workflow's `mcp:`); an assistant's own are added to them.
    """

    def __init__(self, shared: Sequence[McpServerSpec] = ()) -> None:
        self.shared = tuple(shared)
        self._open: dict[str, McpConnection] = {}

    def tools(self, own: Iterable[McpServerSpec] = ()) -> list[BaseTool[Any, Any]]:
        """The tools of the shared servers and `own`, which must have been started by `serve` or `open`."""
        found: list[BaseTool[Any, Any]] = []
        for server in _unique([*self.shared, *own]):
            connection = self._open.get(_key(server))
            if connection is None:
                raise McpServerError(f"the MCP server {server.label} was not started for this run", server=server.label)
            found.extend(connection.tools)
        return found

    async def open(self, servers: Iterable[McpServerSpec] = ()) -> None:
        """Start the shared servers and `servers`, all at once; if one fails, stop the others and raise its error."""
        todo = [McpConnection(s) for s in _unique([*self.shared, *servers]) if _key(s) not in self._open]
        results = await asyncio.gather(*(c.open() for c in todo), return_exceptions=True)
        for connection in todo:
            self._open[_key(connection.server)] = connection
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            await self.aclose()
            raise failed[0]

    async def aclose(self) -> None:
        """Stop every server started so far."""
        connections, self._open = list(self._open.values()), {}
        await asyncio.gather(*(c.aclose() for c in connections), return_exceptions=True)

    async def serve(self, work: Awaitable[T], servers: Iterable[McpServerSpec] = ()) -> T:
        """Start the servers, await `work`, and stop them whatever happens (`work` is dropped if one fails)."""
        try:
            await self.open(servers)
        except BaseException:
            if asyncio.iscoroutine(work):
                work.close()
            raise
        try:
            return await work
        finally:
            await self.aclose()


async def list_mcp_tools(server: McpServerSpec) -> list[ToolSchema]:
    """The tools one MCP server offers (name, description, input schema), e.g. for `autoqwen skills list --mcp`."""
    servers = McpServers([server])

    async def schemas() -> list[ToolSchema]:
        return [tool.schema for tool in servers.tools()]

    return await servers.serve(schemas())


def _closed(schema: dict[str, Any]) -> dict[str, Any]:
    """An MCP input schema as an OpenAI `parameters` object: an object, closed unless it says otherwise."""
    if "$defs" in schema:
        import jsonref  # type: ignore[import-untyped]

        schema = dict(jsonref.replace_refs(schema, proxies=False))
        schema.pop("$defs", None)
    schema["type"] = "object"
    schema.setdefault("properties", {})
    schema.setdefault("additionalProperties", False)
    return schema


def _adapter(server: McpServerSpec, tool: Tool, session: ClientSession) -> BaseTool[Any, Any]:
    """AutoGen's adapter for one tool, running on the connection's session (its parameters, without `env` or
    `headers`, only name the server)."""
    from autogen_ext.tools.mcp import (
        StdioMcpToolAdapter,
        StdioServerParams,
        StreamableHttpMcpToolAdapter,
        StreamableHttpServerParams,
    )

    if isinstance(server, McpHttpServer):
        params = StreamableHttpServerParams(url=server.url, timeout=server.timeout)
        return StreamableHttpMcpToolAdapter(server_params=params, tool=tool, session=session)
    stdio = StdioServerParams(command=server.command, args=list(server.args), read_timeout_seconds=server.timeout)
    return StdioMcpToolAdapter(server_params=stdio, tool=tool, session=session)


def _key(server: McpServerSpec) -> str:
    return server.model_dump_json()


def _unique(servers: Iterable[McpServerSpec]) -> list[McpServerSpec]:
    return list({_key(s): s for s in servers}.values())
