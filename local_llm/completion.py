"""The handle on one queued generation (`Completion`), the bridge that carries its text from the engine's
worker thread to the client's thread or asyncio event loop, and `interleave`, which reads several at once (the
choices of one request)."""

from __future__ import annotations

import asyncio
import math
import queue
import threading
import time
import weakref
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, Literal

from autoqwen.local_llm.errors import LocalLLMError
from autoqwen.local_llm.sampling import SamplingParams, TokenLogprob

__all__ = ["Completion", "interleave"]

_DONE = object()


class _Outbox:
    """Items for the asyncio queues of one event loop, from the worker thread: one wake-up of the loop per burst
    (a decode step's tokens for all its streams), not one per item."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = weakref.ref(loop)  # weak: the registry below must not keep finished loops alive
        self._items: list[tuple[asyncio.Queue[Any], object]] = []
        self._lock = threading.Lock()

    def put(self, target: asyncio.Queue[Any], item: object) -> None:
        """Deliver `item` to `target` on the loop; RuntimeError if the loop is closed."""
        loop = self._loop()
        if loop is None or loop.is_closed():
            raise RuntimeError("event loop is closed")
        with self._lock:
            self._items.append((target, item))
            if len(self._items) > 1:
                return  # a delivery is already scheduled and will take this item too
        try:
            loop.call_soon_threadsafe(self._deliver)
        except BaseException:  # e.g. the loop closed: nobody is listening; later items must schedule again
            with self._lock:
                self._items.clear()
            raise

    def _deliver(self) -> None:
        with self._lock:
            items, self._items = self._items, []
        for target, item in items:
            target.put_nowait(item)


_outboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Outbox] = weakref.WeakKeyDictionary()
_outboxes_lock = threading.Lock()


def _outbox(loop: asyncio.AbstractEventLoop) -> _Outbox:
    with _outboxes_lock:
        if (box := _outboxes.get(loop)) is None:
            box = _outboxes[loop] = _Outbox(loop)
        return box


class Completion:
    """Handle on one queued generation: iterate it (sync or async) for text pieces, or cancel it.

    After iteration ends, `finish_reason` is "stop" or "length" and the token counts are final. The engine's worker
    drives it through `emit`, `send_due`, `send_held`, `finish` and `fail`.

    With `params.logprobs` set, `logprobs` holds each generated token's `TokenLogprob`, in order (end-of-sequence
    left out); the worker appends a token's entry before its text goes out, so a reader that has a piece of text
    finds the entries of the tokens that made it (and maybe of a few whose text is still held back).
    """

    def __init__(
        self,
        prompt_ids: Sequence[int],
        params: SamplingParams,
        *,
        async_mode: bool,
        interval: float = 0.0,
        cache_scope: str | None = None,
    ) -> None:
        self.prompt_ids = list(prompt_ids)
        self.params = params
        self.cache_scope = cache_scope  # prefix cache entries this completion may read and leaves (PrefixCache)
        self.prompt_tokens = len(self.prompt_ids)
        self.completion_tokens = 0
        self.cached_tokens = 0  # prompt tokens whose KV states came from the prefix cache
        self.logprobs: list[TokenLogprob] = []  # filled only when params.logprobs is set
        self.finish_reason: Literal["stop", "length"] | None = None
        self.submitted_at = time.perf_counter()
        self.first_token_at: float | None = None
        self.finished_at: float | None = None
        self._cancelled = threading.Event()
        self._outbox = _outbox(asyncio.get_running_loop()) if async_mode else None
        self._aqueue: asyncio.Queue[Any] | None = asyncio.Queue() if async_mode else None
        self._queue: queue.Queue[Any] = queue.Queue()
        self._interval = interval  # seconds between deliveries of text; pieces decoded in between go together
        self._held: list[str] = []
        self._sent_at = -math.inf

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self) -> None:
        """Stop generating as soon as possible (e.g. the streaming client went away); frees the model."""
        self._cancelled.set()

    def __iter__(self) -> Iterator[str]:
        while (item := self._queue.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item

    async def __aiter__(self) -> AsyncIterator[str]:
        assert self._aqueue is not None, "submit(..., async_mode=True) to iterate asynchronously"
        while (item := await self._aqueue.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item

    def text(self) -> str:
        """Wait for the whole completion and return its text (sync mode)."""
        return "".join(self)

    # -- the worker's side -------------------------------------------------------------------------
    def emit(self, piece: str) -> None:
        """Add generated text; it goes out now if the stream interval is over, else with the next delivery."""
        now = time.perf_counter()
        if self.first_token_at is None:
            self.first_token_at = now
        self._held.append(piece)
        self.send_due(now)

    def send_due(self, now: float) -> None:
        """Deliver the held text if the interval since the last delivery is over."""
        if self._held and now - self._sent_at >= self._interval:
            self.send_held(now)

    def send_held(self, now: float | None = None) -> None:
        """Deliver the text held back since the last delivery, as one piece."""
        if self._held:
            self._push("".join(self._held))
            self._held.clear()
            self._sent_at = time.perf_counter() if now is None else now

    def finish(self, reason: Literal["stop", "length"], completion_tokens: int) -> None:
        """End the completion: deliver what is held, then the end of the stream."""
        self.finish_reason = reason
        self.completion_tokens = completion_tokens
        self.finished_at = time.perf_counter()
        self.send_held()
        self._push(_DONE)

    def fail(self, error: BaseException) -> None:
        """End the completion with `error`, raised in the client's iteration after the text already made."""
        self.finished_at = time.perf_counter()
        self.send_held()
        self._push(error)
        self._push(_DONE)

    def _push(self, item: object) -> None:
        if self._outbox is not None and self._aqueue is not None:
            try:
                self._outbox.put(self._aqueue, item)
            except RuntimeError:  # the client's event loop is gone: nobody is listening any more
                self.cancel()
        else:
            self._queue.put(item)


async def interleave(completions: Sequence[Completion]) -> AsyncIterator[tuple[int, str | None]]:
    """The text of several async completions as it comes, each piece as (index, piece) and each end as (index,
    None); the first failure is raised (as a LocalLLMError). Closing it stops reading, not the completions: their
    owner cancels them."""
    pieces: asyncio.Queue[tuple[int, str | None] | LocalLLMError] = asyncio.Queue()

    async def pump(index: int, completion: Completion) -> None:
        try:
            async for piece in completion:
                pieces.put_nowait((index, piece))
            pieces.put_nowait((index, None))
        except LocalLLMError as exc:
            pieces.put_nowait(exc)
        except Exception as exc:  # a bug, not the request's fault: the reader must not wait forever
            pieces.put_nowait(LocalLLMError(f"generation failed: {exc}"))

    tasks = [asyncio.ensure_future(pump(i, c)) for i, c in enumerate(completions)]
    try:
        remaining = len(completions)
        while remaining:
            item = await pieces.get()
            if isinstance(item, LocalLLMError):
                raise item
            if item[1] is None:
                remaining -= 1
            yield item
    finally:
        for task in tasks:
            task.cancel()
