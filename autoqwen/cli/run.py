"""`autoqwen run NAME` (run a named workflow) and `autoqwen workflows list|show|validate|schema`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from autoqwen.cli.serve import MODEL_HELP, quiet_progress_bars, wait_for_model
from autoqwen.terminal import terminal_safe

workflows_app = typer.Typer(help="Named workflows: list, show, validate, and the YAML schema.", no_args_is_help=True)
console = Console()


def register(root: typer.Typer) -> None:
    """Add `run` and the `workflows` group to the root app."""
    root.command("run")(run)
    root.add_typer(workflows_app, name="workflows")


def run(
    name: Annotated[
        str | None, typer.Argument(help="A workflow name (see `autoqwen workflows list`) or a .yaml path.")
    ] = None,
    resume: Annotated[str | None, typer.Option(help="Continue this stored session instead.")] = None,
    input: Annotated[list[str] | None, typer.Option("--input", "-i", help="Task input as key=value.")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", envvar="AUTOQWEN_MODEL", help=MODEL_HELP)] = None,
    base_url: Annotated[
        str | None, typer.Option(envvar="AUTOQWEN_BASE_URL", help="Use this OpenAI-compatible server.")
    ] = None,
    api_key: Annotated[str | None, typer.Option(envvar="AUTOQWEN_API_KEY", help="API key for --base-url.")] = None,
    human: Annotated[Literal["never", "terminate", "always"] | None, typer.Option(help="Human input mode.")] = None,
    max_turns: Annotated[int | None, typer.Option(min=1, max=100, help="Cap on agent turns.")] = None,
    execute_code: Annotated[bool, typer.Option("--execute-code", help="Let code_executor agents run code.")] = False,
    trust_imported: Annotated[
        bool,
        typer.Option(
            "--trust-imported",
            help="With --resume of an imported session: use the model server and API key variable it names.",
        ),
    ] = False,
    seed: Annotated[int | None, typer.Option(help="Sampling seed, for reproducible runs.")] = None,
    context_window: Annotated[
        int | None,
        typer.Option(min=256, help="The model's context window in tokens, when the server does not report it."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON event per line.")] = False,
) -> None:
    """Run a workflow: stream every message as it happens, store the session, print a summary line."""
    from autoqwen import load_workflow
    from autoqwen.workflows.runner import RunOptions, resume_workflow, run_workflow
    from autoqwen.workflows.store import SessionStore
    from autoqwen.workflows.transcript import render_message

    if (name is None) == (resume is None):
        raise typer.BadParameter("give a workflow NAME, or --resume SESSION_ID (not both)", param_hint="NAME")
    spec = load_workflow(name) if name is not None else None
    quiet_progress_bars()
    options = RunOptions(
        inputs=_inputs(input or []),
        model=model,
        base_url=base_url,
        api_key=api_key,
        human=human,
        max_turns=max_turns,
        execute_code=execute_code,
        trust_imported=trust_imported,
        seed=seed,
        context_window=context_window,
        on_loading=None if as_json else wait_for_model,
        input_func=lambda prompt: console.input(f"[bold cyan]{prompt}[/]"),
    )

    def show(message: object) -> None:
        if as_json:
            typer.echo(json.dumps({"event": "message", **message.model_dump(mode="json")}))  # type: ignore[attr-defined]
        else:
            console.print(render_message(message))  # type: ignore[arg-type]

    with SessionStore() as store:
        try:
            if spec is None:
                result = resume_workflow(str(resume), options, store=store, on_message=show)
            else:
                result = run_workflow(spec, options, store=store, on_message=show)
        except KeyboardInterrupt:
            console.print("[yellow]stopped[/] (the session is kept: `autoqwen sessions list`)")
            raise typer.Exit(130) from None
    if as_json:
        typer.echo(json.dumps({"event": "end", **result.__dict__}))
        return
    why = "the turn cap" if result.by_cap else "its termination condition"
    # The stop reason may quote what a model said: plain text, control characters escaped.
    console.print(
        Text.assemble(
            (result.status, "bold"),
            f" after {result.turns} turns, {result.prompt_tokens}+{result.completion_tokens} tokens, "
            f"{result.seconds:.1f} s; stopped by {why}: ",
            terminal_safe(result.stop_reason),
            f"\nsession: {result.session_id}",
        )
    )


def _inputs(items: list[str]) -> dict[str, str]:
    """The task inputs given as `--input KEY=VALUE` (a repeated key: the last one wins)."""
    from autoqwen.skills import split_pairs

    try:
        return dict(split_pairs(items))
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--input") from None


@workflows_app.command("list")
def list_workflows() -> None:
    """List the named workflows: builtin ones and those in your workflows folder."""
    from autoqwen.paths import user_workflows_dir
    from autoqwen.workflows.catalog import list_workflows as entries

    table = Table(box=None, header_style="bold")
    for column in ("name", "source", "description"):
        table.add_column(column)
    for entry in entries():
        about = Text(terminal_safe(entry.problem or entry.description))  # from the file: never markup
        table.add_row(entry.name, entry.source, about, style="red" if entry.problem else None)
    console.print(table)
    console.print(f"[dim]your workflows folder: {user_workflows_dir()}[/]")


@workflows_app.command("show")
def show(name: Annotated[str, typer.Argument(help="A workflow name or a .yaml path.")]) -> None:
    """Print a workflow's YAML."""
    from autoqwen.workflows.catalog import find_workflow

    typer.echo(find_workflow(name).read_text(encoding="utf-8"))


