"""The engine's worker loop: admits queued completions into one batch (up to `max_batch`, first come first
served), reads their prompts in chunks (`prefill.py`) between the batch's steps, steps the batch one forward pass
at a time, retires rows that end, and runs scoring jobs in between.

Each turn of the loop reads prompt chunks worth at most `prefill.CHUNK_WORK` multiply-adds (at least one chunk:
one long prompt's next chunk, or several short prompts whole), then steps the running rows once, so a long prompt
delays each running stream's next token by one chunk's time rather than by the whole prompt's."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from autoqwen.local_llm import prefill
from autoqwen.local_llm.completion import Completion
from autoqwen.local_llm.errors import EngineNotReady, LocalLLMError
from autoqwen.local_llm.prefill import Reading
from autoqwen.local_llm.prefix_cache import PrefixCache
from autoqwen.local_llm.scoring import Scoring, score
from autoqwen.local_llm.tokenizer import Tokenizer

if TYPE_CHECKING:
    from autoqwen.local_llm.decoding import Decoding

__all__ = ["EngineHooks", "Scheduler", "TokenRate", "WorkSeconds"]

log = logging.getLogger(__name__)

Job = Completion | Scoring | None  # None: stop serving


@dataclass
class EngineHooks:
    """Callbacks from the worker thread at points worth watching (tests use them to hold or observe the worker).

    engine.hooks.on_prefill = lambda job: gate.wait(10)   # hold the worker as a prompt's reading begins
    """

    on_prefill: Callable[[Completion], object] | None = None  # a job's prompt is about to be read
    on_chunk: Callable[[Completion, int, int], object] | None = None  # a chunk of its prompt was read: tokens [a, b)
    on_step: Callable[[int], object] | None = None  # a decode step ran with this many rows
    on_retire: Callable[[int], object] | None = None  # this many rows left the batch together


@dataclass
class WorkSeconds:
    """Seconds spent on tool calling's extra work since the engine started: scoring (the channel tool selection)
    and grammars (checking and compiling them, masking each sampled token, fast-forwarding forced ones)."""

    scoring: float = 0.0
    grammar: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, *, scoring: float = 0.0, grammar: float = 0.0) -> None:
        """Count more seconds (the worker and the server's threads both do)."""
        with self._lock:
            self.scoring += scoring
            self.grammar += grammar

    def copy(self) -> WorkSeconds:
        with self._lock:
            return WorkSeconds(self.scoring, self.grammar)


class TokenRate:
    """Tokens generated per second over a sliding window of recent decode steps."""

    def __init__(self, window_s: float = 10.0) -> None:
        self.window_s = window_s
        self._recent: deque[tuple[float, int]] = deque()  # (time, tokens) of recent decode steps

    def count(self, tokens: int) -> None:
        """Record a decode step that made `tokens` tokens."""
        now = time.perf_counter()
        self._recent.append((now, tokens))
        while self._recent and now - self._recent[0][0] > self.window_s:
            self._recent.popleft()

    @property
    def per_second(self) -> float:
        """Tokens per second over the window, all sequences together."""
        recent = list(self._recent)
        if len(recent) < 2:
            return 0.0
        span = max(time.perf_counter() - recent[0][0], 1e-6)
        return sum(n for _, n in recent[1:]) / span


# A prompt with at least this many tokens read goes to the prefix cache as soon as it is read, so that requests
# sharing its prefix while it still generates (parallel agents with one system prompt and history) reuse it; the
# row's whole sequence replaces that entry when it ends. Shorter prompts cost little to read again.
SHARE_TOKENS = 256


class Scheduler:
    """Serves one engine's queue on its worker thread until it reads None."""

    def __init__(
        self,
        model: Any,
        tokenizer: Tokenizer,
        *,
        eos_ids: frozenset[int],
        context_length: int,
        prefix_cache: PrefixCache,
        max_batch: int,
        hooks: EngineHooks,
        work: WorkSeconds | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.eos_ids = eos_ids
        self.context_length = context_length
        self.prefix_cache = prefix_cache
        self.max_batch = max_batch
        self.hooks = hooks
        self.rate = TokenRate()
        self.work = work if work is not None else WorkSeconds()
        self.active: list[Decoding] = []  # the batch's rows, in admission order
        self.reading: deque[Reading] = deque()  # admitted jobs whose prompts are being read, in admission order

    def serve(self, jobs: queue.Queue[Job]) -> None:
        """Admit queued jobs (up to max_batch in the batch or being read, in arrival order), read their prompts and
        step the batch until all are done."""
        import torch

        from autoqwen.local_llm.batch import Batch

        batch, active, reading = Batch(self.model), self.active, self.reading
        with torch.inference_mode():
            while True:
                while len(active) + len(reading) < self.max_batch:
                    try:
                        job = jobs.get(block=not active and not reading)
                    except queue.Empty:
                        break
                    if job is None:
                        for seq in [*active, *(r.seq for r in reading)]:
                            seq.job.fail(EngineNotReady("the server is shutting down"))
                        return
                    if isinstance(job, Scoring):
                        self._send_held_text()  # the running streams wait for the scoring
                        started = time.perf_counter()
                        score(self.model, self.prefix_cache, job)
                        self.work.add(scoring=time.perf_counter() - started)
                        continue
                    self._admit(job, batch)
                self._retire({row: None for row, seq in enumerate(active) if seq.job.cancelled}, batch)
                self._read(batch)
                if active:
                    batch = self._step(batch)

    def _step(self, batch: Any) -> Any:
        """One decode step of the batch's rows; returns the batch (a new one if the step failed)."""
        from autoqwen.local_llm.batch import Batch

        active = self.active
        try:
            logits = batch.step([seq.pending for seq in active])
        except Exception as exc:  # a failed forward pass leaves the batch unusable: fail its jobs
            log.exception("decode step failed")
            for seq in active:
                seq.job.fail(LocalLLMError(f"generation failed: {exc}"))
            active.clear()
            return Batch(self.model)
        self.rate.count(len(active))
        if self.hooks.on_step is not None:
            self.hooks.on_step(len(active))
        # All rows' argmax at once (rows that sample ignore theirs), by numpy's: faster than torch's.
        greedy = logits.numpy().argmax(-1).tolist()
        ended: dict[int, LocalLLMError | None] = {}
        now = time.perf_counter()
        for row, seq in enumerate(active):
            try:
                seq.advance(logits[row], greedy[row])
            except LocalLLMError as exc:
                ended[row] = exc
            except Exception as exc:  # a bug, not the request's fault: fail this row, keep serving
                log.exception("sampling failed")
                ended[row] = LocalLLMError(f"generation failed: {exc}")
            else:
                if seq.done:
                    ended[row] = None
                else:  # text held back past the interval (the text stream may have held a token's)
                    seq.job.send_due(now)
        self._retire(ended, batch)
        del logits  # not kept while the loop waits for work: an idle server holds no request's tensors
        return batch

    def _admit(self, job: Completion, batch: Any) -> None:
        """Take a job on. A prompt whose KV states are all cached but for its last token (a repeated prompt) feeds
        that token in the batch's next step with the other rows; any other is queued to be read (from the end of
        the longest cached prefix), in chunks between the batch's steps."""
        from autoqwen.local_llm.decoding import Decoding

        if job.cancelled:
            job.finish("stop", 0)
            return
        try:
            if self.hooks.on_prefill is not None:
                self.hooks.on_prefill(job)
            p = job.params
            limit = self.context_length - job.prompt_tokens
            if p.max_tokens is not None:
                limit = min(limit, p.max_tokens)
            started = time.perf_counter()
            matcher = self.tokenizer.matcher(p.grammar) if p.grammar else None
            self.work.add(grammar=time.perf_counter() - started)
            seq = Decoding(
                job, self.tokenizer.decode, eos_ids=self.eos_ids, limit=limit, matcher=matcher, work=self.work
            )
            tokens = [*job.prompt_ids, *seq.start()]
            if seq.done:
                seq.finish()
                return
            cached, kv = self.prefix_cache.lookup(tokens, scope=job.cache_scope)
            job.cached_tokens = min(cached, job.prompt_tokens)
            seq.fed, seq.pending = tokens[:-1], tokens[-1:]
            if cached < len(tokens) - 1:
                self.reading.append(Reading(seq, tokens, cached, kv, self.model))
                return
        except LocalLLMError as exc:
            job.fail(exc)
            return
        except Exception as exc:
            log.exception("prefill failed")
            job.fail(LocalLLMError(f"generation failed: {exc}"))
            return
        batch.add(kv)  # copies
        self.active.append(seq)

    def _read(self, batch: Any) -> None:
        """Read prompt chunks worth up to CHUNK_WORK (at least one chunk), oldest prompt first; a prompt read to
        its end gives its first token and joins the batch."""
        spent = 0.0
        while self.reading:
            reading = self.reading[0]
            try:
                if reading.job.cancelled:
                    self.reading.popleft()
                    self._leave(reading)
                    continue
                start, end = reading.position, reading.next_end()
                cost = reading.cost(end)
                if spent and spent + cost > prefill.CHUNK_WORK:
                    return
                spent += cost
                self._send_held_text()  # the running streams wait for this chunk
                logits = reading.read(end)
                if self.hooks.on_chunk is not None:
                    self.hooks.on_chunk(reading.job, start, end)
                if not reading.done:
                    continue
                self.reading.popleft()
                reading.seq.advance(logits)
            except Exception as exc:  # this prompt fails; the others, and the batch, go on
                if self.reading and self.reading[0] is reading:
                    self.reading.popleft()
                if not isinstance(exc, LocalLLMError):
                    log.exception("prefill failed")
                    exc = LocalLLMError(f"generation failed: {exc}")
                reading.job.fail(exc)
                continue
            self._join(reading, batch)

    def _leave(self, reading: Reading) -> None:
        """A prompt whose client left while it was read: what was read goes to the prefix cache (for a retry)."""
        job = reading.job
        if reading.position > reading.cached:
            kv = [(k.contiguous(), v.contiguous()) for k, v in reading.kv()]
            self.prefix_cache.put(reading.tokens[: reading.position], kv, scope=job.cache_scope)
        job.finish("stop", 0)

    def _join(self, reading: Reading, batch: Any) -> None:
        """A prompt read to its end: its row joins the batch, or ends at once (its first token ended it)."""
        seq, kv = reading.seq, reading.kv()
        if seq.done:
            self.prefix_cache.put(seq.fed, [(k.contiguous(), v.contiguous()) for k, v in kv], scope=seq.job.cache_scope)
            seq.finish()
            return
        if len(reading.tokens) - reading.cached >= SHARE_TOKENS:  # shared while it generates, not only once done
            prompt = [(k.contiguous(), v.contiguous()) for k, v in kv]
            self.prefix_cache.put(reading.tokens, prompt, scope=seq.job.cache_scope)
        batch.add(kv)  # copies
        self.active.append(seq)

    def _send_held_text(self) -> None:
        """Deliver the text the running streams hold, before work that makes them wait (a prefill, scoring)."""
        for seq in self.active:
            seq.job.send_held()

    def _retire(self, ended: dict[int, LocalLLMError | None], batch: Any) -> None:
        """Take the rows in `ended` out of the batch, all at once: finished ones (None) leave their KV states to
        the prefix cache and end their completions; the others fail with their error."""
        if not ended:
            return
        if self.hooks.on_retire is not None:
            self.hooks.on_retire(len(ended))
        rows = sorted(ended)
        for row, kv in zip(rows, batch.remove(rows), strict=True):
            seq, error = self.active[row], ended[row]
            if error is None:
                self.prefix_cache.put(seq.fed, kv, scope=seq.job.cache_scope)
                seq.finish()
            else:
                seq.job.fail(error)
        self.active[:] = [seq for row, seq in enumerate(self.active) if row not in ended]
