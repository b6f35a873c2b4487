"""`autoqwen skills`: list, show, add, remove and run skills (typed Python functions that agents call as tools)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from autoqwen.terminal import terminal_safe

if TYPE_CHECKING:
    pass

__all__ = ["app"]

app = typer.Typer(help="List, inspect, add, remove and run skills.", no_args_is_help=True)
console = Console()
err_console = Console(stderr=True)


@app.command("list")
def list_skills(
    mcp: Annotated[
        list[str] | None,
        typer.Option(
            "--mcp", help="List this MCP server's tools instead: a command line or an http(s) URL; repeatable."
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait for an MCP server.", min=0.1, max=3600)
    ] = 10,
) -> None:
    """List every skill: name, source and what it does (problems loading skills are shown after)."""
    if mcp:
        _list_mcp_tools(mcp, timeout)
        return
    from autoqwen.skills import load_skills

    registry = load_skills(warn=False)
    table = Table("name", "source", "description", box=None, pad_edge=False)
    for entry in registry:
        table.add_row(entry.skill.name, entry.source.label, Text(terminal_safe(entry.skill.summary)))
    console.print(table)
    for problem in registry.problems:
        err_console.print(f"[yellow]warning:[/] {problem.message}", highlight=False)


def _list_mcp_tools(servers: list[str], timeout: float) -> None:
    """The tools of MCP servers, listed like skills (their names and descriptions are the server's: escaped)."""
    import asyncio

    from autoqwen.agents import list_mcp_tools, parse_mcp_server

    table = Table("name", "source", "description", box=None, pad_edge=False)
    for text in servers:
        server = parse_mcp_server(text, timeout=timeout)
        for tool in asyncio.run(list_mcp_tools(server)):
            summary = (tool.get("description") or "").strip().splitlines()[:1]
            table.add_row(
                Text(terminal_safe(tool["name"])),
                Text(terminal_safe(f"mcp {server.label}")),
                Text(terminal_safe(" ".join(summary))),
            )
    console.print(table)


@app.command()
def show(name: Annotated[str, typer.Argument(help="Skill name.")]) -> None:
    """Show a skill's source, description, needed secrets and tool JSON schema."""
    from autoqwen.skills import load_skills

    entry = load_skills().registration(name)
    console.print(f"[bold]{entry.skill.name}[/]  ({entry.source})", highlight=False)
    console.print(terminal_safe(entry.skill.description), markup=False, highlight=False)
    if entry.skill.secrets:
        console.print(f"secrets (environment variables): {', '.join(entry.skill.secrets)}", highlight=False)
    console.print_json(json.dumps(entry.skill.tool_schema()))


@app.command()
def add(
    file: Annotated[Path, typer.Argument(help="A Python file with @skill functions.", dir_okay=False)],
    force: Annotated[bool, typer.Option("--force", "-f", help="Replace a user skill file of the same name.")] = False,
) -> None:
    """Check a skill file (it imports, has skills, their schemas build) and copy it into the user skills folder."""
    from autoqwen.skills import add_skill_file

    change = add_skill_file(file, force=force)
    verb = "Replaced" if change.replaced else "Added"
    console.print(f"{verb} {change.path} with skills: {', '.join(change.skills)}", highlight=False)


@app.command()
def remove(name: Annotated[str, typer.Argument(help="Skill name (or user file name).")]) -> None:
    """Delete the user skill file that defines NAME; builtins and installed-package skills cannot be removed."""
    from autoqwen.skills import remove_skill

    change = remove_skill(name)
    what = f" (skills: {', '.join(change.skills)})" if change.skills else ""
    console.print(f"Removed {change.path}{what}", highlight=False)


@app.command()
def run(
    name: Annotated[str, typer.Argument(help="Skill name.")],
    arg: Annotated[
        list[str] | None, typer.Option("--arg", "-a", help="An argument as KEY=VALUE (JSON for lists); repeatable.")
    ] = None,
) -> None:
    """Call a skill by hand, as a model would, and print what it returns."""
    from autoqwen.skills import load_skills, parse_arguments

    skill = load_skills().get(name)
    result = skill.call(parse_arguments(skill, arg or []))
    # What a skill returns comes from outside (a web page, an API): control characters are shown, not obeyed.
    if isinstance(result, str):
        console.print(terminal_safe(result), markup=False, highlight=False, soft_wrap=True)
    else:
        console.print_json(json.dumps(result, default=str), ensure_ascii=True)
