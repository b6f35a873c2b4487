"""Run a workflow: start (or reach) the model server, build the AutoGen team, store every message as it happens.

    result = run_workflow(load_workflow(path), RunOptions(inputs={"topic": "LLMs"}), store=SessionStore())

Agents reach the model over HTTP only: the embedded server runs in-process on a free loopback port unless the
workflow (or `base_url`) names an external one. The session is written message by message, so a crash loses
nothing already said.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from autoqwen.agents import (
    DEFAULT_CONTEXT_WINDOW,
    AgentContext,
    AgentError,
    ContextWindow,
    EmbeddedModel,
    Endpoint,
    ExternalModel,
    HumanMode,
    build_agent,
)
from autoqwen.agents import model_client as make_model_client
from autoqwen.paths import use_work_dir
from autoqwen.skills import SkillError, check_secrets, load_skills
from autoqwen.workflows.endpoints import model_endpoint
from autoqwen.workflows.errors import RunError
from autoqwen.workflows.records import Message, MessageType, Session
from autoqwen.workflows.spec import SelectorTeam, WorkflowSpec
from autoqwen.workflows.store import SessionStore

if TYPE_CHECKING:
    from autogen_agentchat.base import ChatAgent, Team, TerminationCondition

    from autoqwen.local_llm import Engine

__all__ = ["RunOptions", "RunResult", "resume_workflow", "run_workflow"]

log = logging.getLogger(__name__)

_watchers: set[asyncio.Task[None]] = set()


@dataclass
class RunOptions:
    """How to run a workflow; every field overrides what the workflow file says.

    RunOptions(inputs={"topic": "graph neural networks"}, base_url="http://127.0.0.1:1234/v1", human="never")
    """

    inputs: dict[str, str] = field(default_factory=dict)
    model: str | None = None
    base_url: str | None = None
    api_key: str | None = None
    human: HumanMode | None = None
    max_turns: int | None = None
    execute_code: bool = False
    trust_imported: bool = False
    """Let a resumed imported session use the model server (and API key variable) its snapshot names."""
    seed: int | None = None
    context_window: int | None = None
    """The model's context window in tokens, when the server does not say (or says more than it can serve)."""
    input_func: Callable[[str], str] = input
    on_loading: Callable[[Engine], None] | None = None
    on_session: Callable[[str], None] | None = None
    """Told the session id as soon as the session exists (the HTTP API announces it before the first message)."""
    cancel: threading.Event | None = None
    """Set from another thread to stop the run as Ctrl-C does (the HTTP API's cancel); the session ends `stopped`."""


@dataclass(frozen=True)
class RunResult:
    """How a run ended: its session, status, why it stopped, and its totals."""

    session_id: str
    status: str
    stop_reason: str
    by_cap: bool
    turns: int
    prompt_tokens: int
    completion_tokens: int
    seconds: float


def run_workflow(
    spec: WorkflowSpec,
    options: RunOptions | None = None,
    *,
    store: SessionStore | None = None,
    on_message: Callable[[Message], None] | None = None,
) -> RunResult:
    """Run `spec` to its end (termination, cap or Ctrl-C), storing the session as it goes (in the default store
    under the data dir unless `store` is given)."""
    options = options or RunOptions()
    if store is None:
        with SessionStore() as default_store:
            return run_workflow(spec, options, store=default_store, on_message=on_message)
    try:
        task = spec.render_task(options.inputs)
    except KeyError as exc:
        raise RunError(f"input {exc.args[0]!r} is required: pass --input {exc.args[0]}=...") from None
    unknown = sorted(set(options.inputs) - set(spec.inputs))
    if unknown:
        raise RunError(f"unknown input {unknown[0]!r}; this workflow takes: {', '.join(spec.inputs) or 'none'}")

    def start(endpoint: Endpoint) -> str:
        return store.create_session(
            spec.name,
            title=f"{spec.name}: {task[:80]}",
            spec=spec.model_dump(mode="json"),
            inputs={name: spec.inputs[name].default for name in spec.inputs} | options.inputs,
            model=endpoint.model,
            tags=spec.tags,
        ).id

    return _drive(spec, options, store, start, task, on_message)


