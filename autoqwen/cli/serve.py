"""`autoqwen serve` (the OpenAI-compatible server, like LM Studio's "Start Server") and `autoqwen chat`."""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.console import Console

if TYPE_CHECKING:
    from autoqwen.local_llm.engine import Engine

console = Console(stderr=True)

MODEL_HELP = "auto | bundled | a hub id (Qwen/Qwen1.5-0.5B-Chat) | a model folder | a .gguf file."
ModelOption = Annotated[str, typer.Option("--model", "-m", envvar="AUTOQWEN_MODEL", help=MODEL_HELP)]


def register(app: typer.Typer) -> None:
    """Add the serve and chat commands to the root app."""
    app.command()(serve)
    app.command()(chat)


def serve(
    model: ModelOption = "auto",
    host: Annotated[str, typer.Option(envvar="AUTOQWEN_HOST", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="AUTOQWEN_PORT", help="Port to bind (LM Studio's is 1234).")] = 1234,
    api_key: Annotated[
        list[str] | None,
        typer.Option(
            envvar="AUTOQWEN_API_KEY",
            help="Require `Authorization: Bearer KEY`; repeat for several keys (in the variable: separated by "
            "spaces), each with its own prefix cache.",
            callback=_check_keys,
        ),
    ] = None,
    alias: Annotated[list[str] | None, typer.Option(help="Extra model name clients may ask for.")] = None,
    cors_origin: Annotated[list[str] | None, typer.Option(help="Allow browser calls from this origin.")] = None,
    allow_host: Annotated[
        list[str] | None, typer.Option(help="Also accept this Host header on loopback (DNS rebinding guard).")
    ] = None,
    max_body_bytes: Annotated[
        int, typer.Option(min=1, help="Largest request body accepted; larger ones get 413 unread.")
    ] = 4 * 1024 * 1024,
    auto_tool_choice: Annotated[
        Literal["call-then-answer", "model"],
        typer.Option(help='tool_choice "auto": call a tool then answer (small models), or let the model decide.'),
    ] = "call-then-answer",
    tool_selection: Annotated[
        Literal["channel", "model"],
        typer.Option(help="A required call among several tools: picked by scoring (channel), or named by the model."),
    ] = "channel",
    no_tool_option: Annotated[
        bool,
        typer.Option(
            "--no-tool-option/--always-call",
            help="Under call-then-answer, answer in text when no tool fits the message (scored), or always call.",
        ),
    ] = True,
    parallel_calls: Annotated[
        bool,
        typer.Option(
            "--parallel-calls/--one-call",
            help="Several calls in one reply unless the client asks for one, or only with parallel_tool_calls true.",
        ),
    ] = True,
    clause_calls: Annotated[
        bool,
        typer.Option(
            "--clause-calls/--no-clause-calls",
            help="A message whose clauses ask for other tools gets a call to each (scored again, clause by clause).",
        ),
    ] = False,
    copy_values: Annotated[
        bool,
        typer.Option(
            "--copy-values/--free-values",
            help="Free argument strings and numbers come from the user's words, or any value the schema allows.",
        ),
    ] = True,
    ground_answers: Annotated[
        bool,
        typer.Option(
            "--ground-answers/--free-answers",
            help="An answer to short tool results (numbers, dates, ids) opens with them or holds a value, or any text.",
        ),
    ] = True,
    max_batch: Annotated[int, typer.Option(min=1, help="Requests that decode together; more wait in the queue.")] = 8,
    max_queue: Annotated[
        int, typer.Option(min=1, help="Requests that wait, first come first served; beyond them: 503 + Retry-After.")
    ] = 256,
    prefix_cache_mb: Annotated[
        int, typer.Option(min=0, help="Memory for KV states of recent prompts, reused by later turns (0 = off).")
    ] = 1024,
    quantize: Annotated[
        Literal["auto", "int4", "none"],
        typer.Option(help="Weights in memory: int4 (fast on CPU), none (float32), auto (int4 for 4-bit GGUF files)."),
    ] = "auto",
    stream_interval_ms: Annotated[
        int,
        typer.Option(min=0, help="Send streamed text at most this often; tokens decoded meanwhile go together."),
    ] = 20,
    max_models: Annotated[
        int,
        typer.Option(
            min=1,
            help="Models loaded at once; a request for another local model unloads the least recently used idle one.",
        ),
    ] = 1,
    idle_ttl: Annotated[
        float,
        typer.Option(
            min=0,
            help="Unload a model loaded on demand after this many seconds without requests (0 = never); --model stays.",
        ),
    ] = 3600,
    load_wait: Annotated[
        float, typer.Option(min=0, help="Seconds a request waits for its model to load, then 503 + Retry-After.")
    ] = 60,
) -> None:
    """Serve local chat models over the OpenAI API (/v1/models, /v1/chat/completions, /v1/completions,
    /v1/responses, /health, /metrics, /api/ps), and workflows and sessions over HTTP (/v1/workflows, /v1/sessions,
    model "workflow:NAME"; docs at /docs). A request naming another local model (`autoqwen models list`) loads it."""
    import uvicorn

    from autoqwen.local_llm import Engine, ModelSource, ServerConfig, create_app, list_models, resolve_model
    from autoqwen.workflows.http_api import workflow_router
    from autoqwen.workflows.live_runs import LiveRuns, RunTarget
    from autoqwen.workflows.workflow_models import WorkflowModels

    if not api_key and not is_loopback(host):
        console.print(
            f"[bold yellow]warning:[/] serving on {host}, beyond this machine, without an API key: anyone who can "
            "reach the port can use the model (set --api-key)",
            highlight=False,
        )
    quiet_progress_bars()

    def make_engine(spec: str | ModelSource) -> Engine:  # a model id, or the source of --model loaded again
        return Engine(
            spec if isinstance(spec, ModelSource) else resolve_model(spec),
            max_batch=max_batch,
            max_queue=max_queue,
            prefix_cache_mb=prefix_cache_mb,
            quantize=quantize,
            stream_interval_ms=stream_interval_ms,
        )

    engine = make_engine(model)
    config = ServerConfig(
        api_keys=tuple(api_key or ()),
        aliases=tuple(alias or ()),
        cors_origins=tuple(cors_origin or ()),
        allowed_hosts=tuple(allow_host or ()),
        max_body_bytes=max_body_bytes,
        auto_tool_choice=auto_tool_choice,
        tool_selection=tool_selection,
        no_tool_option=no_tool_option,
        parallel_calls=parallel_calls,
        clause_calls=clause_calls,
        copy_values=copy_values,
        ground_answers=ground_answers,
        max_models=max_models,
        idle_ttl_s=idle_ttl or None,
        load_wait_s=load_wait,
    )
    # Runs started over HTTP reach this same server over loopback, with its first key.
    target = RunTarget(own_url(host, port), engine.model_id, api_key[0] if api_key else None, engine.wait_ready)
    runs = LiveRuns(target)
    app = create_app(engine, config, providers=[WorkflowModels(runs)], catalog=list_models, make_engine=make_engine)
    app.include_router(workflow_router(runs))
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="info"))
    failed = threading.Event()

    def announce() -> None:
        bound = port or _bound_port(server)  # port 0: the one the system picked, before any run can start
        if bound != port:
            runs.target = dataclasses.replace(target, base_url=own_url(host, bound))
        try:
            wait_for_model(engine)
        except Exception as exc:
            console.print(f"[bold red]error:[/] {exc}", highlight=False)
            failed.set()
            server.should_exit = True
            return
        console.print(f"[green]Serving {engine.model_id}[/] at http://{host}:{bound}/v1  (Ctrl-C to stop)")

    engine.start()
    threading.Thread(target=announce, daemon=True).start()
    try:
        server.run()
    finally:
        runs.close()
        for loaded in app.state.models.engines:
            loaded.close()
    if failed.is_set():
        raise typer.Exit(1)


