"""The `autoqwen` command line: a thin typer layer over the library; one module per command group."""

from __future__ import annotations

import logging
from typing import Annotated, Any

import click
import typer
from rich.console import Console
from typer.core import TyperGroup

from agents.errors import AgentError
from local_llm.errors import LocalLLMError
from skills.errors import SkillError
from workflows.cli import export, run, serve, sessions, skills
from workflows.errors import WorkflowError

__all__ = ["app"]

err_console = Console(stderr=True)

# Errors whose message is meant for the user: printed without a traceback (unless --debug), exit code 1.
USER_FACING_ERRORS: tuple[type[Exception], ...] = (LocalLLMError, WorkflowError, SkillError, AgentError)


class _Group(TyperGroup):
    """The root command group: the one place where known errors become a message and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except USER_FACING_ERRORS as exc:
            if ctx.params.get("debug"):
                raise
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None


app = typer.Typer(
    cls=_Group,
    help="Local multi-agent workflows on a small local chat model, with an embedded OpenAI-compatible server.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")] = False,
) -> None:
    from rich.logging import RichHandler

    handler = RichHandler(console=err_console, show_path=False, show_time=False, rich_tracebacks=debug)
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, format="%(message)s", handlers=[handler])
    for noisy in ("httpx", "httpx2", "openai", "autogen_core", "autogen_agentchat"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if debug else logging.WARNING)


serve.register(app)
run.register(app)
app.add_typer(skills.app, name="skills")
sessions.register(app)
export.register(app)