@workflows_app.command("validate")
def validate(names: Annotated[list[str], typer.Argument(help="Workflow names or .yaml paths.")]) -> None:
    """Check workflow files: YAML, fields, agent refs, skill names. Errors name the file, line and field."""
    from autoqwen.skills import load_skills
    from autoqwen.workflows.catalog import find_workflow
    from autoqwen.workflows.loader import load_workflow

    registry = load_skills()
    for name in names:
        path = find_workflow(name)
        spec = load_workflow(path, skills=registry)
        console.print(
            f"[green]ok[/] {path}: {spec.name} ({len(spec.agents)} agents, {spec.team.type})", highlight=False
        )


@workflows_app.command("schema")
def schema(output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file.")] = None) -> None:
    """Print the JSON Schema of the workflow YAML format (for editor completion)."""
    from autoqwen.workflows.spec import WorkflowSpec

    text = json.dumps(WorkflowSpec.model_json_schema(), indent=2)
    if output is None:
        typer.echo(text)
    else:
        output.write_text(text + "\n", encoding="utf-8")


@workflows_app.command("export")
def export_workflow(
    name: Annotated[str, typer.Argument(help="A workflow name or a .yaml path.")],
    format: Annotated[
        Literal["autogen"], typer.Option("--format", help="autogen: AgentChat component JSON (AutoGen Studio).")
    ] = "autogen",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file.")] = None,
    base_url: Annotated[
        str | None, typer.Option(help="Point the model clients at this server (default: the workflow's).")
    ] = None,
) -> None:
    """Write a workflow's team as AutoGen AgentChat component JSON, for AutoGen Studio or `load_component`."""
    from autoqwen import load_workflow
    from autoqwen.workflows.autogen_studio import export_notes, export_team

    spec = load_workflow(name)
    text = json.dumps(export_team(spec, base_url=base_url), indent=2)
    if output is None:
        typer.echo(text)
    else:
        output.write_text(text + "\n", encoding="utf-8")
        console.print(f"wrote {output}", highlight=False)
    for note in export_notes(spec):
        Console(stderr=True).print(Text(f"note: {terminal_safe(note)}"))


@workflows_app.command("import")
def import_workflow(
    file: Annotated[Path, typer.Argument(help="An AutoGen team component JSON, or an AutoGen Studio gallery JSON.")],
    name: Annotated[str | None, typer.Option(help="Name of the new workflow (default: the team's).")] = None,
    team: Annotated[str | None, typer.Option(help="The team to take from a gallery, by label.")] = None,
    replace: Annotated[bool, typer.Option("--replace", help="Overwrite a workflow file of the same name.")] = False,
) -> None:
    """Make a workflow YAML in your workflows folder from an AutoGen Studio team; its code is never run."""
    from autoqwen.workflows.autogen_import import import_team_file

    result = import_team_file(file, name=name, team=team, replace=replace)
    for note in result.notes:  # they quote the file: plain text, control characters escaped
        Console(stderr=True).print(Text(f"note: {terminal_safe(note)}"))
    console.print(
        Text(f"imported {result.spec.name} ({len(result.spec.agents)} agents) → {result.path}"), highlight=False
    )