def resume_workflow(
    session_id: str,
    options: RunOptions | None = None,
    *,
    store: SessionStore | None = None,
    on_message: Callable[[Message], None] | None = None,
) -> RunResult:
    """Continue a stored session (stopped, interrupted, failed or finished) with its workflow as it was then.

    AutoGen teams keep no state between processes here, so the team is rebuilt and given the session's
    conversation (its text and handoff messages) as the task; new messages are appended to the same session.
    """
    options = options or RunOptions()
    if store is None:
        with SessionStore() as default_store:
            return resume_workflow(session_id, options, store=default_store, on_message=on_message)
    session = store.get_session(session_id)
    try:
        spec = WorkflowSpec.from_snapshot(session.spec)
    except ValidationError as exc:
        raise RunError(f"session {session_id} has no usable workflow snapshot to resume: {exc}") from exc
    if session.imported:
        spec = _distrust(spec, session, options)
    history = [m for m in store.get_messages(session_id) if m.type in ("text", "handoff")]
    if not history:
        raise RunError(f"session {session_id} has no messages to continue from")
    from autogen_agentchat.messages import TextMessage

    task = [TextMessage(content=m.text(), source=m.source) for m in history]
    return _drive(spec, options, store, lambda _: store.reopen_session(session_id).id, task, on_message)


def _distrust(spec: WorkflowSpec, session: Session, options: RunOptions) -> WorkflowSpec:
    """The snapshot of an imported session, made safe to resume: it was written by someone else.

    Its `code_execution` is dropped (only --execute-code turns code on), and a model server it names, with the API
    key variable it names, is refused unless the user picks the server (--base-url) or trusts it (--trust-imported).
    So is an embedded model other than auto or bundled (a hub id is a download, a path a file on this machine)
    unless the user names the model (--model).
    """
    if spec.code_execution and not options.execute_code:
        log.warning(
            "session %s was imported: its workflow asks to run code, which stays off without --execute-code",
            session.id,
        )
    if isinstance(spec.model, ExternalModel) and options.base_url is None and not options.trust_imported:
        key = f" with the API key in ${spec.model.api_key_env}" if spec.model.api_key_env else ""
        raise RunError(
            f"session {session.id} was imported from {session.imported_from}, and its workflow snapshot asks to use "
            f"the model server {spec.model.base_url}{key}. Resume it on a server you choose with --base-url URL, "
            "or pass --trust-imported to use the one it names"
        )
    chosen = options.base_url is not None or options.model is not None or options.trust_imported
    if isinstance(spec.model, EmbeddedModel) and spec.model.model not in ("auto", "bundled") and not chosen:
        raise RunError(
            f"session {session.id} was imported from {session.imported_from}, and its workflow snapshot asks for the "
            f"model {spec.model.model!r}. Resume it with --model NAME (that one or another), "
            "or pass --trust-imported to use the one it names"
        )
    if spec.mcp_servers() and not options.trust_imported:
        names = ", ".join(server.label for server in spec.mcp_servers())
        raise RunError(
            f"session {session.id} was imported from {session.imported_from}, and its workflow snapshot starts or "
            f"reaches MCP servers ({names}). Pass --trust-imported to let it"
        )
    return spec.model_copy(update={"code_execution": False})


