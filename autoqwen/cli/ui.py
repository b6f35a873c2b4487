"""`autoqwen ui`: the web UI (workflows, playground, sessions) on 127.0.0.1:8081, AutoGen Studio's port."""

from __future__ import annotations

import threading
import webbrowser
from typing import Annotated

import typer
from rich.console import Console

from autoqwen.cli.serve import MODEL_HELP, is_loopback, quiet_progress_bars

console = Console(stderr=True)


def register(app: typer.Typer) -> None:
    """Add the ui command to the root app."""
    app.command()(ui)


def ui(
    host: Annotated[str, typer.Option(help="Address to bind; beyond loopback it needs --token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind (AutoGen Studio's is 8081).")] = 8081,
    model: Annotated[str, typer.Option("--model", "-m", envvar="AUTOQWEN_MODEL", help=MODEL_HELP)] = "auto",
    base_url: Annotated[
        str | None,
        typer.Option(envvar="AUTOQWEN_BASE_URL", help="Run workflows on this OpenAI-compatible server instead."),
    ] = None,
    api_key: Annotated[str | None, typer.Option(envvar="AUTOQWEN_API_KEY", help="API key for --base-url.")] = None,
    token: Annotated[
        str | None,
        typer.Option(envvar="AUTOQWEN_UI_TOKEN", help="Access token every page and API call then needs."),
    ] = None,
    open_browser: Annotated[bool, typer.Option("--open", help="Open the UI in the default browser.")] = False,
) -> None:
    """Serve the web UI: browse workflows, run one and watch its messages live, read sessions (see docs/ui.md).

    The embedded model loads in the background on the first run, unless --base-url names a server."""
    import uvicorn

    from autoqwen.ui import GuardConfig, LazyModel, UnsafeBinding, create_ui_app
    from autoqwen.workflows.live_runs import LiveRuns, RunTarget

    token = token.strip() if token and token.strip() else None
    if token is None and not is_loopback(host):
        raise UnsafeBinding(host)
    lazy: LazyModel | None = None
    if base_url is not None:
        target = RunTarget(base_url, None if model == "auto" else model, api_key)
        label = base_url
    else:
        quiet_progress_bars()
        lazy = LazyModel(model)
        target, label = lazy.target(), f"{model} (embedded, loads on the first run)"
    runs = LiveRuns(target)
    app = create_ui_app(runs, GuardConfig(token=token, hosts=(host.lower(),)), model=lazy, model_label=label)
    address = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/"
    link = f"{address}?token={token}" if token else address
    console.print(f"[green]autoqwen UI[/] at {address}  (Ctrl-C to stop)", highlight=False)
    if open_browser:
        threading.Timer(1.0, webbrowser.open, args=(link,)).start()
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        runs.close()
        runs.store.close()
        if lazy is not None:
            lazy.close()
