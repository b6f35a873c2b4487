"""`autoqwen export ID… --gallery DIR` and `autoqwen gallery import DIR/<id>`: sessions as static gallery folders."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

gallery_app = typer.Typer(
    help="Gallery folders: read exported sessions back into the store; an AutoGen Studio gallery of the workflows.",
    no_args_is_help=True,
)


def register(root: typer.Typer) -> None:
    """Add the export command and the gallery command group to the root app."""
    root.command("export")(export)
    root.add_typer(gallery_app, name="gallery")


def export(
    session_ids: Annotated[list[str], typer.Argument(metavar="ID...", help="Sessions to export.")],
    gallery: Annotated[
        Path,
        typer.Option("--gallery", "-g", envvar="AUTOQWEN_GALLERY", help="Gallery folder (created if missing)."),
    ],
) -> None:
    """Export sessions to a gallery folder of static files that opens in a browser without a server."""
    from autoqwen.workflows.gallery import export_sessions
    from autoqwen.workflows.store import SessionStore

    with SessionStore() as store:
        folders = export_sessions(store, session_ids, gallery)
    out = Console()
    for folder in folders:
        out.print(f"exported {folder.name} → {folder / 'index.html'}", highlight=False)
    out.print(f"gallery: {gallery / 'index.html'}", highlight=False)


@gallery_app.command("import")
def import_session(
    folder: Annotated[Path, typer.Argument(metavar="DIR/ID", help="An exported session folder (has session.json).")],
    replace: Annotated[bool, typer.Option("--replace", help="Overwrite a session with the same id.")] = False,
) -> None:
    """Import an exported session (its messages and files) into the store, keeping its id."""
    from autoqwen.workflows.gallery import import_session as import_folder
    from autoqwen.workflows.store import SessionStore

    with SessionStore() as store:
        session = import_folder(store, folder, replace=replace)
    Console().print(f"imported {session.id} ({session.title!r}, {session.message_count} messages)", highlight=False)


@gallery_app.command("export-autogen")
def export_autogen(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file.")] = None,
    base_url: Annotated[
        str | None, typer.Option(help="Point the model clients at this server (default: each workflow's).")
    ] = None,
) -> None:
    """Write one AutoGen Studio gallery JSON of all workflows (as teams) and skills (as tools)."""
    import json

    from rich.text import Text

    from autoqwen.terminal import terminal_safe
    from autoqwen.workflows.autogen_studio import gallery_of_workflows

    gallery, notes = gallery_of_workflows(base_url=base_url)
    text = json.dumps(gallery, indent=2)
    if output is None:
        typer.echo(text)
    else:
        output.write_text(text + "\n", encoding="utf-8")
        teams = len(gallery["components"]["teams"])
        Console().print(f"wrote {output} ({teams} teams, {len(gallery['components']['tools'])} tools)", highlight=False)
    for note in notes:
        Console(stderr=True).print(Text(f"note: {terminal_safe(note)}"))
