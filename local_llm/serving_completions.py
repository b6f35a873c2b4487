"""The /v1/completions pipeline (OpenAI's legacy text completion), from a validated request to a JSON reply or a
stream of SSE events.

    completions = CompletionServing(engine, config, metrics)
    reply = await completions.create(body)   # a CompletionResponse, or the SSE lines of a stream when body.stream

Each prompt (text or token ids) is tokenised without a chat template and completed `n` times (`best_of` times,
the best `n` kept by their mean token logprob), every choice a sequence of the engine's batch. Text comes back as
generated, with the prompt before it under `echo` and the legacy `logprobs` object when asked (`logprobs`).
"""

from __future__ import annotations

import asyncio
import json
import math
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from autoqwen.local_llm.api_errors import APIError, api_error
from autoqwen.local_llm.completion import Completion, interleave
from autoqwen.local_llm.engine import Engine
from autoqwen.local_llm.errors import LocalLLMError
from autoqwen.local_llm.logprobs import LogprobReader, TokenText, token_string
from autoqwen.local_llm.metrics import ServerMetrics
from autoqwen.local_llm.protocol import PromptTokensDetails
from autoqwen.local_llm.protocol_completions import (
    MAX_CHOICES,
    CompletionChoice,
    CompletionLogprobs,
    CompletionRequest,
    CompletionResponse,
    CompletionUsage,
)
from autoqwen.local_llm.sampling import SamplingParams, choice_seed
from autoqwen.local_llm.server_config import ServerConfig

__all__ = ["DEFAULT_MAX_TOKENS", "CompletionServing"]

# OpenAI's (and vLLM's) cap for a completion that sets no max_tokens; the server's default_max_tokens if lower.
DEFAULT_MAX_TOKENS = 16
# A token is rarely longer than a few characters: a prompt with more characters than this many per token of the
# context window cannot fit, and is refused before tokenising it (as chat's messages are).
CHARS_PER_TOKEN_LIMIT = 32
# How often a non-streaming request checks that its client is still there.
DISCONNECT_POLL_S = 0.2


