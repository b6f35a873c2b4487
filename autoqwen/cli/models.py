"""`autoqwen models list|pull|show|rm`: the models on this machine, like `ollama ls/pull/show/rm` and `lms ls/get`;
`autoqwen ps`: what a running server has loaded (`ollama ps`, `lms ps`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from autoqwen.terminal import terminal_safe

if TYPE_CHECKING:
    from autoqwen.local_llm import ModelDetails, Removal

__all__ = ["app", "register"]

app = typer.Typer(help="Local models: list, pull (download), show and remove them.", no_args_is_help=True)
console = Console()
err_console = Console(stderr=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")]
IdArgument = Annotated[str, typer.Argument(help="A model id, as `autoqwen models list` shows it.", show_default=False)]


def register(root: typer.Typer) -> None:
    """Add the models command group and `ps` to the root app."""
    root.add_typer(app, name="models")
    root.command("ps")(ps)


def ps(
    base_url: Annotated[
        str, typer.Option(envvar="AUTOQWEN_BASE_URL", help="The server's OpenAI base URL (`autoqwen serve`'s).")
    ] = "http://127.0.0.1:1234/v1",
    api_key: Annotated[
        str | None, typer.Option(envvar="AUTOQWEN_API_KEY", help="Its API key, if it needs one.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Show the models a running server has loaded: state, since when, memory, requests, idle time."""
    import httpx

    from autoqwen.local_llm.errors import LocalLLMError

    url = base_url.rstrip("/").removesuffix("/v1") + "/api/ps"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        reply = httpx.get(url, headers=headers, timeout=10)
    except httpx.HTTPError as exc:
        raise LocalLLMError(
            f"no server answers at {url} ({exc.__class__.__name__}); start one: autoqwen serve"
        ) from exc
    if reply.status_code != 200:
        hint = " (not an autoqwen server?)" if reply.status_code == 404 else ""
        raise LocalLLMError(f"{url} answered HTTP {reply.status_code}{hint}: {reply.text[:200]}")
    body = reply.json()
    if as_json:
        typer.echo(json.dumps(body, indent=2))
        return
    table = Table(box=None, header_style="bold")
    table.add_column("model", overflow="fold")
    for name in ("state", "up", "memory", "requests", "idle", "unloads"):
        table.add_column(name, no_wrap=True, justify="right" if name in ("memory", "requests") else "left")
    now = datetime.now(UTC)
    for m in body.get("models", []):
        up = _duration((now - datetime.fromisoformat(m["loaded_at"])).total_seconds())
        idle = _duration(m["idle_seconds"]) if not m["requests"] else "-"
        until = m["expires_at"] and "in " + _duration((datetime.fromisoformat(m["expires_at"]) - now).total_seconds())
        cells = [m["name"], m["state"], up, _size(m["size"]), str(m["requests"]), idle]
        table.add_row(*[Text(terminal_safe(str(c))) for c in cells], until or ("never" if m["pinned"] else "-"))
    console.print(table)


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 120:
        return f"{seconds} s"
    return f"{seconds // 60} min" if seconds < 7200 else f"{seconds // 3600} h"


def _size(nbytes: int | None) -> str:
    from rich.filesize import decimal

    return "-" if nbytes is None else decimal(nbytes)


@app.command("list")
def list_models(as_json: JsonOption = False) -> None:
    """List every model autoqwen can load here: bundled, Hugging Face and ModelScope caches, the models folder."""
    from autoqwen.local_llm import list_models as local_models
    from autoqwen.paths import user_models_dir

    models = local_models()
    if as_json:
        typer.echo(json.dumps([m.to_json() for m in models], indent=2))
        return
    table = Table(box=None, header_style="bold")
    for name in ("id", "source", "format", "quant", "size", "context", "converted"):
        table.add_column(name, no_wrap=True, justify="right" if name in ("size", "context") else "left")
    for m in models:
        context = str(m.context_length) if m.context_length else "-"
        converted = _size(m.converted_bytes) if m.converted_bytes is not None else "-"
        cells = [terminal_safe(m.id), m.source, m.format, terminal_safe(m.quantization or "-")]
        table.add_row(*[Text(c) for c in cells], _size(m.size_bytes), context, converted)
    console.print(
        table if models else f"No models yet: `autoqwen models pull ID`, or put .gguf files in {user_models_dir()}"
    )


@app.command()
def pull(
    model_id: Annotated[
        str, typer.Argument(help="owner/name, owner/name:QUANT (a GGUF repository), or bundled.", show_default=False)
    ],
    source: Annotated[
        Literal["auto", "huggingface", "modelscope"],
        typer.Option(help="Where from: auto takes ModelScope for the seed ids (qwen/...), Hugging Face otherwise."),
    ] = "auto",
) -> None:
    """Download a model (resumable, with a progress bar); HF_ENDPOINT, HF_TOKEN and MODELSCOPE_ENDPOINT apply."""
    from autoqwen.local_llm import RichPullProgress, pull_model

    pulled = pull_model(model_id, source=source, progress=RichPullProgress(err_console))
    where = pulled.path / pulled.gguf_file if pulled.gguf_file else pulled.path
    console.print(Text.assemble(("Pulled ", "green"), terminal_safe(f"{pulled.model_id} into {where}")), soft_wrap=True)
    console.print(Text(f"Serve it: autoqwen serve --model {terminal_safe(model_id.strip())}", "dim"))


@app.command()
def show(model_id: IdArgument, as_json: JsonOption = False) -> None:
    """Show a local model: config summary, chat template, capabilities and files."""
    from autoqwen.local_llm import show_model

    details = show_model(model_id)
    if as_json:
        typer.echo(json.dumps(details.to_json(), indent=2, default=str))
        return
    _print_details(details)


def _print_details(details: ModelDetails) -> None:
    m = details.model
    console.print(Text(terminal_safe(m.id), "bold"), Text(f"({m.source}, {m.format}) {m.path}"), soft_wrap=True)
    table = Table(box=None, show_header=False)
    for key, value in [*details.config.items(), ("size", _size(m.size_bytes))]:
        table.add_row(Text(key, "dim"), Text(terminal_safe(str(value if value is not None else "-"))))
    table.add_row(Text("converted copy", "dim"), _size(m.converted_bytes))
    table.add_row(Text("chat template", "dim"), Text(details.template_source))
    for key, value in details.capabilities.items():
        table.add_row(Text(key, "dim"), Text(str(value)))
    console.print(table)
    files = Table(box=None, header_style="bold")
    files.add_column("file", no_wrap=True)
    files.add_column("size", justify="right", no_wrap=True)
    for name, size in details.files:
        files.add_row(Text(terminal_safe(name)), _size(size))
    console.print(files)


@app.command()
def rm(
    model_id: IdArgument,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Remove a local model: its files and its converted-GGUF copy (asks first unless --yes)."""
    from autoqwen.local_llm import remove_model

    removal = remove_model(model_id, confirm=lambda plan: yes or _confirm(plan))
    if removal is None:
        console.print("Nothing removed.")
        return
    console.print(Text(f"Removed {', '.join(removal.model_ids)}: {_size(removal.size_bytes)} freed", "green"))


def _confirm(plan: Removal) -> bool:
    console.print(Text(f"This removes {', '.join(terminal_safe(i) for i in plan.model_ids)}:"), soft_wrap=True)
    for path in [*plan.paths, *plan.converted]:
        console.print(Text(f"  {terminal_safe(str(path))}"), soft_wrap=True)  # whole, to copy
    return typer.confirm(f"Free {_size(plan.size_bytes)}?", default=False)