def _check_keys(keys: list[str] | None) -> list[str] | None:
    for key in keys or ():
        if not key.strip() or " " in key.strip():
            raise typer.BadParameter(f"{key!r} is not a usable key: non-empty, without spaces")
    return [key.strip() for key in keys] if keys else keys


def chat(
    model: ModelOption = "auto",
    base_url: Annotated[
        str | None,
        typer.Option(envvar="AUTOQWEN_BASE_URL", help="Chat with this OpenAI-compatible server instead."),
    ] = None,
    api_key: Annotated[str | None, typer.Option(envvar="AUTOQWEN_API_KEY", help="API key for --base-url.")] = None,
    prompt: Annotated[
        str | None, typer.Option("--prompt", "-p", help="Ask one question, print the answer, exit.")
    ] = None,
    system: Annotated[str | None, typer.Option(help="System message.")] = None,
    max_tokens: Annotated[int | None, typer.Option(min=1)] = None,
    temperature: Annotated[float | None, typer.Option(min=0, max=2)] = None,
    seed: Annotated[int | None, typer.Option()] = None,
) -> None:
    """Chat with the model in the terminal, streaming, with history (/reset clears it, /exit or Ctrl-D quits)."""
    import openai

    from autoqwen.local_llm import EmbeddedServer, Engine, resolve_model
    from autoqwen.local_llm.chat import ChatSession

    server = None
    if base_url is None:
        quiet_progress_bars()
        server = EmbeddedServer(Engine(resolve_model(model))).start()
        wait_for_model(server.engine)
        base_url, model = server.base_url, server.engine.model_id
    client = openai.OpenAI(base_url=base_url, api_key=api_key or "none")
    if model == "auto":
        model = client.models.list().data[0].id
    session = ChatSession(client, model, system=system, max_tokens=max_tokens, temperature=temperature, seed=seed)
    out = Console()
    try:
        if prompt is not None:
            _reply(session, prompt, out)
            return
        console.print(f"Chatting with [bold]{model}[/]. /reset clears the history, /exit or Ctrl-D quits.")
        while True:
            try:
                text = out.input("[bold cyan]you>[/] ")
            except (EOFError, KeyboardInterrupt):
                out.print()
                return
            if text.strip() in ("/exit", "/quit"):
                return
            if text.strip() == "/reset":
                session.reset()
                console.print("[dim]history cleared[/]")
            elif text.strip():
                _reply(session, text, out)
    finally:
        if server is not None:
            server.stop()