def _drive(
    spec: WorkflowSpec,
    options: RunOptions,
    store: SessionStore,
    start: Callable[[Endpoint], str],
    task: str | list[Any],
    on_message: Callable[[Message], None] | None,
) -> RunResult:
    """Reach the model, open the session with `start`, run the team on `task`, and close the session."""
    registry = load_skills()
    try:
        check_secrets([registry.get(name) for name in spec.skill_names()])
    except SkillError as exc:
        raise RunError(str(exc)) from exc
    started = time.monotonic()
    with model_endpoint(spec, options) as endpoint:
        session_id = start(endpoint)
        if options.on_session is not None:
            options.on_session(session_id)

        def record(message: Message) -> None:
            if on_message is not None:
                on_message(message)

        def trimmed(agent: str, note: str) -> None:  # said in the transcript, before the reply it shaped
            record(store.append_message(session_id, agent, note, type="system"))

        from autoqwen.agents.mcp_tools import McpServers  # the mcp SDK and autogen_core: loaded for a run only

        servers = McpServers(spec.mcp)
        ctx = AgentContext(
            endpoint=endpoint,
            skills=registry,
            work_dir=store.work_dir(session_id),
            human=options.human or spec.human_input,
            input_func=options.input_func,
            code_execution=spec.code_execution or options.execute_code,
            seed=options.seed,
            window=ContextWindow(endpoint.context_window or DEFAULT_CONTEXT_WINDOW, on_trim=trimmed),
            mcp=servers,
        )

        try:
            with use_work_dir(ctx.work_dir):
                team_run = _run_team(spec, options, ctx, task, store, session_id, record)
                # The MCP servers run for the length of the team's run, started before and stopped after it.
                stop_reason, by_cap = asyncio.run(servers.serve(team_run, spec.mcp_servers()))
        except KeyboardInterrupt:
            why = (
                "cancelled"
                if options.cancel is not None and options.cancel.is_set()
                else "stopped by the user (Ctrl-C)"
            )
            store.finish_session(session_id, "stopped", stop_reason=why)
            raise
        except (AgentError, SkillError) as exc:
            store.finish_session(session_id, "failed", error=str(exc))
            raise RunError(f"{exc} (session {session_id})", session_id=session_id) from exc
        except Exception as exc:
            store.finish_session(session_id, "failed", error=f"{type(exc).__name__}: {exc}")
            raise RunError(
                f"the run failed: {type(exc).__name__}: {exc} (session {session_id})", session_id=session_id
            ) from exc
        summary = next((m.text() for m in reversed(store.get_messages(session_id)) if m.type == "text"), "")
        final = store.finish_session(session_id, "finished", summary=summary[:500], stop_reason=stop_reason)
    return RunResult(
        session_id=final.id,
        status=final.status,
        stop_reason=stop_reason,
        by_cap=by_cap,
        turns=final.turns,
        prompt_tokens=final.prompt_tokens,
        completion_tokens=final.completion_tokens,
        seconds=time.monotonic() - started,
    )


async def _run_team(
    spec: WorkflowSpec,
    options: RunOptions,
    ctx: AgentContext,
    task: str | list[Any],
    store: SessionStore,
    session_id: str,
    on_message: Callable[[Message], None],
) -> tuple[str, bool]:
    from autogen_agentchat.agents import UserProxyAgent
    from autogen_agentchat.base import TaskResult
    from autogen_agentchat.teams import RoundRobinGroupChat, SelectorGroupChat

    agents: list[ChatAgent | Team] = [build_agent(agent, ctx) for agent in spec.agents]
    if ctx.human == "always" and not any(a.kind == "user_proxy" for a in spec.agents):
        agents.append(UserProxyAgent("user", input_func=ctx.input_func))
    max_turns = options.max_turns or spec.team.max_turns
    termination = _termination(spec, [a.name for a in agents])
    if isinstance(spec.team, SelectorTeam):
        extra: dict[str, Any] = {"selector_prompt": spec.team.selector_prompt} if spec.team.selector_prompt else {}
        from autoqwen.agents.context import WindowedContext

        prompt = spec.team.selector_prompt or inspect.signature(SelectorGroupChat).parameters["selector_prompt"].default
        roles = prompt + "".join(f"{a.name}: {a.description}\n" for a in spec.agents)
        team: Any = SelectorGroupChat(
            agents,
            # a name, not an essay
            make_model_client(ctx.endpoint, temperature=0, max_tokens=64, seed=ctx.seed, window=ctx.window),
            termination_condition=termination,
            max_turns=max_turns,
            model_context=WindowedContext(ctx.window, agent="selector", fixed_text=roles, reserve=64),
            **extra,
        )
    else:
        team = RoundRobinGroupChat(agents, termination_condition=termination, max_turns=max_turns)
    next_task = task
    given = {m.id for m in task} if isinstance(task, list) else set()  # a resumed history, already stored
    interrupted = _stop_on_ctrl_c(options.cancel)
    try:
        while True:
            stop_reason = ""
            async for event in team.run_stream(task=next_task):
                if interrupted.is_set():  # AutoGen may swallow the cancellation: stop at the next message anyway
                    raise KeyboardInterrupt
                if isinstance(event, TaskResult):
                    stop_reason = event.stop_reason or ""
                    continue
                if getattr(event, "id", None) in given:
                    continue
                kind = _kind(event)
                if kind is None:
                    continue
                usage = getattr(event, "models_usage", None)
                message = store.append_message(
                    session_id,
                    event.source,
                    _content(event),
                    type=kind,
                    prompt_tokens=usage.prompt_tokens if usage else 0,
                    completion_tokens=usage.completion_tokens if usage else 0,
                )
                on_message(message)
            if interrupted.is_set():
                raise KeyboardInterrupt
            by_cap = stop_reason.startswith("Maximum number of turns")
            if ctx.human != "terminate":
                return stop_reason, by_cap
            feedback = ctx.input_func("Your feedback (empty to finish): ").strip()
            if not feedback:
                return stop_reason, by_cap
            next_task = feedback
    except asyncio.CancelledError:
        if interrupted.is_set():
            raise KeyboardInterrupt from None
        raise


