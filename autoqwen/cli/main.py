"""The root `autoqwen` command: the one place where known errors become a message, and the command groups."""

from __future__ import annotations

import logging
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

from autoqwen.cli import export, mcp, models, run, serve, sessions, skills, ui
from autoqwen.terminal import terminal_safe

__all__ = ["app", "user_facing_errors"]

err_console = Console(stderr=True)


def user_facing_errors() -> tuple[type[Exception], ...]:
    """The root errors whose message is meant for the user: printed without a traceback (unless --debug), exit 1.

    Imported when an error happens, not at start-up, so `autoqwen --help` loads no layer's package."""
    from autoqwen.agents.errors import AgentError
    from autoqwen.local_llm.errors import LocalLLMError
    from autoqwen.skills.errors import SkillError
    from autoqwen.ui.errors import UIError
    from autoqwen.workflows.errors import WorkflowError

    return (LocalLLMError, WorkflowError, SkillError, AgentError, UIError)


class _Group(TyperGroup):
    """The root command group: the one place where known errors become a message and exit code 1."""

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]  # typer passes its own Context
        try:
            return super().invoke(ctx)
        except Exception as exc:
            if not isinstance(exc, user_facing_errors()) or ctx.params.get("debug"):
                raise
            # The message may quote a file, a server or a model: plain text, control characters escaped.
            err_console.print(
                Text.assemble(("error:", "bold red"), " ", terminal_safe(str(exc))), highlight=False, soft_wrap=True
            )
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
app.add_typer(mcp.app, name="mcp")
sessions.register(app)
models.register(app)
export.register(app)
ui.register(app)
