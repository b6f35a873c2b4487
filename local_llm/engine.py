"""The generation engine: owns one model on one worker thread and serves queued completion requests.

    engine = Engine(resolve_model("bundled"))
    engine.start()                      # loads on the worker thread; engine.state says "loading" → "ready"
    engine.wait_ready()
    ids = engine.encode_chat([{"role": "user", "content": "Hi"}])
    completion = engine.submit(ids, SamplingParams(max_tokens=32, seed=1))
    print("".join(completion))          # or `async for piece in completion` inside an event loop

torch and transformers are imported lazily, on the worker thread, so importing this module is cheap.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import math
import queue
import threading
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from autoqwen.local_llm import cache
from autoqwen.local_llm.errors import (
    ContextLengthExceeded,
    EngineNotReady,
    InvalidRequest,
    LocalLLMError,
    ModelLoadError,
    QueueFull,
)
from autoqwen.local_llm.llama import Lean
from autoqwen.local_llm.prefix_cache import KV, PrefixCache
from autoqwen.local_llm.resolve import ModelSource

if TYPE_CHECKING:
    from autoqwen.local_llm.decoding import Decoding

__all__ = ["Completion", "Engine", "SamplingParams", "Scoring"]

log = logging.getLogger(__name__)

EngineState = Literal["created", "loading", "ready", "failed", "closed"]
# Weights in memory: "int4" = 4-bit linear layers + bfloat16 activations (fast on CPU); "none" = float32 as loaded;
# "auto" = int4 when the model comes from a GGUF file that is 4-bit already (no precision lost to speak of).
Quantize = Literal["auto", "int4", "none"]

_RATE_WINDOW_S = 10.0

# Used when a tokenizer ships no chat template: ChatML, the format Qwen and SmolLM2 were tuned on.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass(frozen=True)
class SamplingParams:
    """How to sample one completion; temperature 0 means greedy.

    SamplingParams(max_tokens=64, temperature=0.7, top_p=0.9, seed=42, stop=("\\n\\n",))
    """

    max_tokens: int | None = None
    temperature: float = 0.7
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: Mapping[int, float] = field(default_factory=dict)
    ignore_eos: bool = False
    grammar: str | None = None  # llguidance (Lark) grammar the output must follow; see local_llm.grammars


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

    After iteration ends, `finish_reason` is "stop" or "length" and the token counts are final.
    """

    def __init__(
        self, prompt_ids: Sequence[int], params: SamplingParams, *, async_mode: bool, interval: float = 0.0
    ) -> None:
        self.prompt_ids = list(prompt_ids)
        self.params = params
        self.prompt_tokens = len(self.prompt_ids)
        self.completion_tokens = 0
        self.cached_tokens = 0  # prompt tokens whose KV states came from the prefix cache
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

    # Called on the worker thread.
    def _push(self, item: object) -> None:
        if self._outbox is not None and self._aqueue is not None:
            try:
                self._outbox.put(self._aqueue, item)
            except RuntimeError:  # the client's event loop is gone: nobody is listening any more
                self.cancel()
        else:
            self._queue.put(item)

    def _emit(self, piece: str) -> None:
        now = time.perf_counter()
        if self.first_token_at is None:
            self.first_token_at = now
        self._held.append(piece)
        self._send_due(now)

    def _send_due(self, now: float) -> None:
        """Deliver the held text if the interval since the last delivery is over."""
        if self._held and now - self._sent_at >= self._interval:
            self._send_held(now)

    def _send_held(self, now: float | None = None) -> None:
        """Deliver the text held back since the last delivery, as one piece."""
        if self._held:
            self._push("".join(self._held))
            self._held.clear()
            self._sent_at = time.perf_counter() if now is None else now

    def _finish(self, reason: Literal["stop", "length"], completion_tokens: int) -> None:
        self.finish_reason = reason
        self.completion_tokens = completion_tokens
        self.finished_at = time.perf_counter()
        self._send_held()
        self._push(_DONE)

    def _fail(self, error: BaseException) -> None:
        self.finished_at = time.perf_counter()
        self._send_held()
        self._push(error)
        self._push(_DONE)


