"""`autoqwen sessions list|show|delete`: the runs kept in the session store."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from autoqwen.terminal import terminal_safe

app = typer.Typer(help="Stored sessions: list, show and delete them.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")]


def register(root: typer.Typer) -> None:
    """Add the sessions command group to the root app."""
    root.add_typer(app, name="sessions")


@app.command("list")
def list_sessions(
    limit: Annotated[int | None, typer.Option("--limit", "-n", min=1, help="Show only the newest N.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List sessions, newest first: id, workflow, status, start time, turns and tokens."""
    from autoqwen.workflows.store import SessionStore
    from autoqwen.workflows.transcript import STATUS_STYLES

    with SessionStore() as store:
        sessions = store.list_sessions(limit=limit)
    if as_json:
        typer.echo(json.dumps([s.model_dump(mode="json", exclude={"spec"}) for s in sessions], indent=2))
        return
    table = Table(box=None, header_style="bold")
    table.add_column("id", no_wrap=True, min_width=20)  # never cut: people copy ids from here
    table.add_column("workflow", no_wrap=True)
    table.add_column("status", no_wrap=True, min_width=11)
    table.add_column("started", no_wrap=True, min_width=16)
    table.add_column("turns", justify="right", no_wrap=True)
    table.add_column("tokens", justify="right", no_wrap=True)
    out = Console()
    wide = out.width >= 100  # the title only where it fits beside the columns scripts and people need
    if wide:
        table.add_column("title", overflow="ellipsis", no_wrap=True)
    for s in sessions:
        status = Text(s.status, STATUS_STYLES[s.status])
        started = f"{s.started_at.astimezone():%Y-%m-%d %H:%M}"
        workflow = Text(terminal_safe(s.workflow) + (" (imported)" if s.imported else ""))
        cells: list[str | Text] = [s.id, workflow, status, started, str(s.turns), str(s.tokens)]
        table.add_row(*cells, *([Text(terminal_safe(s.title))] if wide else []))
    out.print(table if sessions else "No sessions yet: `autoqwen run WORKFLOW` records one.")


@app.command("show")
def show_session(
    session_id: Annotated[str, typer.Argument(metavar="ID", help="Session id (see `autoqwen sessions list`).")],
    as_json: JsonOption = False,
) -> None:
    """Show a session's transcript: each message with its agent; tool calls and results marked; imported or not."""
    from autoqwen.workflows.store import SessionStore
    from autoqwen.workflows.transcript import print_record

    with SessionStore() as store:
        record = store.get_record(session_id)
    if as_json:
        typer.echo(record.model_dump_json(indent=2))
        return
    print_record(Console(), record)


@app.command("delete")
def delete_session(
    session_id: Annotated[str, typer.Argument(metavar="ID", help="Session id (see `autoqwen sessions list`).")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a session, its messages and its files."""
    from autoqwen.workflows.store import SessionStore

    with SessionStore() as store:
        session = store.get_session(session_id)
        if not yes:
            typer.confirm(
                f"Delete session {session.id} ({session.title!r}, {session.message_count} messages)?", abort=True
            )
        store.delete_session(session_id)
    Console(stderr=True).print(f"deleted session {session_id}", highlight=False)
