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
import logging
import queue
import secrets
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from local_llm import cache
from local_llm.errors import (
    ContextLengthExceeded,
    EngineNotReady,
    InvalidRequest,
    LocalLLMError,
    ModelLoadError,
    QueueFull,
)
from local_llm.resolve import ModelSource
from local_llm.textstream import TextStream

if TYPE_CHECKING:
    import torch

__all__ = ["Completion", "Engine", "SamplingParams"]

log = logging.getLogger(__name__)

EngineState = Literal["created", "loading", "ready", "failed", "closed"]

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
    grammar: str | None = None  # llguidance (Lark) grammar the output must follow; see local_llm.tools


_DONE = object()


class Completion:
    """Handle on one queued generation: iterate it (sync or async) for text pieces, or cancel it.

    After iteration ends, `finish_reason` is "stop" or "length" and the token counts are final.
    """

    def __init__(self, prompt_ids: Sequence[int], params: SamplingParams, *, async_mode: bool) -> None:
        self.prompt_ids = list(prompt_ids)
        self.params = params
        self.prompt_tokens = len(self.prompt_ids)
        self.completion_tokens = 0
        self.finish_reason: Literal["stop", "length"] | None = None
        self.submitted_at = time.perf_counter()
        self.first_token_at: float | None = None
        self.finished_at: float | None = None
        self._cancelled = threading.Event()
        self._loop = asyncio.get_running_loop() if async_mode else None
        self._aqueue: asyncio.Queue[Any] | None = asyncio.Queue() if async_mode else None
        self._queue: queue.Queue[Any] = queue.Queue()

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
        if self._loop is not None and self._aqueue is not None:
            try:
                self._loop.call_soon_threadsafe(self._aqueue.put_nowait, item)
            except RuntimeError:  # the client's event loop is gone: nobody is listening any more
                self.cancel()
        else:
            self._queue.put(item)

    def _emit(self, piece: str) -> None:
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()
        self._push(piece)

    def _finish(self, reason: Literal["stop", "length"], completion_tokens: int) -> None:
        self.finish_reason = reason
        self.completion_tokens = completion_tokens
        self.finished_at = time.perf_counter()
        self._push(_DONE)

    def _fail(self, error: BaseException) -> None:
        self.finished_at = time.perf_counter()
        self._push(error)
        self._push(_DONE)


