"""Workflow runs started by a server: each in its own thread, its events handed to the event loop as they happen.

    runs = LiveRuns(RunTarget("http://127.0.0.1:1234/v1", model="SmolLM2-135M-Instruct", api_key="k"))
    run = runs.start(spec, RunRequest(inputs={"topic": "agents"}))   # from a coroutine: its loop gets the events
    async for kind, data in run.events():   # ("session", {...}), then ("message", Message)..., then ("end", summary)
        ...
    runs.cancel(run.session_id)             # from a worker thread: waits for the run to end `stopped`

A run is the runner's (`run_workflow`): the same options, messages and store, with nobody to ask (human input
"never"). It keeps going when whoever started it stops listening: its session is in the store, and `cancel` stops it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from autoqwen.agents import ExternalModel
from autoqwen.workflows.api_models import RunRequest, RunSummary
from autoqwen.workflows.errors import RunError, WorkflowError
from autoqwen.workflows.records import Session
from autoqwen.workflows.runner import RunOptions, RunResult, run_workflow
from autoqwen.workflows.spec import WorkflowSpec
from autoqwen.workflows.store import SessionStore

__all__ = ["LiveRun", "LiveRuns", "NotRunning", "RunEvent", "RunTarget"]

log = logging.getLogger(__name__)

# ("session", {"session_id": ...}), ("message", Message), ("end", RunSummary), or ("error", message) when the run
# failed before its session opened.
RunEvent = tuple[str, Any]


class NotRunning(WorkflowError):
    """The session is not being run by this server (it ended, or another process runs it); `session_id` names it."""

    def __init__(self, session: Session) -> None:
        super().__init__(f"session {session.id!r} is not running on this server (it is {session.status})")
        self.session_id = session.id


@dataclass(frozen=True)
class RunTarget:
    """The OpenAI server the runs' agents talk to: the serving process's own, over loopback, with its API key.

    `wait_ready` (the engine's), when given, is called before each run: a run asked for while the model loads waits.
    """

    base_url: str
    model: str | None = None
    api_key: str | None = None
    wait_ready: Callable[[], object] | None = None


class LiveRun:
    """One run going on in its thread; its events queue up on the event loop that started it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.session_id: str | None = None
        self.cancel_event = threading.Event()
        self.done = threading.Event()
        self._loop = loop
        self._queue: asyncio.Queue[RunEvent] = asyncio.Queue()

    def put(self, kind: str, data: Any) -> None:
        """Hand an event to the loop (called from the run's thread)."""
        with suppress(RuntimeError):  # the loop is closed: the server is going away, and nobody listens
            self._loop.call_soon_threadsafe(self._queue.put_nowait, (kind, data))

    async def events(self) -> AsyncIterator[RunEvent]:
        """The run's events, up to and including `end` (or a first `error`)."""
        while True:
            kind, data = await self._queue.get()
            yield kind, data
            if kind in ("end", "error"):
                return


class LiveRuns:
    """The runs a server started, writing to `store` (the default one unless given), their agents on `target`."""

    def __init__(self, target: RunTarget, store: SessionStore | None = None) -> None:
        self.target = target
        self.store = store if store is not None else SessionStore()
        self._active: dict[str, LiveRun] = {}
        self._lock = threading.Lock()

    def start(self, spec: WorkflowSpec, request: RunRequest) -> LiveRun:
        """Start `spec` in a thread (called from a coroutine, whose loop receives the events); a run that cannot
        start says so in its first event, `("error", message)`."""
        run = LiveRun(asyncio.get_running_loop())
        target = self.target
        own = not isinstance(spec.model, ExternalModel)  # a workflow naming an external server keeps it
        options = RunOptions(
            inputs=dict(request.inputs),
            base_url=target.base_url if own else None,
            api_key=target.api_key if own else None,
            model=target.model if own else None,
            human="never",
            max_turns=request.max_turns,
            seed=request.seed,
            input_func=_nobody,
            on_session=lambda session_id: self._opened(run, session_id),
            cancel=run.cancel_event,
        )
        threading.Thread(target=self._work, args=(spec, options, run), name=f"run-{spec.name}", daemon=True).start()
        return run

    def cancel(self, session_id: str, timeout: float = 30.0) -> Session:
        """Stop the run of `session_id` and wait (up to `timeout` seconds) for it to end `stopped`; the session as
        stored. SessionNotFound for an unknown id, NotRunning when no run of this server writes it."""
        session = self.store.get_session(session_id)
        with self._lock:
            run = self._active.get(session_id)
        if run is None:
            raise NotRunning(session)
        run.cancel_event.set()
        run.done.wait(timeout)
        return self.store.get_session(session_id)

    def close(self, timeout: float = 10.0) -> None:
        """Cancel every run and wait up to `timeout` seconds for them to end (the server is stopping)."""
        with self._lock:
            runs = list(self._active.values())
        for run in runs:
            run.cancel_event.set()
        for run in runs:
            run.done.wait(timeout)

    def _opened(self, run: LiveRun, session_id: str) -> None:
        with self._lock:
            self._active[session_id] = run
        run.session_id = session_id
        run.put("session", {"session_id": session_id})

    def _work(self, spec: WorkflowSpec, options: RunOptions, run: LiveRun) -> None:
        """The run's thread: run it, telling each message, then how it ended (or why it could not start)."""
        result: RunResult | None = None
        try:
            if self.target.wait_ready is not None:
                self.target.wait_ready()
            result = run_workflow(spec, options, store=self.store, on_message=lambda m: run.put("message", m))
        except KeyboardInterrupt:
            pass  # cancelled: the runner stored the session as stopped
        except Exception as exc:  # the session (if any) says what; never let it kill the server
            if not isinstance(exc, WorkflowError):
                log.exception("workflow run %s failed", run.session_id or spec.name)
            if run.session_id is None:
                run.put("error", str(exc) if isinstance(exc, WorkflowError) else f"the run failed: {exc}")
        finally:
            with self._lock:
                self._active.pop(run.session_id or "", None)
            if run.session_id is not None:
                run.put("end", self._summary(run.session_id, result))
            run.done.set()

    def _summary(self, session_id: str, result: RunResult | None) -> RunSummary | None:
        try:
            session = self.store.get_session(session_id)
        except WorkflowError:
            log.exception("session %s could not be read back", session_id)
            return None
        if result is None:
            return RunSummary.of(session)
        return RunSummary.of(session, by_cap=result.by_cap, seconds=result.seconds)


def _nobody(prompt: str) -> str:
    """The input function of a server's runs: there is nobody to ask (human input is always "never" there)."""
    raise RunError(f"this run was started over HTTP: nobody can answer {prompt[:80]!r}")