class CompletionServing:
    """Serves text completions from one Engine under one ServerConfig; one instance per app."""

    def __init__(self, engine: Engine, config: ServerConfig, metrics: ServerMetrics) -> None:
        self.engine, self.config, self.metrics = engine, config, metrics

    async def create(
        self,
        body: CompletionRequest,
        is_disconnected: Callable[[], Awaitable[bool]] | None = None,
        *,
        cache_scope: str | None = None,
    ) -> CompletionResponse | AsyncIterator[str]:
        """Complete every prompt of `body`: the whole reply, or (when `body.stream`) its SSE lines as they come.

        A non-streaming request whose client leaves is cancelled; a stream is cancelled when its response is
        closed. Prompts reuse prefix cache entries of `cache_scope` only (see ServerConfig.cache_scope).
        """
        _refuse_unsupported(body)
        prompts = await asyncio.to_thread(self._encode, body)  # a long prompt takes seconds to tokenise
        groups = self._submit(body, [ids for _, ids in prompts], cache_scope)
        echoes = [text if body.echo else "" for text, _ in prompts]
        prompt_tokens = sum(len(ids) for _, ids in prompts)
        if body.stream:
            return self._stream(body, groups, echoes, prompt_tokens)
        flat = [c for group in groups for c in group]
        try:
            texts = iter(zip(flat, await _collect(flat, is_disconnected), strict=True))
        finally:
            for completion in flat:
                completion.cancel()
        choices = []
        for i, group in enumerate(groups):
            done = [next(texts) for _ in group]
            for j, (completion, text) in enumerate(_best(done, body.n)):
                choices.append(self._choice(body, i * body.n + j, completion, text, echoes[i]))
        for completion in flat:
            _observe(self.metrics, completion)
        return CompletionResponse(model=body.model, choices=choices, usage=_usage(groups, prompt_tokens))

    def _encode(self, body: CompletionRequest) -> list[tuple[str, list[int]]]:
        """Each prompt's text (for `echo`) and token ids, checked against the vocabulary and the context window."""
        engine, out = self.engine, []
        if engine.context_length <= 0:
            engine.decode([])  # not loaded yet: raises EngineNotReady, a 503, before any check that needs the model
        prompts = body.prompts()
        if not prompts:
            raise _bad("prompt: give at least one prompt", "prompt")
        for prompt in prompts:
            if isinstance(prompt, str):
                if len(prompt) > CHARS_PER_TOKEN_LIMIT * max(engine.context_length, 1):
                    raise _too_long(len(prompt) // CHARS_PER_TOKEN_LIMIT, engine.context_length)
                ids = engine.encode(prompt)
                text = prompt
            else:
                ids = prompt
                if (bad := next((t for t in ids if t >= engine.vocab_size), None)) is not None:
                    raise _bad(
                        f"prompt: {bad} is not a token id of this model (its ids run from 0 to "
                        f"{engine.vocab_size - 1})",
                        "prompt",
                    )
                text = engine.decode(ids) if body.echo else ""
            if not ids:
                raise _bad("prompt: a prompt must hold at least one token", "prompt")
            if len(ids) + 1 > engine.context_length:
                raise _too_long(len(ids), engine.context_length)
            out.append((text, ids))
        per_prompt = body.best_of or body.n
        if len(out) * per_prompt > MAX_CHOICES:
            raise _bad(
                f"n: at most {MAX_CHOICES} completions per request (prompts times best_of or n), got "
                f"{len(out)} x {per_prompt}",
                "n",
            )
        return out

    def _submit(
        self, body: CompletionRequest, prompts: list[list[int]], cache_scope: str | None
    ) -> list[list[Completion]]:
        """Queue `best_of` (or `n`) completions of each prompt; none stays queued when one cannot be."""
        ranked = (body.best_of or body.n) > body.n
        logprobs = body.logprobs if body.logprobs is not None else (0 if ranked else None)
        groups: list[list[Completion]] = []
        try:
            for ids in prompts:
                group: list[Completion] = []
                groups.append(group)
                for j in range(body.best_of or body.n):
                    params = _sampling_params(body, self.config, self.engine.vocab_size, j, logprobs)
                    group.append(self.engine.submit(ids, params, async_mode=True, cache_scope=cache_scope))
        except BaseException:
            for group in groups:
                for completion in group:
                    completion.cancel()
            raise
        return groups

    def _choice(
        self, body: CompletionRequest, index: int, completion: Completion, text: str, echo: str
    ) -> CompletionChoice:
        logprobs = None
        if body.logprobs is not None:
            reader = LogprobReader(completion, self.engine.token_bytes)
            logprobs = legacy_logprobs([*reader.feed(text), *reader.feed("")], len(echo))
        return CompletionChoice(
            index=index, text=echo + text, logprobs=logprobs, finish_reason=completion.finish_reason or "stop"
        )

    async def _stream(
        self, body: CompletionRequest, groups: list[list[Completion]], echoes: list[str], prompt_tokens: int
    ) -> AsyncIterator[str]:
        """Server-sent events of every choice (`n` per prompt, in order) as its text comes, choices interleaved
        and each event naming its index, ending with `data: [DONE]`."""
        base = CompletionResponse(
            id=f"cmpl-{secrets.token_hex(16)}", created=int(time.time()), model=body.model, choices=[]
        )
        completions = [c for group in groups for c in group]  # best_of is n when streaming
        readers = [LogprobReader(c, self.engine.token_bytes) for c in completions]

        def event(choices: list[CompletionChoice], usage: CompletionUsage | None = None) -> str:
            chunk = base.model_copy(update={"choices": choices, "usage": usage})
            return f"data: {chunk.model_dump_json()}\n\n"

        def logprobs(index: int, piece: str) -> CompletionLogprobs | None:
            if body.logprobs is None:
                return None
            return legacy_logprobs(readers[index].feed(piece), len(echoes[index // body.n]))

        try:
            for index in range(len(completions)):
                if echo := echoes[index // body.n]:
                    yield event([CompletionChoice(index=index, text=echo)])
            async for index, piece in interleave(completions):
                if piece is None:
                    finish = completions[index].finish_reason or "stop"
                    choice = CompletionChoice(index=index, text="", logprobs=logprobs(index, ""), finish_reason=finish)
                elif piece:
                    choice = CompletionChoice(index=index, text=piece, logprobs=logprobs(index, piece))
                else:
                    continue
                yield event([choice])
            if body.stream_options and body.stream_options.include_usage:
                yield event([], _usage(groups, prompt_tokens))
            for completion in completions:
                _observe(self.metrics, completion)
            yield "data: [DONE]\n\n"
        except LocalLLMError as exc:
            # Headers are sent already: the error goes out as one more event, in the body a client would parse.
            yield f"data: {json.dumps(api_error(exc).body().model_dump())}\n\n"
        finally:
            for completion in completions:
                completion.cancel()


def legacy_logprobs(tokens: Sequence[TokenText], offset: int = 0) -> CompletionLogprobs:
    """Tokens in the legacy completions shape; `offset`: characters before the generated text (an echoed prompt).
    Each position's alternatives include the chosen token, as OpenAI's do."""
    out = CompletionLogprobs()
    for t in tokens:
        token = token_string(t.data)
        top = {token_string(data): logprob for data, logprob in t.top}
        top.setdefault(token, t.entry.logprob)
        out.tokens.append(token)
        out.token_logprobs.append(t.entry.logprob)
        out.top_logprobs.append(top)
        out.text_offset.append(offset + t.offset)
    return out


def _refuse_unsupported(body: CompletionRequest) -> None:
    if body.suffix:
        raise _bad("suffix: inserting text before a suffix is not supported by this server", "suffix")
    if body.echo and body.logprobs is not None:
        raise _bad(
            "logprobs: with echo, logprobs would cover the prompt's tokens, which this server does not compute; "
            "ask for echo or logprobs",
            "logprobs",
        )
    if body.stream and body.best_of is not None and body.best_of > body.n:
        raise _bad("best_of: cannot be larger than n when streaming", "best_of")


def _bad(message: str, param: str) -> APIError:
    return APIError(400, message, type="invalid_request_error", param=param)


def _too_long(tokens: int, context_length: int) -> APIError:
    return APIError(
        400,
        f"this model's maximum context length is {context_length} tokens, but the prompt holds about {tokens} "
        "tokens; shorten it",
        type="invalid_request_error",
        param="prompt",
        code="context_length_exceeded",
    )


def _sampling_params(
    body: CompletionRequest, config: ServerConfig, vocab_size: int, choice: int, logprobs: int | None
) -> SamplingParams:
    bias: dict[int, float] = {}
    for key, value in (body.logit_bias or {}).items():  # keys are digit strings (protocol checks)
        if int(key) >= vocab_size:
            raise _bad(
                f"logit_bias: {key} is not a token id of this model (its ids run from 0 to {vocab_size - 1})",
                "logit_bias",
            )
        bias[int(key)] = value
    return SamplingParams(
        max_tokens=body.max_tokens or min(DEFAULT_MAX_TOKENS, config.default_max_tokens),
        temperature=config.default_temperature if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        seed=choice_seed(body.seed, choice),
        stop=tuple(body.stop_list()),
        presence_penalty=body.presence_penalty,
        frequency_penalty=body.frequency_penalty,
        logit_bias=bias,
        ignore_eos=body.ignore_eos,
        logprobs=logprobs,
    )


async def _collect(completions: list[Completion], is_disconnected: Callable[[], Awaitable[bool]] | None) -> list[str]:
    """The whole text of each completion; cancelled (APIError 499) as soon as `is_disconnected` says the client
    left, and failed with the first completion that fails."""

    async def join(completion: Completion) -> str:
        return "".join([piece async for piece in completion])

    tasks = [asyncio.ensure_future(join(c)) for c in completions]
    try:
        while True:
            done, pending = await asyncio.wait(tasks, timeout=DISCONNECT_POLL_S, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()  # raises a completion's error
            if not pending:
                return [task.result() for task in tasks]
            if is_disconnected is not None and await is_disconnected():
                raise APIError(499, "the client closed the request", type="invalid_request_error")
    finally:
        for task in tasks:
            task.cancel()


def _best(done: list[tuple[Completion, str]], n: int) -> list[tuple[Completion, str]]:
    """The `n` completions of one prompt with the highest mean token logprob (all of them when there are `n`)."""
    if len(done) <= n:
        return done

    def mean(pair: tuple[Completion, str]) -> float:
        entries = pair[0].logprobs
        return sum(e.logprob for e in entries) / len(entries) if entries else -math.inf

    return sorted(done, key=mean, reverse=True)[:n]


def _usage(groups: list[list[Completion]], prompt_tokens: int) -> CompletionUsage:
    """Usage of a request: each prompt counted once (its cached tokens those of its first completion), every
    completion made (`best_of` ones too)."""
    generated = sum(c.completion_tokens for group in groups for c in group)
    cached = sum(group[0].cached_tokens for group in groups if group)
    return CompletionUsage(
        prompt_tokens=prompt_tokens,
        completion_tokens=generated,
        total_tokens=prompt_tokens + generated,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=cached),
    )


def _observe(metrics: ServerMetrics, completion: Completion) -> None:
    metrics.prompt_tokens.inc(completion.prompt_tokens)
    metrics.cached_tokens.inc(completion.cached_tokens)
    metrics.completion_tokens.inc(completion.completion_tokens)
    if completion.finished_at is not None:
        metrics.latency.observe(completion.finished_at - completion.submitted_at)
    if completion.first_token_at is not None:
        metrics.ttft.observe(completion.first_token_at - completion.submitted_at)