def _stop_on_ctrl_c(cancel: threading.Event | None = None) -> asyncio.Event:
    """Make Ctrl-C (or setting `cancel`) cancel the running task and set the returned event (asyncio.run's own
    handler only cancels)."""
    interrupted = asyncio.Event()
    loop, task = asyncio.get_running_loop(), asyncio.current_task()

    def interrupt() -> None:
        interrupted.set()
        if task is not None:
            task.cancel()

    async def watch(event: threading.Event) -> None:  # ended by asyncio.run with the run's other tasks
        while not event.is_set():
            await asyncio.sleep(0.05)
        interrupt()

    if cancel is not None:
        watcher = loop.create_task(watch(cancel))
        _watchers.add(watcher)  # the loop holds tasks weakly
        watcher.add_done_callback(_watchers.discard)

    # Not possible off the main thread or without Unix signals: Ctrl-C then works as asyncio.run makes it.
    with suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGINT, interrupt)
    return interrupted


def _termination(spec: WorkflowSpec, agent_names: Sequence[str]) -> TerminationCondition | None:
    from autogen_agentchat.conditions import (
        MaxMessageTermination,
        SourceMatchTermination,
        TextMentionTermination,
        TimeoutTermination,
    )

    t = spec.termination
    conditions: list[Any] = []
    if t.text:  # only the agents' words count: the task itself may mention the text
        conditions.append(TextMentionTermination(t.text, sources=list(agent_names)))
    if t.after:
        conditions.append(SourceMatchTermination(list(t.after)))
    if t.max_messages:
        conditions.append(MaxMessageTermination(t.max_messages))
    if t.timeout_s:
        conditions.append(TimeoutTermination(t.timeout_s))
    if not conditions:
        return None
    combined = conditions[0]
    for condition in conditions[1:]:
        combined = combined | condition
    return combined


@cache
def _kinds() -> tuple[tuple[type, MessageType], ...]:
    """How each AutoGen message or event class is stored (imported on first use: autogen is slow to import)."""
    from autogen_agentchat import messages as m

    return (
        (m.TextMessage, "text"),
        (m.ToolCallSummaryMessage, "text"),
        (m.StructuredMessage, "text"),
        (m.ToolCallRequestEvent, "tool_call"),
        (m.ToolCallExecutionEvent, "tool_result"),
        (m.HandoffMessage, "handoff"),
        (m.StopMessage, "system"),
        (m.CodeGenerationEvent, "other"),
        (m.CodeExecutionEvent, "other"),
        (m.MemoryQueryEvent, "other"),
        (m.ThoughtEvent, "other"),
    )


def _kind(event: object) -> MessageType | None:
    """How an AutoGen message or event is stored; None for the ones not worth keeping (stream chunks, ...)."""
    return next((kind for cls, kind in _kinds() if isinstance(event, cls)), None)


def _content(event: Any) -> Any:
    """What is stored of a message: the calls or their results as JSON for tool events, else its text."""
    from autogen_agentchat.messages import ToolCallExecutionEvent, ToolCallRequestEvent

    if isinstance(event, ToolCallRequestEvent | ToolCallExecutionEvent):
        # FunctionCall is a dataclass, FunctionExecutionResult a pydantic model.
        return [
            item.model_dump() if isinstance(item, BaseModel) else dataclasses.asdict(item) for item in event.content
        ]
    return event.to_text()
