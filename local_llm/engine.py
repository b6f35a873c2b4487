"""The generation engine: owns one model on one worker thread and serves queued completion requests.

    engine = Engine(resolve_model("bundled"))
    engine.start()                      # loads on the worker thread; engine.state says "loading" → "ready"
    engine.wait_ready()
    ids = engine.encode_chat([{"role": "user", "content": "Hi"}])
    completion = engine.submit(ids, SamplingParams(max_tokens=32, seed=1))
    print("".join(completion))          # or `async for piece in completion` inside an event loop

This module owns the lifecycle and the request API; loading is `loading.py`, the worker loop `scheduler.py`, the
tokenizer `tokenizer.py`, scoring `scoring.py`. torch and transformers are imported lazily, on the worker thread,
so importing this module is cheap.
"""

from __future__ import annotations

import gc
import logging
import queue
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from autoqwen.local_llm import kernels
from autoqwen.local_llm.completion import Completion
from autoqwen.local_llm.errors import (
    ContextLengthExceeded,
    EngineNotReady,
    InvalidRequest,
    LocalLLMError,
    ModelLoadError,
    QueueFull,
)
from autoqwen.local_llm.loading import Quantize, load_model, release_freed_memory
from autoqwen.local_llm.prefix_cache import PrefixCache
from autoqwen.local_llm.resolve import ModelSource
from autoqwen.local_llm.sampling import SamplingParams
from autoqwen.local_llm.scheduler import EngineHooks, Job, Scheduler, WorkSeconds
from autoqwen.local_llm.scoring import Scoring
from autoqwen.local_llm.tokenizer import Tokenizer

__all__ = ["Engine", "EngineState"]

log = logging.getLogger(__name__)

EngineState = Literal["created", "loading", "ready", "failed", "closed"]


