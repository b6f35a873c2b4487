"""MCP servers' tools as an assistant's tools: small FastMCP servers over stdio (a script the test writes) and
loopback streamable HTTP, used by workflows on the tiny model's server; failures are bounded in time."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from autoqwen.agents import McpServerError, McpServers, McpStdioServer, list_mcp_tools, parse_mcp_server
from autoqwen.cli import app
from autoqwen.local_llm import EmbeddedServer
from autoqwen.workflows.errors import RunError, SpecError
from autoqwen.workflows.loader import load_workflow
from autoqwen.workflows.runner import RunOptions, run_workflow
from autoqwen.workflows.store import SessionStore

# One FastMCP server for both transports: `python server.py LOG` serves stdio, `... LOG PORT` loopback HTTP. Every
# call is appended to LOG, so a test sees what reached the server.
SERVER = '''
import json, os, sys
import anyio
from mcp.server.fastmcp import FastMCP

LOG = sys.argv[1]
mcp = FastMCP("test-tools", host="127.0.0.1", port=int(sys.argv[2]) if len(sys.argv) > 2 else 8000)

def logged(name, **args):
    with open(LOG, "a") as f:
        f.write(json.dumps({"tool": name, "args": args, "env": os.environ.get("SECRET_TOKEN")}) + "\\n")

@mcp.tool()
def add(a: int, b: int) -> str:
    """Add two whole numbers."""
    logged("add", a=a, b=b)
    return f"sum={a + b}"

@mcp.tool()
def explode(reason: str) -> str:
    """Always fails."""
    logged("explode", reason=reason)
    raise ValueError("the tool broke on purpose")

@mcp.tool()
async def stall(reason: str) -> str:
    """Never answers in time."""
    logged("stall", reason=reason)
    await anyio.sleep(30)  # async: FastMCP runs a sync tool on its event loop, which would block every other call
    return "late"

if len(sys.argv) > 2:
    mcp.run(transport="streamable-http")
else:
    print("test server starting", file=sys.stderr)
    mcp.run()
'''
EXITS = "import sys\nprint('missing setting FOO, giving up', file=sys.stderr)\nsys.exit(3)\n"
SILENT = "import time\ntime.sleep(60)\n"  # started, reads nothing, answers nothing


def script(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def server_script(tmp_path: Path, *tools: str) -> Path:
    """SERVER with only `tools` registered (all three when none are named)."""
    text = SERVER
    for name in {"add", "explode", "stall"} - set(tools or ("add", "explode", "stall")):
        text = text.replace(f"@mcp.tool()\ndef {name}", f"def {name}")
        text = text.replace(f"@mcp.tool()\nasync def {name}", f"async def {name}")
    return script(tmp_path, f"server-{'-'.join(tools) or 'all'}.py", text)


def calls(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture
def stdio_server(tmp_path: Path) -> tuple[McpStdioServer, Path]:
    log = tmp_path / "calls.jsonl"
    path = script(tmp_path, "server.py", SERVER)
    return McpStdioServer(command=sys.executable, args=(str(path), str(log)), timeout=20), log


@pytest.fixture
def http_url(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The same server over streamable HTTP on 127.0.0.1, run in this process by uvicorn on a free port."""
    import uvicorn
    from mcp.server.fastmcp import FastMCP

    log = tmp_path / "http-calls.jsonl"
    mcp = FastMCP("http-tools", host="127.0.0.1")

    @mcp.tool()
    def add(a: int, b: int) -> str:
        """Add two whole numbers."""
        with log.open("a") as f:
            f.write(json.dumps({"tool": "add", "args": {"a": a, "b": b}}) + "\n")
        return f"sum={a + b}"

    server = uvicorn.Server(uvicorn.Config(mcp.streamable_http_app(), host="127.0.0.1", port=0, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/mcp", log
    server.should_exit = True
    thread.join(10)


def flow(tmp_path: Path, mcp: str, *, tool_hint: str = "add", name: str = "flow.yaml") -> Path:
    path = tmp_path / name
    path.write_text(
        "name: mcp-flow\n"
        "agents:\n"
        "  - {name: helper, max_tokens: 120, temperature: 0}\n"
        "team: {type: round_robin, max_turns: 1}\n"
        "termination: {after: [helper]}\n"
        f"task: Use the {tool_hint} tool.\n"
        f"mcp:\n{mcp}"
    )
    return path


def run(path: Path, server: EmbeddedServer) -> tuple[Any, SessionStore]:
    store = SessionStore()
    result = run_workflow(load_workflow(path), RunOptions(base_url=server.base_url, seed=0), store=store)
    return result, store


# --- the spec -------------------------------------------------------------------------------------------------------


def test_the_transport_follows_from_the_fields_and_errors_name_the_field(tmp_path: Path) -> None:
    good = flow(
        tmp_path, "  - {command: python, args: [s.py], env: {TOKEN: hush}}\n  - {url: 'http://127.0.0.1:9/mcp'}\n"
    )
    spec = load_workflow(good)
    assert [s.transport for s in spec.mcp] == ["stdio", "http"]
    assert "hush" not in repr(spec) and "hush" not in repr(spec.mcp_servers())  # env values stay out of reprs/logs
    bad = {
        "  - {command: python, headers: {A: b}}\n": "mcp.0.headers: unknown field for transport stdio "
        "(it belongs to transport http)",
        "  - {args: [x]}\n": "mcp.0.command: field required",
        "  - {url: 'ftp://x'}\n": "mcp.0.url: String should match pattern",
        "  - {command: python, timeout: 0}\n": "mcp.0.timeout: Input should be greater than 0",
        "  - {command: python, env: {TOKEN: 3}}\n": "mcp.0.env.TOKEN: Input should be a valid string",
    }
    for text, message in bad.items():
        with pytest.raises(SpecError, match=r"flow\.yaml:\d+: " + message.replace("(", r"\(").replace(")", r"\)")):
            load_workflow(flow(tmp_path, text))
    with pytest.raises(SpecError) as info:  # the offending value is never quoted back
        load_workflow(flow(tmp_path, "  - {command: python, env: {TOKEN: [sk-secret-value]}}\n"))
    assert "sk-secret-value" not in str(info.value)


def test_an_assistant_names_its_own_servers(tmp_path: Path) -> None:
    path = tmp_path / "own.yaml"
    path.write_text(
        "name: own\nagents:\n  - name: a\n    mcp: [{command: srv}]\n  - {name: b, mcp: [{command: srv}, {url: 'http://127.0.0.1:1/mcp'}]}\n"
        "task: hi\n"
    )
    spec = load_workflow(path)
    assert [s.label for s in spec.mcp_servers()] == ["srv", "http://127.0.0.1:1/mcp"]  # each server once


def test_a_command_line_or_url_names_a_server() -> None:
    assert parse_mcp_server("python 'my server.py' --x").args == ("my server.py", "--x")
    assert parse_mcp_server("https://127.0.0.1:1/mcp", timeout=3).timeout == 3
    with pytest.raises(McpServerError, match="cannot read the MCP server"):
        parse_mcp_server("python 'unclosed")


# --- listing and calling tools --------------------------------------------------------------------------------------


def test_a_stdio_servers_tools_keep_their_schemas_closed(stdio_server: tuple[McpStdioServer, Path]) -> None:
    tools = {t["name"]: t for t in asyncio.run(list_mcp_tools(stdio_server[0]))}
    assert set(tools) == {"add", "explode", "stall"}
    add = tools["add"]["parameters"]
    assert add["required"] == ["a", "b"] and add["properties"]["a"]["type"] == "integer"
    assert add["additionalProperties"] is False and tools["add"]["description"] == "Add two whole numbers."


def test_skills_list_shows_an_mcp_servers_tools(stdio_server: tuple[McpStdioServer, Path]) -> None:
    server = stdio_server[0]
    result = CliRunner().invoke(app, ["skills", "list", "--mcp", server.label])
    assert result.exit_code == 0, result.output
    assert "add" in result.output and "Add two whole numbers." in result.output and "explode" in result.output


def test_skills_list_reaches_a_streamable_http_server(http_url: tuple[str, Path]) -> None:
    result = CliRunner().invoke(app, ["skills", "list", "--mcp", http_url[0]])
    assert result.exit_code == 0, result.output
    assert "add" in result.output and f"mcp {http_url[0]}" in result.output


def test_skills_list_names_a_server_that_fails(tmp_path: Path) -> None:
    path = script(tmp_path, "exits.py", EXITS.replace("giving up", "giving up \x1b[2J"))
    result = CliRunner().invoke(app, ["skills", "list", "--mcp", f"{sys.executable} {path}", "--timeout", "5"])
    assert result.exit_code == 1
    assert "failed: Connection closed; its stderr ends with: missing setting FOO" in result.output
    assert "\x1b" not in result.output  # the server's stderr is shown, escaped, never obeyed


def test_a_failing_or_slow_call_is_an_error_result_and_the_server_goes_on(tmp_path: Path) -> None:
    log = tmp_path / "calls.jsonl"
    path = script(tmp_path, "server.py", SERVER)
    server = McpStdioServer(command=sys.executable, args=(str(path), str(log)), timeout=3)
    servers = McpServers([server])

    async def use() -> tuple[str, str, str, float]:
        from autogen_core import CancellationToken
        from autogen_core.tools import StaticWorkbench

        bench = StaticWorkbench(servers.tools())  # how AssistantAgent runs its tools
        broke = await bench.call_tool("explode", {"reason": "x"}, CancellationToken())
        started = time.monotonic()
        late = await bench.call_tool("stall", {"reason": "y"}, CancellationToken())
        waited = time.monotonic() - started
        fine = await bench.call_tool("add", {"a": 2, "b": 3}, CancellationToken())
        assert broke.is_error and late.is_error and not fine.is_error
        return broke.to_text(), late.to_text(), fine.to_text(), waited

    broke, late, fine, waited = asyncio.run(servers.serve(use()))
    assert "explode failed" in broke and "the tool broke on purpose" in broke
    assert "stall did not answer within 3 s" in late and 2.9 < waited < 6
    assert fine == "sum=5"
    assert [c["tool"] for c in calls(log)] == ["explode", "stall", "add"]


# --- failures are bounded -------------------------------------------------------------------------------------------


def test_a_server_that_exits_at_once_fails_fast_with_its_stderr(tmp_path: Path) -> None:
    path = script(tmp_path, "exits.py", EXITS)
    started = time.monotonic()
    with pytest.raises(McpServerError, match=r"failed: .*missing setting FOO, giving up") as info:
        asyncio.run(list_mcp_tools(McpStdioServer(command=sys.executable, args=(str(path),), timeout=20)))
    assert time.monotonic() - started < 10  # it does not wait out the timeout
    assert info.value.server.endswith("exits.py")


def test_a_missing_command_is_named() -> None:
    with pytest.raises(McpServerError, match="no-such-mcp-server-xyz failed: FileNotFoundError"):
        asyncio.run(list_mcp_tools(McpStdioServer(command="no-such-mcp-server-xyz", timeout=5)))


def test_a_server_that_never_answers_list_tools_times_out(tmp_path: Path) -> None:
    path = script(tmp_path, "silent.py", SILENT)
    started = time.monotonic()
    with pytest.raises(McpServerError, match=r"did not list its tools within 1\.5 s"):
        asyncio.run(list_mcp_tools(McpStdioServer(command=sys.executable, args=(str(path),), timeout=1.5)))
    assert time.monotonic() - started < 1.5 + 5  # the timeout, then the SDK's stop (two seconds' grace, then kill)


def test_a_run_whose_server_does_not_start_stops_cleanly(tmp_path: Path, tiny_server: EmbeddedServer) -> None:
    path = script(tmp_path, "silent.py", SILENT)
    started = time.monotonic()
    with pytest.raises(RunError, match="did not list its tools within 1 s") as info:
        run(flow(tmp_path, f"  - {{command: {sys.executable}, args: ['{path}'], timeout: 1}}\n"), tiny_server)
    assert time.monotonic() - started < 30
    session = SessionStore().get_session(str(info.value.session_id))
    assert session.status == "failed" and "did not list its tools" in (session.error or "")


def test_a_server_name_in_env_must_be_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MCP_TEST_UNSET", raising=False)
    server = McpStdioServer(command=sys.executable, env={"TOKEN": "${MCP_TEST_UNSET}"}, timeout=5)
    with pytest.raises(McpServerError, match="needs the environment variable MCP_TEST_UNSET"):
        asyncio.run(list_mcp_tools(server))


# --- in workflows ---------------------------------------------------------------------------------------------------


def test_a_workflow_calls_a_stdio_servers_tool(
    tmp_path: Path,
    tiny_server: EmbeddedServer,
    stdio_server: tuple[McpStdioServer, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = stdio_server[1]
    monkeypatch.setenv("MCP_TEST_TOKEN", "tok-123")
    args = json.dumps([str(server_script(tmp_path, "add")), str(log)])
    entry = f"  - {{command: {sys.executable}, args: {args}, env: {{SECRET_TOKEN: '${{MCP_TEST_TOKEN}}'}}}}\n"
    result, store = run(flow(tmp_path, entry), tiny_server)
    messages = store.get_messages(result.session_id)
    assert [(m.source, m.type) for m in messages] == [
        ("user", "text"),
        ("helper", "tool_call"),
        ("helper", "tool_result"),
        ("helper", "text"),
    ]
    call, outcome = messages[1].content[0], messages[2].content[0]
    reached = calls(log)
    assert len(reached) == 1 and reached[0]["tool"] == call["name"] == "add"  # the task names it; the grammar picks
    assert reached[0]["args"] == json.loads(call["arguments"])  # what the model sent is what reached the server
    assert reached[0]["env"] == "tok-123"  # `${NAME}` env values come from autoqwen's environment
    assert outcome["content"] == f"sum={reached[0]['args']['a'] + reached[0]['args']['b']}"
    assert not outcome["is_error"] and result.status == "finished"
    assert "tok-123" not in json.dumps(store.get_session(result.session_id).spec)  # the snapshot keeps the reference


def test_a_workflow_calls_a_streamable_http_servers_tool(
    tmp_path: Path, tiny_server: EmbeddedServer, http_url: tuple[str, Path]
) -> None:
    url, log = http_url
    result, store = run(flow(tmp_path, f"  - {{url: '{url}'}}\n"), tiny_server)
    messages = store.get_messages(result.session_id)
    outcome = next(m for m in messages if m.type == "tool_result").content[0]
    [reached] = calls(log)
    assert outcome["content"] == f"sum={reached['args']['a'] + reached['args']['b']}" and not outcome["is_error"]


def test_a_tool_that_raises_is_reported_and_the_run_goes_on(
    tmp_path: Path, tiny_server: EmbeddedServer, stdio_server: tuple[McpStdioServer, Path]
) -> None:
    log = stdio_server[1]
    path = server_script(tmp_path, "explode")  # only the failing tool, so the model can only call that one
    entry = f"  - {{command: {sys.executable}, args: ['{path}', '{log}']}}\n"
    result, store = run(flow(tmp_path, entry, tool_hint="explode"), tiny_server)
    kinds = [(m.source, m.type) for m in store.get_messages(result.session_id)]
    assert kinds == [("user", "text"), ("helper", "tool_call"), ("helper", "tool_result"), ("helper", "text")]
    outcome = store.get_messages(result.session_id)[2].content[0]
    assert outcome["is_error"] and "the tool broke on purpose" in outcome["content"]
    assert result.status == "finished" and [c["tool"] for c in calls(log)] == ["explode"]


def test_a_tool_name_taken_twice_is_refused(tmp_path: Path, tiny_server: EmbeddedServer) -> None:
    log = tmp_path / "calls.jsonl"
    path = server_script(tmp_path, "add")
    entry = f"  - {{command: {sys.executable}, args: ['{path}', '{log}']}}\n"
    again = f"{{command: {sys.executable}, args: ['{path}', '{log}'], env: {{AGAIN: '1'}}}}"  # another server
    twice = flow(tmp_path, entry).read_text().replace("- {name: helper,", f"- {{name: helper, mcp: [{again}],")
    with pytest.raises(RunError, match="two of its tools are called 'add'"):
        run(script(tmp_path, "twice.yaml", twice), tiny_server)


def test_an_imported_session_does_not_start_the_servers_its_snapshot_names(tmp_path: Path) -> None:
    from autoqwen.workflows import export_sessions, import_session
    from autoqwen.workflows.runner import resume_workflow

    marker = tmp_path / "started.txt"
    evil = script(tmp_path, "evil.py", f"open({str(marker)!r}, 'w').write('ran')\n")
    spec = {
        "name": "hostile",
        "agents": [{"name": "a", "kind": "assistant"}],
        "mcp": [{"command": sys.executable, "args": [str(evil)]}],
        "task": "hi",
    }
    with SessionStore(tmp_path / "their-home") as theirs:
        session = theirs.create_session("hostile", spec=spec)
        theirs.append_message(session.id, "user", "hi")
        theirs.finish_session(session.id, "stopped")
        [folder] = export_sessions(theirs, [session.id], tmp_path / "their-gallery")
    with SessionStore() as store:
        imported = import_session(store, folder)
        with pytest.raises(RunError, match=r"starts or reaches MCP servers .*evil\.py.*--trust-imported"):
            resume_workflow(imported.id, RunOptions(base_url="http://127.0.0.1:9/v1"), store=store)
    assert not marker.exists()


WEATHER = '''
import json, sys
from mcp.server.fastmcp import FastMCP

mcp = FastMCP("weather")

@mcp.tool()
def get_weather(city: str) -> str:
    """Get the current weather in a city."""
    with open(sys.argv[1], "a") as f:
        f.write(json.dumps({"tool": "get_weather", "args": {"city": city}}) + "\\n")
    return "Paris: 17 degrees celsius, light rain" if city.strip().lower() == "paris" else f"{city}: no data"

mcp.run()
'''


@pytest.mark.model
def test_the_bundled_model_calls_an_mcp_tool_in_a_workflow(tmp_path: Path, bundled_server: EmbeddedServer) -> None:
    log = tmp_path / "weather.jsonl"
    server = script(tmp_path, "weather.py", WEATHER)
    path = tmp_path / "weather.yaml"
    path.write_text(
        "name: weather\n"
        "agents:\n"
        "  - {name: helper, max_tokens: 96, temperature: 0}\n"
        "team: {type: round_robin, max_turns: 1}\n"
        "termination: {after: [helper]}\n"
        "task: What is the weather in Paris?\n"
        f"mcp:\n  - {{command: {sys.executable}, args: ['{server}', '{log}'], timeout: 30}}\n"
    )
    result, store = run(path, bundled_server)
    messages = store.get_messages(result.session_id)
    [reached] = calls(log)
    assert reached["args"]["city"].strip().lower() == "paris"
    outcome = next(m for m in messages if m.type == "tool_result").content[0]
    assert outcome["content"] == "Paris: 17 degrees celsius, light rain" and not outcome["is_error"]
    final = messages[-1]
    assert final.type == "text" and final.source == "helper" and final.text().strip()
