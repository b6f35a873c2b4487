"""Human input for a server's runs: the run's thread asks whoever watches, and waits for an answer over HTTP.

    human = HumanInput(tell=run.put, cancel=run.cancel_event, mode="always")
    RunOptions(human="always", input_func=human)       # the runner calls human(prompt) when a user proxy speaks
    human.answer(request_id, "Yes, go on.")            # from POST /v1/sessions/{id}/input

Asking tells an `input_request` event, `{"request_id", "prompt", "human"}`, and blocks the run's thread until the
request is answered, the run is cancelled (the run then ends `stopped`), or `timeout` seconds pass (the run then
fails, saying nobody answered).
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from autoqwen.agents import HumanMode
from autoqwen.workflows.errors import RunError, WorkflowError

__all__ = ["ANSWER_TIMEOUT", "HumanInput", "InputNotPending"]

ANSWER_TIMEOUT = 3600.0
"""How long a run waits for a human's answer before it fails (seconds)."""
_POLL = 0.1  # how often a waiting run looks at its cancel event
_GRACE = 0.5  # how long a cancelled run's user proxy waits for the runner to cancel its team


class InputNotPending(WorkflowError):
    """An answer that no request of the run waits for: none is pending, or it is for another request."""


@dataclass
class _Request:
    id: str
    prompt: str
    answered: threading.Event = field(default_factory=threading.Event)
    text: str = ""


class HumanInput:
    """The input function of one live run; `tell(kind, data)` hands its `input_request` events to the watchers."""

    def __init__(
        self,
        tell: Callable[[str, Any], None],
        cancel: threading.Event,
        mode: HumanMode = "never",
        *,
        timeout: float = ANSWER_TIMEOUT,
    ) -> None:
        self.mode = mode
        self.timeout = timeout
        self._tell = tell
        self._cancel = cancel
        self._lock = threading.Lock()
        self._pending: _Request | None = None

    @property
    def pending(self) -> str | None:
        """The id of the request waiting for its answer, if any."""
        with self._lock:
            return None if self._pending is None else self._pending.id

    def __call__(self, prompt: str) -> str:
        """Ask (from the run's thread) and wait for the answer; KeyboardInterrupt when the run is cancelled."""
        if self._cancel.is_set():
            return self._cancelled()
        request = _Request(id=uuid.uuid4().hex, prompt=prompt)
        with self._lock:
            self._pending = request
        self._tell("input_request", {"request_id": request.id, "prompt": prompt, "human": self.mode})
        deadline = time.monotonic() + self.timeout
        try:
            while not request.answered.wait(_POLL):
                if self._cancel.is_set():
                    return self._cancelled()
                if time.monotonic() >= deadline:
                    raise RunError(
                        f"nobody answered the human input request {prompt.strip()[:80]!r} within "
                        f"{self.timeout:g} s (answer with POST /v1/sessions/ID/input)"
                    )
        finally:
            with self._lock:
                if self._pending is request:
                    self._pending = None
        return request.text

    @staticmethod
    def _cancelled() -> str:
        """Give up a question of a cancelled run, in the way the runner then stores it `stopped`."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            # A user proxy asks from an executor thread while the runner cancels the team (its watcher looks every
            # 50 ms). Once it has, an answer nobody reads ends this thread quietly; an exception here would escape
            # into AutoGen's runtime, and an answer given at once could still reach the team.
            time.sleep(_GRACE)
            return ""
        # Asked by the runner itself (feedback after the team stopped), its event loop blocked: as Ctrl-C at the
        # CLI's prompt.
        raise KeyboardInterrupt

    def answer(self, request_id: str, text: str) -> None:
        """Answer the pending request `request_id` with `text`; InputNotPending when it is not the one waiting."""
        with self._lock:
            request = self._pending
            if request is None:
                raise InputNotPending("the run is not waiting for human input now")
            if request.id != request_id:
                raise InputNotPending(
                    f"the run waits for the answer to request {request.id!r}, not {request_id[:100]!r}"
                )
            self._pending = None
            request.text = text
            request.answered.set()