def _reply(session: object, text: str, out: Console) -> None:
    from autoqwen.local_llm.chat import ChatSession
    from autoqwen.terminal import terminal_safe

    assert isinstance(session, ChatSession)
    for piece in session.send(text):  # the model's words: control characters shown, never obeyed
        out.print(terminal_safe(piece), end="", markup=False, highlight=False, soft_wrap=True)
    out.print()


def wait_for_model(engine: Engine) -> None:
    """Show a spinner with the load stage until the engine is ready; raise its error if loading fails."""
    with console.status(f"Loading {engine.model_id} …") as status:
        while engine.state == "loading":
            status.update(f"Loading {engine.model_id} ({engine.load_stage}) …")
            time.sleep(0.2)
    engine.wait_ready()


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the server on this machine (localhost, 127.0.0.0/8, ::1)."""
    import ipaddress

    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host.lower() == "localhost"


def _bound_port(server: Any) -> int:
    """The port a starting uvicorn server listens on (it was asked for port 0)."""
    while not server.started and not server.should_exit:
        time.sleep(0.05)
    sockets = [s for srv in getattr(server, "servers", []) for s in srv.sockets]
    return int(sockets[0].getsockname()[1]) if sockets else 0


def own_url(host: str, port: int) -> str:
    """The base URL at which this machine reaches a server bound to `host:port` (loopback for any-address)."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host in ("::", "[::]"):
        host = "::1"
    return f"http://[{host.strip('[]')}]:{port}/v1" if ":" in host else f"http://{host}:{port}/v1"


def quiet_progress_bars() -> None:
    """Turn off tqdm bars (transformers' GGUF conversion has one): the rich spinner shows progress instead."""
    os.environ.setdefault("TQDM_DISABLE", "1")