class Engine:
    """One model on one worker thread, fed by a bounded queue of completions.

    Up to `max_batch` completions decode together, one forward pass per step; the rest wait in the queue, first come
    first served. Prompts reuse the KV states of the longest prefix seen recently (`prefix_cache_mb`, 0 = off).
    A stream's text goes out at most every `stream_interval_ms` (0 = every token), the pieces decoded meanwhile
    together: fewer events for the server and its clients to handle per token, where they share the CPU.
    """

    def __init__(
        self,
        source: ModelSource,
        *,
        max_queue: int = 256,
        max_batch: int = 8,
        prefix_cache_mb: int = 1024,
        quantize: Quantize = "auto",
        threads: int | None = None,
        stream_interval_ms: int = 20,
        hooks: EngineHooks | None = None,
    ) -> None:
        self.source = source
        self.model_id = source.model_id
        self.max_queue = max_queue
        self.max_batch = max(1, max_batch)
        self.prefix_cache = PrefixCache(prefix_cache_mb << 20)
        self.quantize = quantize
        self.quantized = False
        self.threads = threads
        self.stream_interval_ms = stream_interval_ms
        self.hooks = hooks or EngineHooks()
        self.state: EngineState = "created"
        self.load_stage = "waiting"
        self.load_seconds: float | None = None
        self.loaded_from: Path | None = None
        self.error: LocalLLMError | None = None
        self.context_length = 0
        self.weight_bytes = 0  # memory of the loaded weights
        self.model: Any = None  # the loaded transformers model, once ready
        self.work_seconds = WorkSeconds()  # seconds of tool scoring and grammars: /metrics, the tool evaluation
        self.tokenizer: Tokenizer | None = None
        self._queue: queue.Queue[Job] = queue.Queue(maxsize=max_queue)
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._scheduler: Scheduler | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> Engine:
        """Start the worker thread, which loads the model and then serves the queue."""
        if self._thread is None:
            self.state = "loading"
            self._thread = threading.Thread(target=self._run, name="autoqwen-engine", daemon=True)
            self._thread.start()
        return self

    def wait_ready(self, timeout: float | None = None) -> Engine:
        """Block until the model is loaded; raise the load error if loading failed."""
        if not self._ready.wait(timeout):
            raise EngineNotReady(f"model {self.model_id} is still loading after {timeout} s")
        if self.error is not None:
            raise self.error
        return self

    def close(self) -> None:
        """Stop the worker after the request in progress; waiting requests are failed."""
        if self._thread is None or self.state == "closed":
            return
        self.state = "closed"
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(job, Scoring):
                job.error = EngineNotReady("the server is shutting down")
                job.done.set()
            elif job is not None:
                job.fail(EngineNotReady("the server is shutting down"))
        self._queue.put(None)
        self._thread.join(timeout=30)
        if not self._thread.is_alive():  # its weights and KV states go, so a model loaded again does not add up
            self.model, self._scheduler = None, None
            self.prefix_cache.clear()
            gc.collect()  # transformers' modules hold reference cycles
            release_freed_memory()

    @property
    def queue_depth(self) -> int:
        """Requests waiting for the model (not counting those being generated)."""
        return self._queue.qsize()

    @property
    def tokens_per_second(self) -> float:
        """Tokens generated per second over the last few seconds, all sequences together."""
        return self._scheduler.rate.per_second if self._scheduler is not None else 0.0

    @property
    def batch_size(self) -> int:
        """Sequences decoding now."""
        return len(self._scheduler.active) if self._scheduler is not None else 0

    # -- requests ---------------------------------------------------------------------------------
    def encode_chat(self, messages: Sequence[Mapping[str, str]]) -> list[int]:
        """Render messages with the model's own chat template (plus the assistant prompt) into token ids."""
        return self._ready_tokenizer().encode_chat(messages)

    def encode(self, text: str) -> list[int]:
        """Token ids of plain text (no special tokens)."""
        return self._ready_tokenizer().encode(text)

    def encode_after(self, before: str, text: str) -> list[int] | None:
        """Token ids of `text` where it follows `before`, or None when a token straddles the two."""
        return self._ready_tokenizer().encode_after(before, text)

    def check_grammar(self, grammar: str, *, keep: bool = False) -> str | None:
        """Why `grammar` cannot constrain this model's output (an llguidance error message), or None if it can;
        `keep`: compiled and kept for the decoding that follows (`Tokenizer.check_grammar`)."""
        started = time.perf_counter()
        try:
            return self._ready_tokenizer().check_grammar(grammar, keep=keep)
        finally:
            self.work_seconds.add(grammar=time.perf_counter() - started)

    def is_special_token(self, text: str) -> bool:
        """Whether `text` is one special token of this tokenizer (e.g. Qwen2.5's `<tool_call>`)."""
        return self._ready_tokenizer().is_special_token(text)

    def decode(self, ids: Sequence[int]) -> str:
        """Text of token ids, special tokens left out."""
        return self._ready_tokenizer().decode(ids)

    def token_bytes(self, ids: Sequence[int]) -> list[tuple[bytes, bool]]:
        """Each token's bytes (a piece of a character when a character spans tokens) and whether it is a special
        token (whose text `decode` leaves out): what logprobs report of a token."""
        tokens = self._ready_tokenizer().grammar_tokenizer
        return [(bytes(tokens.decode_bytes([i])), bool(tokens.is_special_token(i))) for i in ids]

    @property
    def vocab_size(self) -> int:
        """Token ids of the tokenizer run from 0 to this, exclusive (0 until the model is loaded)."""
        return len(self.tokenizer.hf) if self.tokenizer is not None else 0

    def check_prompt(self, prompt_ids: Sequence[int]) -> None:
        """Raise InvalidRequest or ContextLengthExceeded unless `prompt_ids` leaves room for one generated token."""
        self._require_ready()
        if len(prompt_ids) == 0:
            raise InvalidRequest("the prompt is empty", param="messages")
        if len(prompt_ids) + 1 > self.context_length:
            raise ContextLengthExceeded(
                f"this model's maximum context length is {self.context_length} tokens, but the messages "
                f"use {len(prompt_ids)} tokens; shorten the conversation",
                prompt_tokens=len(prompt_ids),
                context_length=self.context_length,
            )

    def submit(
        self,
        prompt_ids: Sequence[int],
        params: SamplingParams,
        *,
        async_mode: bool = False,
        cache_scope: str | None = None,
    ) -> Completion:
        """Queue a completion of `prompt_ids`; raises QueueFull, EngineNotReady or ContextLengthExceeded.

        Its prompt reads, and leaves, prefix cache entries of `cache_scope` only (the server's per-key scopes).
        """
        self.check_prompt(prompt_ids)
        completion = Completion(
            prompt_ids,
            params,
            async_mode=async_mode,
            interval=self.stream_interval_ms / 1000,
            cache_scope=cache_scope,
        )
        try:
            self._queue.put_nowait(completion)
        except queue.Full:
            raise QueueFull(f"{self.max_queue} requests are already waiting for the model; retry shortly") from None
        return completion

    def score(
        self,
        pairs: Sequence[tuple[Sequence[int], Sequence[int]]],
        timeout: float | None = 300,
        *,
        cache_scope: str | None = None,
    ) -> list[float]:
        """log P(continuation | prefix) of each (prefix, continuation) pair of token ids, computed on the worker,
        reading and filling prefix cache entries of `cache_scope` only."""
        self._require_ready()
        if any(not prefix or not continuation for prefix, continuation in pairs):
            raise InvalidRequest("scoring needs a non-empty prefix and continuation")
        job = Scoring(pairs, scope=cache_scope)
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise QueueFull(f"{self.max_queue} requests are already waiting for the model; retry shortly") from None
        if not job.done.wait(timeout):
            raise EngineNotReady(f"scoring did not finish within {timeout} s")
        if job.error is not None:
            raise job.error
        return job.scores

    def _require_ready(self) -> None:
        if self.state == "ready":
            return
        if self.state == "failed" and self.error is not None:
            raise EngineNotReady(f"the model failed to load: {self.error}")
        raise EngineNotReady(f"model {self.model_id} is {self.state}; retry shortly")

    def _ready_tokenizer(self) -> Tokenizer:
        self._require_ready()
        assert self.tokenizer is not None
        return self.tokenizer

    # -- worker thread ----------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._load()
        except LocalLLMError as exc:
            self._fail_load(exc)
            return
        except Exception as exc:  # any library failure while loading becomes one clear error
            self._fail_load(ModelLoadError(f"could not load {self.model_id}: {exc}", model=self.model_id))
            log.debug("load failure", exc_info=True)
            return
        assert self._scheduler is not None
        self._scheduler.serve(self._queue)

    def _fail_load(self, exc: LocalLLMError) -> None:
        self.error = exc
        self.state = "failed"
        self._ready.set()
        log.error("%s", exc)

    def _load(self) -> None:
        def stage(name: str) -> None:
            self.load_stage = name

        loaded = load_model(self.source, quantize=self.quantize, threads=self.threads, stage=stage)
        self.model, self.loaded_from, self.quantized = loaded.model, loaded.loaded_from, loaded.quantized
        self.tokenizer = Tokenizer(loaded.tokenizer, loaded.grammar_tokenizer)
        kernels.load("masked_logits")  # our kernels built now (once a machine), not at a grammar's first token
        self.context_length = loaded.context_length
        self.weight_bytes = loaded.weight_bytes
        self._scheduler = Scheduler(
            loaded.model,
            self.tokenizer,
            eos_ids=loaded.eos_ids,
            context_length=loaded.context_length,
            prefix_cache=self.prefix_cache,
            max_batch=self.max_batch,
            hooks=self.hooks,
            work=self.work_seconds,
        )
        self.load_seconds = loaded.seconds
        self.load_stage = "done"
        self.state = "ready"
        self._ready.set()
        log.info("loaded %s (%s) in %.1f s", self.model_id, self.source.kind, self.load_seconds)
