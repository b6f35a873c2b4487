"""Workflow runs started by a server: each in its own thread, every event it tells kept for whoever listens.

    runs = LiveRuns(RunTarget("http://127.0.0.1:1234/v1", model="SmolLM2-135M-Instruct", api_key="k"))
    run = runs.start(spec, RunRequest(inputs={"topic": "agents"}, human="always"))
    async for kind, data in run.events():   # ("session", {...}), ("message", Message)..., ("end", summary)
        ...                                 # any number of listeners, each from the start, on any event loop
    runs.answer(session_id, request_id, "Go on.")   # an ("input_request", {...}) event waits for this
    runs.resume(session_id, ResumeRequest())        # continue a stored session, as `autoqwen run --resume`
    runs.cancel(session_id)                         # from a worker thread: waits for the run to end `stopped`

A run is the runner's (`run_workflow`, `resume_workflow`): the same options, messages and store. Its human input
(`human_input.HumanInput`) asks through its events and waits for `answer`. It keeps going when whoever started it
stops listening: its session is in the store, and `cancel` stops it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from autoqwen.agents import ExternalModel, HumanMode
from autoqwen.workflows.api_models import ResumeRequest, RunRequest, RunSummary
from autoqwen.workflows.errors import WorkflowError
from autoqwen.workflows.human_input import ANSWER_TIMEOUT, HumanInput
from autoqwen.workflows.records import Session
from autoqwen.workflows.runner import RunOptions, RunResult, resume_workflow, run_workflow
from autoqwen.workflows.spec import WorkflowSpec
from autoqwen.workflows.store import SessionStore

__all__ = ["AlreadyRunning", "LiveRun", "LiveRuns", "NotRunning", "RunEvent", "RunTarget"]

log = logging.getLogger(__name__)

# ("session", {"session_id", "workflow"}), ("message", Message), ("input_request", {"request_id", "prompt",
# "human"}), ("end", RunSummary), or ("error", message) when the run failed before its session opened.
RunEvent = tuple[str, Any]
_LAST = ("end", "error")


class NotRunning(WorkflowError):
    """The session is not being run by this server (it ended, or another process runs it); `session_id` names it."""

    def __init__(self, session: Session) -> None:
        super().__init__(f"session {session.id!r} is not running on this server (it is {session.status})")
        self.session_id = session.id


class AlreadyRunning(WorkflowError):
    """A session asked to resume is running (here or in another process); `session_id` names it."""

    def __init__(self, session_id: str) -> None:
        super().__init__(f"session {session_id!r} is running: stop it, or wait for its end, to resume it")
        self.session_id = session_id


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
    """One run going on in its thread. Every event it tells is kept, so each listener gets them all from the start."""

    def __init__(self, workflow: str, human: HumanMode = "never", *, answer_timeout: float = ANSWER_TIMEOUT) -> None:
        self.workflow = workflow
        self.on_target = True  # its agents use the server's own model (not a server the workflow names)
        self.session_id: str | None = None
        self.cancel_event = threading.Event()
        self.done = threading.Event()
        self.human = HumanInput(self.put, self.cancel_event, human, timeout=answer_timeout)
        self._lock = threading.Lock()
        self._history: list[RunEvent] = []
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def put(self, kind: str, data: Any) -> None:
        """Tell an event (from the run's thread): keep it, and wake the listeners waiting for one."""
        with self._lock:
            self._history.append((kind, data))
            waiters, self._waiters = self._waiters, []
        for loop, waiter in waiters:
            with suppress(RuntimeError):  # that listener's loop is closed: nobody listens there any more
                loop.call_soon_threadsafe(_wake, waiter)

    async def events(self) -> AsyncIterator[RunEvent]:
        """The run's events from its start, up to and including `end` (or a first `error`); an `input_request`
        already answered (anything came after it) is left out."""
        seen = 0
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                batch = self._history[seen:]
                if not batch:
                    waiter = loop.create_future()
                    self._waiters.append((loop, waiter))
            if not batch:
                await waiter
                continue
            seen += len(batch)
            for index, (kind, data) in enumerate(batch):
                if kind == "input_request" and index < len(batch) - 1:
                    continue  # its answer came: the run went on
                yield kind, data
                if kind in _LAST:
                    return


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():  # a listener that left cancelled it
        waiter.set_result(None)


class LiveRuns:
    """The runs a server started, writing to `store` (the default one unless given), their agents on `target`; a
    run waiting for a human fails after `answer_timeout` seconds."""

    def __init__(
        self, target: RunTarget, store: SessionStore | None = None, *, answer_timeout: float = ANSWER_TIMEOUT
    ) -> None:
        self.target = target
        self.answer_timeout = answer_timeout
        self.store = store if store is not None else SessionStore()
        self._active: dict[str, LiveRun] = {}
        self._lock = threading.Lock()

    def start(self, spec: WorkflowSpec, request: RunRequest) -> LiveRun:
        """Start `spec` in a thread; a run that cannot start says so in its first event, `("error", message)`."""
        run = LiveRun(spec.name, request.human, answer_timeout=self.answer_timeout)
        options = self._options(run, spec, request, inputs=dict(request.inputs))
        options.on_session = lambda session_id: self._opened(run, session_id)

        def work() -> RunResult:
            return run_workflow(spec, options, store=self.store, on_message=lambda m: run.put("message", m))

        self._launch(run, work, reserved=None)
        return run

    def resume(self, session_id: str, request: ResumeRequest) -> LiveRun:
        """Continue a stored session in a thread, its stream starting with the messages it had; SessionNotFound
        for an unknown id, AlreadyRunning for one that runs (here or in another process)."""
        session = self.store.get_session(session_id)
        try:
            spec: WorkflowSpec | None = WorkflowSpec.from_snapshot(session.spec)
        except ValidationError:
            spec = None  # resume_workflow says why, in the run's first event
        run = LiveRun(session.workflow, request.human, answer_timeout=self.answer_timeout)
        with self._lock:
            if session_id in self._active or session.status == "running":
                raise AlreadyRunning(session_id)
            self._active[session_id] = run  # taken now: a second resume is refused at once
        options = self._options(run, spec, request)
        options.on_session = lambda opened: self._opened(run, opened, replay=True)

        def work() -> RunResult:
            return resume_workflow(session_id, options, store=self.store, on_message=lambda m: run.put("message", m))

        self._launch(run, work, reserved=session_id)
        return run

    def get(self, session_id: str) -> LiveRun | None:
        """The run of this server writing `session_id`, if any."""
        with self._lock:
            run = self._active.get(session_id)
        return run if run is not None and run.session_id == session_id else None

    def answer(self, session_id: str, request_id: str, text: str) -> None:
        """Answer the pending human input request of a run; SessionNotFound, NotRunning, or InputNotPending."""
        session = self.store.get_session(session_id)
        run = self.get(session_id)
        if run is None:
            raise NotRunning(session)
        run.human.answer(request_id, text)

    def cancel(self, session_id: str, timeout: float = 30.0) -> Session:
        """Stop the run of `session_id` and wait (up to `timeout` seconds) for it to end `stopped`; the session as
        stored. SessionNotFound for an unknown id, NotRunning when no run of this server writes it."""
        session = self.store.get_session(session_id)
        run = self.get(session_id)
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

    def _options(
        self, run: LiveRun, spec: WorkflowSpec | None, request: ResumeRequest | RunRequest, **extra: Any
    ) -> RunOptions:
        """The runner's options for a run of `spec` on this server's model (unless the workflow names another)."""
        target = self.target
        own = spec is None or not isinstance(spec.model, ExternalModel)  # a workflow naming a server keeps it
        run.on_target = own
        return RunOptions(
            base_url=target.base_url if own else None,
            api_key=target.api_key if own else None,
            model=target.model if own else None,
            human=request.human,
            max_turns=request.max_turns,
            seed=request.seed,
            input_func=run.human,
            cancel=run.cancel_event,
            **extra,
        )

    def _launch(self, run: LiveRun, work: Callable[[], RunResult], reserved: str | None) -> None:
        name = f"run-{run.workflow}"
        threading.Thread(target=self._work, args=(run, work, reserved), name=name, daemon=True).start()

    def _opened(self, run: LiveRun, session_id: str, *, replay: bool = False) -> None:
        with self._lock:
            self._active[session_id] = run
        run.session_id = session_id
        run.put("session", {"session_id": session_id, "workflow": run.workflow})
        if replay:  # a resumed session: what it said before comes first, as the runner gives it to the team
            for message in self.store.get_messages(session_id):
                run.put("message", message)

    def _work(self, run: LiveRun, work: Callable[[], RunResult], reserved: str | None) -> None:
        """The run's thread: run it, telling each message, then how it ended (or why it could not start)."""
        result: RunResult | None = None
        started = time.monotonic()
        why = "the run stopped before its session opened"
        try:
            if run.on_target and self.target.wait_ready is not None:
                self.target.wait_ready()  # the model the run uses is loading: wait for it
            result = work()
        except KeyboardInterrupt:
            pass  # cancelled: the runner stored the session as stopped
        except Exception as exc:  # the session (if any) says what; never let it kill the server
            if not isinstance(exc, WorkflowError):
                log.exception("workflow run %s failed", run.session_id or run.workflow)
            why = str(exc) if isinstance(exc, WorkflowError) else f"the run failed: {exc}"
        finally:
            if run.session_id is None:
                run.put("error", why)  # whoever waits for the session hears why there is none
            with self._lock:
                for key in {run.session_id, reserved} - {None}:
                    if self._active.get(str(key)) is run:
                        del self._active[str(key)]
            if run.session_id is not None:
                run.put("end", self._summary(run.session_id, result, time.monotonic() - started))
            run.done.set()

    def _summary(self, session_id: str, result: RunResult | None, seconds: float) -> RunSummary | None:
        try:
            session = self.store.get_session(session_id)
        except WorkflowError:
            log.exception("session %s could not be read back", session_id)
            return None
        if result is None:  # cancelled or failed: the turn cap did not stop it
            return RunSummary.of(session, seconds=seconds)
        return RunSummary.of(session, by_cap=result.by_cap, seconds=result.seconds)