class Scoring:
    """A request for log-probabilities: for each (prefix, continuation) pair, log P(continuation | prefix)."""

    def __init__(self, pairs: Sequence[tuple[Sequence[int], Sequence[int]]]) -> None:
        self.pairs = [(list(a), list(b)) for a, b in pairs]
        self.scores: list[float] = []
        self.error: BaseException | None = None
        self.done = threading.Event()


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
        max_queue: int = 16,
        max_batch: int = 4,
        prefix_cache_mb: int = 1024,
        quantize: Quantize = "auto",
        threads: int | None = None,
        stream_interval_ms: int = 20,
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
        self.state: EngineState = "created"
        self.load_stage = "waiting"
        self.load_seconds: float | None = None
        self.loaded_from: Path | None = None
        self.error: LocalLLMError | None = None
        self.context_length = 0
        self._queue: queue.Queue[Completion | Scoring | None] = queue.Queue(maxsize=max_queue)
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._tokenizer: Any = None
        self._model: Any = None
        self._eos_ids: frozenset[int] = frozenset()
        self._grammar_tokenizer: Any = None
        self._active: list[Decoding] = []  # the worker's batch, in admission order
        self._recent: deque[tuple[float, int]] = deque()  # (time, tokens) of recent decode steps

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
                job._fail(EngineNotReady("the server is shutting down"))
        self._queue.put(None)
        self._thread.join(timeout=30)

    @property
    def queue_depth(self) -> int:
        """Requests waiting for the model (not counting those being generated)."""
        return self._queue.qsize()

    # -- requests ---------------------------------------------------------------------------------
    def encode_chat(self, messages: Sequence[Mapping[str, str]]) -> list[int]:
        """Render messages with the model's own chat template (plus the assistant prompt) into token ids."""
        self._require_ready()
        from jinja2 import TemplateError

        try:
            text = self._tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
        except TemplateError as exc:
            raise InvalidRequest(f"the model's chat template rejected the messages: {exc}", param="messages") from exc
        return list(self._tokenizer.encode(text, add_special_tokens=False))

    def encode(self, text: str) -> list[int]:
        """Token ids of plain text (no special tokens)."""
        self._require_ready()
        return list(self._tokenizer.encode(text, add_special_tokens=False))

    def encode_after(self, before: str, text: str) -> list[int] | None:
        """Token ids of `text` where it follows `before`, or None when a token straddles the two."""
        self._require_ready()
        head, ids = self.encode(before), self.encode(before + text)
        if ids[: len(head)] != head or self.decode(ids[len(head) :]) != text:
            return None
        return ids[len(head) :]

    def check_grammar(self, grammar: str) -> str | None:
        """Why `grammar` cannot constrain this model's output (an llguidance error message), or None if it can."""
        self._require_ready()
        from llguidance import LLMatcher

        error: str = LLMatcher.validate_grammar(grammar, self._grammar_tokenizer)
        return error or None

    def is_special_token(self, text: str) -> bool:
        """Whether `text` is one special token of this tokenizer (e.g. Qwen2.5's `<tool_call>`)."""
        self._require_ready()
        return text in self._tokenizer.all_special_tokens or text in getattr(
            self._tokenizer, "added_tokens_encoder", {}
        )

    def decode(self, ids: Sequence[int]) -> str:
        """Text of token ids, special tokens left out."""
        self._require_ready()
        return str(self._tokenizer.decode(list(ids), skip_special_tokens=True))

    def submit(self, prompt_ids: Sequence[int], params: SamplingParams, *, async_mode: bool = False) -> Completion:
        """Queue a completion of `prompt_ids`; raises QueueFull, EngineNotReady or ContextLengthExceeded."""
        self._require_ready()
        if len(prompt_ids) == 0:
            raise InvalidRequest("the prompt is empty", param="messages")
        needed = len(prompt_ids) + 1
        if needed > self.context_length:
            raise ContextLengthExceeded(
                f"this model's maximum context length is {self.context_length} tokens, but the messages "
                f"use {len(prompt_ids)} tokens; shorten the conversation",
                prompt_tokens=len(prompt_ids),
                context_length=self.context_length,
            )
        completion = Completion(prompt_ids, params, async_mode=async_mode, interval=self.stream_interval_ms / 1000)
        try:
            self._queue.put_nowait(completion)
        except queue.Full:
            raise QueueFull(f"{self.max_queue} requests are already waiting for the model; retry shortly") from None
        return completion

    def score(self, pairs: Sequence[tuple[Sequence[int], Sequence[int]]], timeout: float | None = 300) -> list[float]:
        """log P(continuation | prefix) of each (prefix, continuation) pair of token ids, computed on the worker."""
        self._require_ready()
        if any(not prefix or not continuation for prefix, continuation in pairs):
            raise InvalidRequest("scoring needs a non-empty prefix and continuation")
        job = Scoring(pairs)
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
        self._serve()

    def _fail_load(self, exc: LocalLLMError) -> None:
        self.error = exc
        self.state = "failed"
        self._ready.set()
        log.error("%s", exc)

    def _load(self) -> None:
        started = time.perf_counter()
        import torch
        import transformers

        transformers.utils.logging.disable_progress_bar()
        if self.threads:
            torch.set_num_threads(self.threads)
        src = self.source
        path, kwargs, convert_to, cached = src.path, {}, None, None
        if src.gguf_file:
            cached = cache.converted_folder(src)
            if cache.is_complete(cached):
                path = cached
            else:
                kwargs, convert_to = {"gguf_file": src.gguf_file}, cached
        self.load_stage = "tokenizer"
        # Our own converted folder holds a tokenizer.json: the fast class loads it ~8x quicker than AutoTokenizer.
        tokenizer_class = transformers.PreTrainedTokenizerFast if path != src.path else transformers.AutoTokenizer
        tokenizer = tokenizer_class.from_pretrained(path, **kwargs)
        if not tokenizer.chat_template:
            tokenizer.chat_template = CHATML_TEMPLATE
        self.load_stage = "weights"
        model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **kwargs)
        model.eval()
        if convert_to is not None:
            self.load_stage = "caching"
            cache.save_converted(convert_to, model, tokenizer)
        if self._should_quantize(cached):
            self.load_stage = "quantizing"
            from autoqwen.local_llm.quantize import quantize

            quantize(model)
            self.quantized = True
        # Loaded weights live in the file's memory map, which keeps every page read resident beside our quantised
        # and fused copies: own copies let it go (~500 MB for the bundled model).
        for param in model.parameters():
            param.data = param.data.clone()
        Lean.of(model)  # the lean forward's fused weights, built now rather than on the first request
        _release_freed_memory()
        self._tokenizer, self._model, self.loaded_from = tokenizer, model, path
        self._eos_ids = frozenset(_eos_ids(tokenizer, model))
        self.load_stage = "grammar"
        import llguidance.hf

        self._grammar_tokenizer = llguidance.hf.from_tokenizer(tokenizer, n_vocab=model.config.vocab_size)
        self.context_length = int(getattr(model.config, "max_position_embeddings", 0) or 2048)
        self.load_seconds = time.perf_counter() - started
        self.load_stage = "done"
        self.state = "ready"
        self._ready.set()
        log.info("loaded %s (%s) in %.1f s", self.model_id, src.kind, self.load_seconds)

    def _should_quantize(self, converted: Path | None) -> bool:
        if self.quantize != "auto":
            return self.quantize == "int4"
        return converted is not None and cache.gguf_is_4bit(self.source, converted)

    def _matcher(self, grammar: str) -> Any:
        from llguidance import LLMatcher

        matcher = LLMatcher(self._grammar_tokenizer, grammar)
        if matcher.is_error():
            raise InvalidRequest(f"invalid grammar: {matcher.get_error()}")
        return matcher

    def _serve(self) -> None:
        """Admit queued jobs into the batch (up to max_batch, in arrival order) and step it until all are done."""
        import torch

        from autoqwen.local_llm.batch import Batch

        batch, active = Batch(self._model), self._active
        with torch.inference_mode():
            while True:
                while len(active) < self.max_batch:
                    try:
                        job = self._queue.get(block=not active)
                    except queue.Empty:
                        break
                    if job is None:
                        for seq in active:
                            seq.job._fail(EngineNotReady("the server is shutting down"))
                        return
                    if isinstance(job, Scoring):
                        self._send_held_text()  # the running streams wait for the scoring
                        self._score(job)
                        continue
                    self._admit(job, batch)
                self._retire({row: None for row, seq in enumerate(active) if seq.job.cancelled}, batch)
                if not active:
                    continue
                try:
                    logits = batch.step([seq.pending for seq in active])
                except Exception as exc:  # a failed forward pass leaves the batch unusable: fail its jobs
                    log.exception("decode step failed")
                    for seq in active:
                        seq.job._fail(LocalLLMError(f"generation failed: {exc}"))
                    active.clear()
                    batch = Batch(self._model)
                    continue
                self._count(len(active))
                # All rows' argmax at once (rows that sample ignore theirs), by numpy's: ~6x faster than torch's.
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
                            seq.job._send_due(now)
                self._retire(ended, batch)

    def _admit(self, job: Completion, batch: Any) -> None:
        """Add a job to the batch. A prompt whose KV states are all cached but for its last token (a repeated prompt)
        feeds that token in the batch's next step with the other rows; any other is read now, in a forward pass of
        its own (reusing the longest cached prefix), whose last logits give the first token at once."""
        import torch

        from autoqwen.local_llm.batch import forward, new_cache
        from autoqwen.local_llm.decoding import Decoding

        if job.cancelled:
            job._finish("stop", 0)
            return
        try:
            self._on_prefill(job)
            p = job.params
            limit = self.context_length - job.prompt_tokens
            if p.max_tokens is not None:
                limit = min(limit, p.max_tokens)
            matcher = self._matcher(p.grammar) if p.grammar else None
            seq = Decoding(job, self.decode, eos_ids=self._eos_ids, limit=limit, matcher=matcher)
            tokens = [*job.prompt_ids, *seq.start()]
            if seq.done:
                seq.finish()
                return
            cached, kv = self.prefix_cache.lookup(tokens)
            job.cached_tokens = min(cached, job.prompt_tokens)
            seq.fed, seq.pending = tokens[:-1], tokens[-1:]
            if cached < len(tokens) - 1:
                self._send_held_text()  # the running streams wait for this prefill
                cache = new_cache(self._model, kv, reserve=64)
                seq.advance(forward(self._model, torch.tensor([tokens[cached:]]), cache)[0])
                kv = _kv(cache)
        except LocalLLMError as exc:
            job._fail(exc)
            return
        except Exception as exc:
            log.exception("prefill failed")
            job._fail(LocalLLMError(f"generation failed: {exc}"))
            return
        if seq.done:
            assert kv is not None
            self.prefix_cache.put(seq.fed, [(k.contiguous(), v.contiguous()) for k, v in kv])
            seq.finish()
            return
        batch.add(kv)  # copies
        self._active.append(seq)

    def _score(self, job: Scoring) -> None:
        import torch

        from autoqwen.local_llm.batch import all_logits, new_cache

        try:
            for prefix, continuation in job.pairs:
                # Requests offering the same tools score the same prefixes: their KV states come from the cache.
                cached, kv = self.prefix_cache.lookup(prefix)
                cache = new_cache(self._model, kv)
                tokens = [*prefix, *continuation]
                logprobs = torch.log_softmax(all_logits(self._model, torch.tensor([tokens[cached:]]), cache)[0], -1)
                start = len(prefix) - 1 - cached  # the position whose logits predict the continuation's first token
                targets = torch.tensor(continuation)[:, None]
                job.scores.append(float(logprobs[start : start + len(continuation)].gather(1, targets).sum()))
                n = len(prefix)
                self.prefix_cache.put(
                    prefix, [(k[:, :, :n].contiguous(), v[:, :, :n].contiguous()) for k, v in _kv(cache)]
                )
        except Exception as exc:
            job.error = LocalLLMError(f"scoring failed: {exc}")
        job.done.set()

    def _send_held_text(self) -> None:
        """Deliver the text the running streams hold, before work that makes them wait (a prefill, scoring)."""
        for seq in self._active:
            seq.job._send_held()

    def _on_prefill(self, job: Completion) -> None:
        """Called on the worker as a job's prefill begins (tests replace it to hold the worker)."""

    def _retire(self, ended: dict[int, LocalLLMError | None], batch: Any) -> None:
        """Take the rows in `ended` out of the batch, all at once: finished ones (None) leave their KV states to
        the prefix cache and end their completions; the others fail with their error."""
        if not ended:
            return
        rows = sorted(ended)
        for row, kv in zip(rows, batch.remove(rows), strict=True):
            seq, error = self._active[row], ended[row]
            if error is None:
                self.prefix_cache.put(seq.fed, kv)
                seq.finish()
            else:
                seq.job._fail(error)
        self._active[:] = [seq for row, seq in enumerate(self._active) if row not in ended]

    def _count(self, tokens: int) -> None:
        now = time.perf_counter()
        self._recent.append((now, tokens))
        while self._recent and now - self._recent[0][0] > _RATE_WINDOW_S:
            self._recent.popleft()

    @property
    def tokens_per_second(self) -> float:
        """Tokens generated per second over the last few seconds, all sequences together."""
        recent = list(self._recent)
        if len(recent) < 2:
            return 0.0
        span = max(time.perf_counter() - recent[0][0], 1e-6)
        return sum(n for _, n in recent[1:]) / span

    @property
    def batch_size(self) -> int:
        """Sequences decoding now."""
        return len(self._active)


def _kv(cache: Any) -> KV:
    return [(layer.keys, layer.values) for layer in cache.layers]


def _release_freed_memory() -> None:
    """Hand the memory freed while loading (float32 weights, unfused copies) back to the OS; glibc keeps it."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _eos_ids(tokenizer: Any, model: Any) -> set[int]:
    ids: set[int] = set()
    for value in (model.generation_config.eos_token_id, tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list):
            ids.update(v for v in value if isinstance(v, int))
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(im_end, int) and im_end != tokenizer.unk_token_id:
        ids.add(im_end)
    return ids