class Engine:
    """One model on one worker thread, fed by a bounded queue of completions."""

    def __init__(self, source: ModelSource, *, max_queue: int = 16, threads: int | None = None) -> None:
        self.source = source
        self.model_id = source.model_id
        self.max_queue = max_queue
        self.threads = threads
        self.state: EngineState = "created"
        self.load_stage = "waiting"
        self.load_seconds: float | None = None
        self.loaded_from: Path | None = None
        self.error: LocalLLMError | None = None
        self.context_length = 0
        self._queue: queue.Queue[Completion | None] = queue.Queue(maxsize=max_queue)
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._tokenizer: Any = None
        self._model: Any = None
        self._eos_ids: frozenset[int] = frozenset()
        self._grammar_tokenizer: Any = None

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
            if job is not None:
                job._fail(EngineNotReady("the server is shutting down"))
        self._queue.put(None)
        self._thread.join(timeout=30)

    @property
    def queue_depth(self) -> int:
        """Requests waiting for the model (not counting the one being generated)."""
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
        completion = Completion(prompt_ids, params, async_mode=async_mode)
        try:
            self._queue.put_nowait(completion)
        except queue.Full:
            raise QueueFull(f"{self.max_queue} requests are already waiting for the model; retry shortly") from None
        return completion

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
        while (job := self._queue.get()) is not None:
            if job.cancelled:
                job._finish("stop", 0)
                continue
            try:
                self._generate(job)
            except Exception as exc:
                log.exception("generation failed")
                job._fail(LocalLLMError(f"generation failed: {exc}"))

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
        path, kwargs, convert_to = src.path, {}, None
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

    def _matcher(self, grammar: str) -> Any:
        from llguidance import LLMatcher

        matcher = LLMatcher(self._grammar_tokenizer, grammar)
        if matcher.is_error():
            raise InvalidRequest(f"invalid grammar: {matcher.get_error()}")
        return matcher

    def _generate(self, job: Completion) -> None:
        import torch
        from transformers import DynamicCache

        p = job.params
        limit = self.context_length - job.prompt_tokens
        if p.max_tokens is not None:
            limit = min(limit, p.max_tokens)
        eos = frozenset() if p.ignore_eos else self._eos_ids
        generator = torch.Generator().manual_seed(p.seed if p.seed is not None else secrets.randbits(63))
        matcher = self._matcher(p.grammar) if p.grammar else None
        stream = TextStream(self.decode, p.stop)
        generated: list[int] = []

        def take(tokens: list[int]) -> bool:
            """Add tokens to the output; True once a stop string shows up."""
            for token in tokens:
                generated.append(token)
                piece, stopped = stream.push(token)
                if piece:
                    job._emit(piece)
                if stopped:
                    return True
            return False

        # Tokens the grammar forces are appended without sampling, in the tokenizer's canonical split ("fast
        # forward"): the model then reads `{"` `name` `":` as it always has, not a spelling it never saw.
        forced = _forced(matcher, limit)
        stopped = take(forced)
        eos_seen = False
        with torch.inference_mode():
            cache = DynamicCache(config=self._model.config)
            inputs = torch.tensor([[*job.prompt_ids, *forced]])
            while not stopped and len(generated) < limit and not job.cancelled:
                if matcher is not None and matcher.is_stopped():
                    break
                out = self._model(input_ids=inputs, cache=cache, use_cache=True, logits_to_keep=1)
                logits = out.logits[0, -1]
                if matcher is not None:
                    logits = _mask(logits, matcher)
                token = _sample(logits, generated, p, generator)
                if matcher is not None and not matcher.consume_token(token):
                    raise LocalLLMError(f"the grammar rejected token {token}: {matcher.get_error()}")
                if token in eos:
                    eos_seen = True
                    break
                new = [token, *_forced(matcher, limit - len(generated) - 1)]
                stopped = take(new)
                inputs = torch.tensor([new])
        grammar_done = matcher is not None and matcher.is_stopped()
        reason: Literal["stop", "length"] = "stop" if stopped or eos_seen or grammar_done else "length"
        if tail := stream.flush():
            job._emit(tail)
        job._finish(reason, len(generated))


def _forced(matcher: Any, room: int) -> list[int]:
    """The tokens the grammar allows as the only way on (at most `room`), already consumed by the matcher."""
    if matcher is None or room <= 0 or matcher.is_stopped():
        return []
    tokens: list[int] = list(matcher.compute_ff_tokens())[:room]
    if tokens and not matcher.consume_tokens(tokens):
        raise LocalLLMError(f"the grammar rejected its own forced tokens: {matcher.get_error()}")
    return tokens


def _mask(logits: torch.Tensor, matcher: Any) -> torch.Tensor:
    """Logits with every token the grammar forbids next set to -inf."""
    import numpy as np
    import torch

    bits = np.unpackbits(np.frombuffer(matcher.compute_bitmask(), dtype=np.uint8), bitorder="little")
    allowed = torch.from_numpy(bits[: logits.shape[0]].astype(bool))
    if allowed.shape[0] < logits.shape[0]:
        allowed = torch.cat([allowed, torch.zeros(logits.shape[0] - allowed.shape[0], dtype=torch.bool)])
    return logits.masked_fill(~allowed, float("-inf"))


def _sample(logits: torch.Tensor, generated: list[int], p: SamplingParams, generator: torch.Generator) -> int:
    """Pick the next token: logit bias, presence/frequency penalties, temperature, then nucleus (top_p)."""
    import torch

    if p.logit_bias or ((p.presence_penalty or p.frequency_penalty) and generated):
        logits = logits.clone()
        for token, bias in p.logit_bias.items():
            if 0 <= token < logits.shape[0]:
                logits[token] += bias
        if generated:
            counts = torch.bincount(torch.tensor(generated), minlength=logits.shape[0])[: logits.shape[0]]
            logits -= p.frequency_penalty * counts + p.presence_penalty * (counts > 0)
    if p.temperature == 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits.float() / p.temperature, dim=-1)
    if p.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        outside = torch.cumsum(sorted_probs, dim=-1) - sorted_probs > p.top_p
        sorted_probs[outside] = 0.0
        return int(order[torch.multinomial(sorted_probs, 1, generator=generator)])
    return int(torch.multinomial(probs, 1, generator=generator))


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
