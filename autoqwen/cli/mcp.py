"""`autoqwen mcp`: serve autoqwen's skills to MCP clients (stdio by default, or streamable HTTP on 127.0.0.1)."""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = ["app"]

app = typer.Typer(help="Serve skills over the Model Context Protocol (MCP).", no_args_is_help=True)


@app.command()
def serve(
    skill: Annotated[
        list[str] | None, typer.Option("--skill", "-s", help="Serve only this skill (repeatable); default: all.")
    ] = None,
    http: Annotated[bool, typer.Option("--http", help="Serve streamable HTTP on 127.0.0.1 instead of stdio.")] = False,
    port: Annotated[
        int, typer.Option("--port", "-p", help="Port for --http (endpoint /mcp).", min=1, max=65535)
    ] = 8000,
) -> None:
    """Offer the registered skills (builtins, installed packages, the user folder) as MCP tools."""
    import asyncio

    from autoqwen.skills import load_skills
    from autoqwen.skills.mcp_server import MCP_PATH, serve_http, serve_stdio, skills_mcp_server

    server = skills_mcp_server(load_skills(), skill or [])
    if http:
        typer.echo(f"MCP server at http://127.0.0.1:{port}{MCP_PATH} (Ctrl-C to stop)", err=True)
        serve_http(server, port=port)
    else:
        asyncio.run(serve_stdio(server))
