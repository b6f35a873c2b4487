"""A session's transcript for the terminal (rich): the same look for a live run and for `autoqwen sessions show`.

    console.print(render_message(message))       # as each message arrives
    print_record(console, store.get_record(sid))  # a whole stored session

Content is printed as plain text, never as rich markup, so `[bold]` or `<script>` in a message shows as written,
and every string from the session goes through `terminal_safe`: a control sequence in a message (clear screen, set
the window title, write the clipboard) shows as `\x1b…` instead of reaching the terminal.
"""

from __future__ import annotations

import json

from rich.console import Console, Group, RenderableType
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from autoqwen.terminal import terminal_safe
from autoqwen.workflows.records import Message, Session, SessionRecord

__all__ = ["STATUS_STYLES", "print_record", "render_message", "render_session"]

STATUS_STYLES = {
    "running": "yellow",
    "finished": "green",
    "stopped": "yellow",
    "failed": "red",
    "interrupted": "red",
}
_KINDS = {
    "text": ("message", "cyan"),
    "tool_call": ("tool call", "yellow"),
    "tool_result": ("tool result", "green"),
    "handoff": ("handoff", "magenta"),
    "system": ("system", "dim"),
    "other": ("event", "dim"),
}


def render_message(message: Message) -> RenderableType:
    """One message: a rule naming the agent and the kind of message, then its content."""
    label, style = _KINDS[message.type]
    title = Text.assemble((terminal_safe(message.source), f"bold {style}"), " · ", (label, style))
    if message.prompt_tokens or message.completion_tokens:
        title.append(f" · {message.prompt_tokens}+{message.completion_tokens} tokens", "dim")
    title.append(f" · {message.created_at.astimezone():%H:%M:%S}", "dim")
    return Group(Rule(title, align="left", style=style), _body(message))


def render_session(session: Session) -> RenderableType:
    """The heading of a session: title, id, workflow, status, model, times, totals, inputs and outcome."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim")
    grid.add_column(overflow="fold")
    grid.add_row("session", session.id)
    if session.imported_from is not None:
        when = f" on {session.imported_at.astimezone():%Y-%m-%d %H:%M}" if session.imported_at else ""
        grid.add_row(
            "imported",
            Text.assemble(
                (f"from {_safe(session.imported_from)}{when}", "yellow"),
                ("; its workflow snapshot is untrusted: resuming it needs --execute-code to run code", "dim"),
            ),
        )
    grid.add_row("workflow", _safe(session.workflow))
    grid.add_row("status", Text(session.status, STATUS_STYLES[session.status]))
    if session.model:
        grid.add_row("model", _safe(session.model))
    grid.add_row("started", f"{session.started_at.astimezone():%Y-%m-%d %H:%M:%S}")
    if session.ended_at:
        grid.add_row("ended", f"{session.ended_at.astimezone():%Y-%m-%d %H:%M:%S}")
    grid.add_row("totals", f"{session.message_count} messages, {session.turns} turns, {session.tokens} tokens")
    if session.tags:
        grid.add_row("tags", _safe(", ".join(session.tags)))
    for name, value in session.inputs.items():
        grid.add_row(_safe(f"input {name}"), _safe(value if isinstance(value, str) else json.dumps(value)))
    if session.stop_reason:
        grid.add_row("stopped because", _safe(session.stop_reason))
    if session.summary:
        grid.add_row("summary", _safe(session.summary))
    if session.error:
        grid.add_row("error", _safe(session.error, "red"))
    return Group(_safe(session.title, "bold"), grid)


def print_record(console: Console, record: SessionRecord) -> None:
    """Print a stored session: its heading, every message in order, and its files."""
    console.print(render_session(record.session))
    for message in record.messages:
        console.print(render_message(message))
    if record.files:
        console.print(Rule(Text("files", "bold"), align="left", style="dim"))
        for entry in record.files:
            console.print(Text.assemble(terminal_safe(entry.path), (f"  {entry.size} bytes", "dim")))


def _body(message: Message) -> RenderableType:
    calls = message.tool_calls()
    if calls is not None:
        return Group(
            *(
                Text.assemble(
                    ("🔧 ", ""), (terminal_safe(call.name), "bold yellow"), terminal_safe(f"({call.arguments})")
                )
                for call in calls
            )
        )
    results = message.tool_results()
    if results is not None:
        return Group(
            *(
                Text.assemble(
                    ("✗ " if result.is_error else "↩ ", "red" if result.is_error else "green"),
                    (terminal_safe(f"{result.name}: ") if result.name else "", "bold"),
                    (terminal_safe(result.content), "red" if result.is_error else ""),
                )
                for result in results
            )
        )
    return _safe(message.text())


def _safe(text: str, style: str = "") -> Text:
    """Session text as a rich Text: never read as markup, control characters shown as escapes."""
    return Text(terminal_safe(text), style)
