"""`autoqwen mcp serve`: the registered skills as MCP tools, checked with the `mcp` SDK's own client over stdio,
loopback streamable HTTP and in memory."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.memory import create_connected_server_and_client_session
from mcp.types import CallToolResult, TextContent
from typer.testing import CliRunner

from autoqwen.cli import app
from autoqwen.paths import user_skills_dir
from autoqwen.skills import load_skills
from autoqwen.skills.mcp_server import skills_mcp_server

SKILLS = '''
from autoqwen.skills import skill


@skill
def add_numbers(a: int, b: int) -> str:
    """Add two whole numbers."""
    print("a skill that prints must not break the stdio protocol")
    return f"sum={a + b}"


@skill
def word_stats(text: str) -> dict:
    """Count the words and letters of a text."""
    return {"words": len(text.split()), "letters": sum(c.isalpha() for c in text)}


@skill
def explode(reason: str) -> str:
    """Always fails."""
    raise RuntimeError(f"broke on purpose: {reason}")


@skill(secrets=["MCP_TEST_TOKEN"])
def needs_token(q: str) -> str:
    """Needs a secret."""
    return q
'''

SERVED = ["add_numbers", "word_stats", "explode", "needs_token"]
AUTOQWEN = [sys.executable, "-c", "from autoqwen.cli import app; app()"]  # the CLI, in this interpreter


@pytest.fixture
def user_skills() -> Path:
    """The test's skills, in the user skills folder (AUTOQWEN_HOME is the test's own, and subprocesses inherit it)."""
    folder = user_skills_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "mcp_test_skills.py"
    path.write_text(SKILLS)
    return path


def _text(result: CallToolResult) -> str:
    return "\n".join(part.text for part in result.content if isinstance(part, TextContent))


async def _exercise(session: ClientSession) -> dict[str, Any]:
    """List the tools and call each kind once, as an MCP client would."""
    await session.initialize()
    tools = {tool.name: tool for tool in (await session.list_tools()).tools}
    return {
        "tools": tools,
        "add": await session.call_tool("add_numbers", {"a": 2, "b": 40}),
        "stats": await session.call_tool("word_stats", {"text": "two words"}),
        "explode": await session.call_tool("explode", {"reason": "test"}),
        "bad_args": await session.call_tool("add_numbers", {"a": "two"}),
        "secret": await session.call_tool("needs_token", {"q": "x"}),
        "unknown": await session.call_tool("no_such_skill", {}),
    }


def _check(seen: dict[str, Any]) -> None:
    tools = seen["tools"]
    assert set(SERVED) <= set(tools)
    registry = load_skills(warn=False)
    # The skill's own schema, as agents see it, is the tool's input schema.
    assert tools["add_numbers"].inputSchema == registry.get("add_numbers").parameters
    assert tools["add_numbers"].description == "Add two whole numbers."
    assert not seen["add"].isError and _text(seen["add"]) == "sum=42"
    assert not seen["stats"].isError and json.loads(_text(seen["stats"])) == {"words": 2, "letters": 8}
    assert seen["explode"].isError and "broke on purpose: test" in _text(seen["explode"])
    assert seen["bad_args"].isError and "add_numbers" in _text(seen["bad_args"])
    assert "a:" in _text(seen["bad_args"]) and "b:" in _text(seen["bad_args"])
    assert seen["secret"].isError and "MCP_TEST_TOKEN" in _text(seen["secret"])
    assert seen["unknown"].isError and "no_such_skill" in _text(seen["unknown"])


def test_skills_as_tools_in_memory(user_skills: Path) -> None:
    """Results are text (JSON for non-strings); a failing skill, bad arguments, a missing secret and an unknown
    tool are error results (isError), and the server goes on answering."""

    async def main() -> dict[str, Any]:
        server = skills_mcp_server(load_skills(warn=False), SERVED)
        async with create_connected_server_and_client_session(server) as session:
            seen = await _exercise(session)
            seen["tools"] = {t.name: t for t in (await session.list_tools()).tools}
            assert set(seen["tools"]) == set(SERVED)  # --skill NAME limits what is served
            return seen

    _check(asyncio.run(main()))


def test_mcp_serve_over_stdio(user_skills: Path) -> None:
    """`autoqwen mcp serve` (stdio, every skill) answers the SDK's stdio client; builtins are served too."""
    params = StdioServerParameters(command=AUTOQWEN[0], args=[*AUTOQWEN[1:], "mcp", "serve"], env=dict(os.environ))

    async def main() -> dict[str, Any]:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            return await asyncio.wait_for(_exercise(session), 60)

    seen = asyncio.run(main())
    _check(seen)
    assert "web_fetch" in seen["tools"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def http_server(user_skills: Path) -> Iterator[str]:
    """`autoqwen mcp serve --http --port P --skill ...` in a subprocess; its URL once it answers."""
    port = _free_port()
    picks = [arg for name in SERVED for arg in ("--skill", name)]
    command = [*AUTOQWEN, "mcp", "serve", "--http", "--port", str(port), *picks]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"mcp serve --http exited: {proc.stderr.read().decode() if proc.stderr else ''}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(10)


def test_mcp_serve_over_http(http_server: str) -> None:
    """`--http` serves streamable HTTP on 127.0.0.1 for the SDK's client; `--skill` limits the tools."""

    async def main() -> dict[str, Any]:
        async with streamable_http_client(http_server) as (read, write, _), ClientSession(read, write) as session:
            return await asyncio.wait_for(_exercise(session), 60)

    seen = asyncio.run(main())
    _check(seen)
    assert set(seen["tools"]) == set(SERVED)


def test_mcp_serve_refuses_an_unknown_skill(user_skills: Path) -> None:
    """An unknown --skill is an error message and exit code 1, before anything is served."""
    result = CliRunner().invoke(app, ["mcp", "serve", "--skill", "no_such_skill"])
    assert result.exit_code == 1
    assert "no_such_skill" in result.output
