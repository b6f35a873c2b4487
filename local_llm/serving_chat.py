"""The /v1/chat/completions pipeline, from a validated request to a JSON reply or a stream of SSE events.

    chat = ChatServing(engine, config, metrics)
    reply = await chat.create(body)   # a ChatCompletion, or the SSE lines of a stream when body.stream

A request goes through its steps here, in order: the model name; the tool-choice policies (`tool_choice`); the
prompt (`chat_template`); the output grammar (`grammars`, after any thinking: `reasoning`), checked by the engine;
sampling parameters; the engine; and the reply, split into reasoning, content and tool calls (`tool_parse`), with
usage and metrics. The route only wraps a stream in an HTTP response.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

from autoqwen.local_llm.api_errors import APIError, api_error
from autoqwen.local_llm.argument_schema import conversation_values, times_written
from autoqwen.local_llm.chat_template import ChatPrompt
from autoqwen.local_llm.completion import Completion, interleave
from autoqwen.local_llm.engine import Engine
from autoqwen.local_llm.errors import ContextLengthExceeded, InvalidRequest, LocalLLMError
from autoqwen.local_llm.grammars import NAME_PREFIX, answer_grammar, answer_stops, json_grammar, max_calls, tool_grammar
from autoqwen.local_llm.listed_calls import listed_calls
from autoqwen.local_llm.logprobs import LogprobReader, chat_logprobs
from autoqwen.local_llm.metrics import ServerMetrics
from autoqwen.local_llm.protocol import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChunkChoice,
    Delta,
    FinishReason,
    PromptTokensDetails,
    ResponseMessage,
    TextPart,
    ToolCall,
    Usage,
)
from autoqwen.local_llm.protocol_logprobs import ChoiceLogprobs
from autoqwen.local_llm.reasoning import (
    THINK_CLOSE,
    THINK_OPEN,
    Reasoning,
    ReasoningStream,
    ThinkStart,
    think_first,
    thinking_start,
)
from autoqwen.local_llm.sampling import SamplingParams, choice_seed
from autoqwen.local_llm.server_config import ServerConfig
from autoqwen.local_llm.tool_choice import (
    channel_pairs,
    check_tools,
    choose,
    offered_tools,
    resolve_auto,
)
from autoqwen.local_llm.tool_parse import ReplyStream, ToolCallStream, split_reply
from autoqwen.local_llm.tool_prompt import TOOL_CLOSE, TOOL_OPEN

__all__ = ["ChatServing"]


class ChatServing:
    """Serves chat completions from one Engine under one ServerConfig; one instance per app."""

    def __init__(self, engine: Engine, config: ServerConfig, metrics: ServerMetrics) -> None:
        self.engine, self.config, self.metrics = engine, config, metrics

    async def create(
        self,
        body: ChatCompletionRequest,
        is_disconnected: Callable[[], Awaitable[bool]] | None = None,
        *,
        cache_scope: str | None = None,
    ) -> ChatCompletion | AsyncIterator[str]:
        """Complete one chat request: the whole reply, or (when `body.stream`) its SSE lines as they come.

        A non-streaming request whose client leaves (`is_disconnected`, polled while it waits) is cancelled, so its
        batch slot goes to the next request; a stream is cancelled when its response is closed. The prompt reuses
        prefix cache entries of `cache_scope` only (see `ServerConfig.cache_scope`).
        """
        _check_characters(body, self.engine.context_length)
        check_tools(body)
        forced = resolve_auto(body, self.config.auto_tool_choice)
        may_answer, body = forced.tool_choice != body.tool_choice, forced  # a call the client did not require
        # The prompt lists every tool whichever one is chosen below, so it is measured before the (costlier) choice.
        prompt = await asyncio.to_thread(self.engine.encode_chat, ChatPrompt.of(body))  # a long prompt takes seconds
        self.engine.check_prompt(prompt)
        thinking = _thinking(self.engine, prompt)
        body, each = await self._choose_tool(body, cache_scope, may_answer=may_answer)
        grammar = self._grammar(body, each=each) if self.config.constrained_decoding else None
        grammar = think_first(grammar, thinking) if thinking is not None else grammar
        with_tools = bool(offered_tools(body))
        params = _sampling_params(body, self.config, grammar, _vocab_size(self.engine))
        if grammar is not None and self.config.ground_answers and thinking in (None, "closed"):  # not "</think>"
            params = dataclasses.replace(params, stop=(*params.stop, *answer_stops(body)))
        completions: list[Completion] = []  # `n` choices, each a sequence of the batch, drawing with its own seed
        try:
            for i in range(body.n):
                choice_params = dataclasses.replace(params, seed=choice_seed(params.seed, i))
                completions.append(self.engine.submit(prompt, choice_params, async_mode=True, cache_scope=cache_scope))
        except BaseException:  # the queue filled up part way: the choices queued already are not read
            for completion in completions:
                completion.cancel()
            raise

        def reply() -> ReplyStream:  # a fresh splitter of one choice's reply
            return ReplyStream(
                ReasoningStream(thinking) if thinking else None,
                _splitter(body, self.config.parallel_calls, each) if with_tools else None,
            )

        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return self._stream(completions, body, include_usage, reply)
        try:
            texts = await asyncio.gather(*(_collect(c, is_disconnected, reply()) for c in completions))
        finally:
            for completion in completions:
                completion.cancel()
        choices = [
            self._choice(body, i, c, text, reply()) for i, (c, text) in enumerate(zip(completions, texts, strict=True))
        ]
        for i, completion in enumerate(completions):
            _observe(self.metrics, completion, prompt=i == 0)
        return ChatCompletion(model=body.model, choices=choices, usage=_usage(completions))

    def _choice(
        self, body: ChatCompletionRequest, index: int, completion: Completion, text: str, reply: ReplyStream
    ) -> Choice:
        reasoning, content, calls = split_reply(text, reply, cut=completion.finish_reason == "length")
        message = ResponseMessage(content=content, reasoning_content=reasoning, tool_calls=calls or None)
        logprobs = None
        if body.logprobs:  # every token of the raw reply (tool-call markup and reasoning included)
            reader = LogprobReader(completion, self.engine.token_bytes)
            logprobs = ChoiceLogprobs(content=chat_logprobs([*reader.feed(text), *reader.feed("")]))
        return Choice(
            index=index, message=message, logprobs=logprobs, finish_reason=_finish_reason(completion, bool(calls))
        )

    async def _choose_tool(
        self, body: ChatCompletionRequest, cache_scope: str | None, *, may_answer: bool
    ) -> tuple[ChatCompletionRequest, bool]:
        """`body` (call-then-answer applied) narrowed to one tool, or to a text answer when the call was not the
        client's requirement (`may_answer`) and no tool fits, by channel selection, when that policy applies; or to
        several tools, with True: one call to each, in order, for a message whose clauses ask for them."""
        config, engine = self.config, self.engine
        pairs = channel_pairs(body, may_answer=may_answer and config.no_tool_option)
        if not (config.constrained_decoding and config.tool_selection == "channel" and pairs):
            return body, False
        tools, texts = pairs

        def read(scored: list[tuple[str, str, int]]) -> list[float]:  # log P(text's first n tokens | description)
            encode = functools.cache(engine.encode)  # a description or text met again (clause by clause) once
            return engine.score([(encode(h), encode(text)[:n]) for h, text, n in scored], cache_scope=cache_scope)

        # Clauses read: as many as the reply may hold calls (none without `clause_calls`).
        limit = max_calls(body, parallel=config.parallel_calls) if config.clause_calls else 1
        # On a thread: tokenising, scoring and stemming take a while.
        return await asyncio.to_thread(choose, body, tools, texts, read, limit)

    def _grammar(self, body: ChatCompletionRequest, *, each: bool = False) -> str | None:
        """The grammar constraining this request's output (tool calls or json), after checking every schema; `each`:
        one call to each tool, in order."""
        engine = self.engine
        for i, tool in enumerate(body.tools or []):
            schema_grammar = f"%llguidance {{}}\nstart: %json {json.dumps(tool.function.parameters)}\n"
            if (error := engine.check_grammar(schema_grammar)) is not None:
                param = f"tools.{i}.function.parameters"
                raise InvalidRequest(f"{param}: not a usable JSON schema: {error.splitlines()[0]}", param=param)
        grammar = (
            tool_grammar(
                body,
                special_open=engine.is_special_token(TOOL_OPEN),
                special_close=engine.is_special_token(TOOL_CLOSE),
                tokenize=lambda name: engine.encode_after(NAME_PREFIX, name),
                parallel=self.config.parallel_calls,
                copy_values=self.config.copy_values,
                each=each,
            )
            or json_grammar(body.response_format)
            or answer_grammar(body, grounded=self.config.ground_answers)
        )
        if grammar is not None and (error := engine.check_grammar(grammar, keep=True)) is not None:
            param = "response_format" if body.response_format else "tools"
            raise InvalidRequest(
                f"{param}: cannot constrain output to this schema: {error.splitlines()[0]}", param=param
            )
        return grammar

    async def _stream(
        self,
        completions: list[Completion],
        body: ChatCompletionRequest,
        include_usage: bool,
        reply: Callable[[], ReplyStream],
    ) -> AsyncIterator[str]:
        """Server-sent events of the request's choices as they come, ending with `data: [DONE]`; each choice's
        `reply()` splits its text into reasoning, content and tool calls; with `logprobs`, each piece's tokens go
        with the first chunk of that piece (or an empty one, when the splitter holds the piece's text back)."""
        replies = [reply() for _ in completions]
        readers = [LogprobReader(c, self.engine.token_bytes) if body.logprobs else None for c in completions]
        done = [False] * len(completions)

        def logprobs(index: int, piece: str) -> ChoiceLogprobs | None:
            reader = readers[index]
            return None if reader is None else ChoiceLogprobs(content=chat_logprobs(reader.feed(piece)))

        base = ChatCompletionChunk(
            id=f"chatcmpl-{secrets.token_hex(16)}", created=int(time.time()), model=body.model, choices=[]
        )

        def event(choices: list[ChunkChoice], usage: Usage | None = None) -> str:
            chunk = base.model_copy(update={"choices": choices, "usage": usage})
            return f"data: {chunk.model_dump_json()}\n\n"

        def end(index: int) -> Iterator[str]:
            done[index], split = True, replies[index]
            for item in split.close(cut=completions[index].finish_reason == "length"):
                yield event([ChunkChoice(index=index, delta=_delta(item, split))])
            finish = _finish_reason(completions[index], bool(split.calls))
            tokens = logprobs(index, "")
            yield event([ChunkChoice(index=index, delta=Delta(), logprobs=tokens, finish_reason=finish)])

        try:
            for index in range(len(completions)):
                yield event([ChunkChoice(index=index, delta=Delta(role="assistant", content=""))])
            async for index, piece in interleave(completions):
                if done[index]:
                    continue
                if piece is None:
                    for line in end(index):
                        yield line
                    continue
                tokens, split = logprobs(index, piece), replies[index]
                for item in split.feed(piece):
                    yield event([ChunkChoice(index=index, delta=_delta(item, split), logprobs=tokens)])
                    tokens = None
                if tokens is not None and tokens.content:
                    yield event([ChunkChoice(index=index, delta=Delta(), logprobs=tokens)])
                if split.ended:  # a padding call: the rest of this choice is not read
                    completions[index].cancel()
                    for line in end(index):
                        yield line
                if all(done):
                    break
            if include_usage:
                yield event([], _usage(completions))
            for i, completion in enumerate(completions):
                _observe(self.metrics, completion, prompt=i == 0)
            yield "data: [DONE]\n\n"
        except LocalLLMError as exc:
            # Headers are sent already: the error goes out as one more event, in the body a client would parse.
            yield f"data: {json.dumps(api_error(exc).body().model_dump())}\n\n"
        finally:
            for completion in completions:
                completion.cancel()


# A token is rarely longer than a few characters: messages with more characters than this many per token of the
# context window cannot fit, and are refused before tokenising them (which takes seconds for megabytes).
CHARS_PER_TOKEN_LIMIT = 32


def _check_characters(body: ChatCompletionRequest, context_length: int) -> None:
    """Refuse messages far too long for the context window by their character count, before tokenising."""
    if context_length <= 0:
        return  # not loaded yet: the engine answers 503
    chars = 0
    for message in body.messages:
        if isinstance(message.content, str):
            chars += len(message.content)
        elif message.content is not None:
            chars += sum(len(part.text) for part in message.content if isinstance(part, TextPart))
        chars += sum(len(call.function.arguments) + len(call.function.name) for call in message.tool_calls or [])
        chars += len(message.reasoning_content or "")
    if chars > CHARS_PER_TOKEN_LIMIT * context_length:
        raise ContextLengthExceeded(
            f"this model's maximum context length is {context_length} tokens, but the messages hold {chars} "
            "characters, far more than fit; shorten the conversation",
            prompt_tokens=chars // CHARS_PER_TOKEN_LIMIT,
            context_length=context_length,
        )


def _vocab_size(engine: Engine) -> int | None:
    return len(engine.tokenizer.hf) if engine.tokenizer is not None else None


# How often a non-streaming request checks that its client is still there.
DISCONNECT_POLL_S = 0.2


async def _collect(
    completion: Completion, is_disconnected: Callable[[], Awaitable[bool]] | None, reply: ReplyStream
) -> str:
    """The whole text of `completion`; cancelled (APIError 499) as soon as `is_disconnected` says the client left,
    and stopped where `reply` says it is over (a padding call)."""

    async def join() -> str:
        pieces = []
        async for piece in completion:
            pieces.append(piece)
            list(reply.feed(piece))  # only to learn where the reply ends: split_reply splits the whole text
            if reply.ended:
                break
        return "".join(pieces)

    task = asyncio.ensure_future(join())
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=DISCONNECT_POLL_S)
            if not task.done() and is_disconnected is not None and await is_disconnected():
                raise APIError(499, "the client closed the request", type="invalid_request_error")
        return task.result()
    finally:
        completion.cancel()
        task.cancel()


def _sampling_params(
    body: ChatCompletionRequest, config: ServerConfig, grammar: str | None, vocab_size: int | None = None
) -> SamplingParams:
    bias: dict[int, float] = {}
    for key, value in (body.logit_bias or {}).items():  # keys are digit strings (protocol checks)
        if vocab_size is not None and int(key) >= vocab_size:
            raise APIError(
                400,
                f"logit_bias: {key} is not a token id of this model (its ids run from 0 to {vocab_size - 1})",
                type="invalid_request_error",
                param="logit_bias",
            )
        bias[int(key)] = value
    return SamplingParams(
        max_tokens=body.token_limit() or config.default_max_tokens,
        temperature=config.default_temperature if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        seed=body.seed,
        stop=tuple(body.stop_list()),
        presence_penalty=body.presence_penalty,
        frequency_penalty=body.frequency_penalty,
        logit_bias=bias,
        ignore_eos=body.ignore_eos,
        grammar=grammar,
        logprobs=(body.top_logprobs or 0) if body.logprobs else None,
    )


def _usage(completions: list[Completion]) -> Usage:
    """Usage of a request's choices: the prompt once (as OpenAI counts it), every choice's generated tokens."""
    first, generated = completions[0], sum(c.completion_tokens for c in completions)
    return Usage(
        prompt_tokens=first.prompt_tokens,
        completion_tokens=generated,
        total_tokens=first.prompt_tokens + generated,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=first.cached_tokens),
    )


def _observe(metrics: ServerMetrics, completion: Completion, *, prompt: bool = True) -> None:
    """Count a finished completion; `prompt` False for a request's later choices (their prompt is counted once)."""
    if prompt:
        metrics.prompt_tokens.inc(completion.prompt_tokens)
        metrics.cached_tokens.inc(completion.cached_tokens)
    metrics.completion_tokens.inc(completion.completion_tokens)
    if completion.finished_at is not None:
        metrics.latency.observe(completion.finished_at - completion.submitted_at)
    if completion.first_token_at is not None:
        metrics.ttft.observe(completion.first_token_at - completion.submitted_at)
        if completion.finished_at is not None and completion.completion_tokens > 1:
            span = completion.finished_at - completion.first_token_at
            if span > 0:
                metrics.decode_rate.set((completion.completion_tokens - 1) / span)


def _splitter(body: ChatCompletionRequest, parallel: bool, each: bool = False) -> ToolCallStream:
    """The reply's splitter into content and calls, told each offered tool's required parameters and the user's
    values (by which a repeated or padding call is told apart from a new one; per tool where the reply is one call
    to `each` tool), and, when a reply to the user's message may hold several calls (`parallel`), the further calls
    for the items the message lists."""
    required: dict[str, list[str]] = {}
    for tool in body.tools or []:
        keys = tool.function.parameters.get("required")
        required[tool.function.name] = [key for key in keys if isinstance(key, str)] if isinstance(keys, list) else []
    further = None
    limit, latest = max_calls(body, parallel=parallel), body.messages[-1] if body.messages else None
    if limit > 1 and latest is not None and latest.role == "user":
        schemas = {t.function.name: t.function.parameters for t in body.tools or []}
        with contextlib.suppress(ValueError):  # content the model cannot read: the prompt refuses it
            further = functools.partial(listed_calls, latest.text(), tools=schemas, limit=limit)
    return ToolCallStream(required, times_written(conversation_values(body)), further, by_tool=each)


def _finish_reason(completion: Completion, called: bool) -> FinishReason:
    """ "length" when `max_tokens` (or the context) cut the reply, a call included, as OpenAI says; else
    "tool_calls" when it made calls; else why generation ended."""
    if completion.finish_reason == "length":
        return "length"
    return "tool_calls" if called else completion.finish_reason or "stop"


def _thinking(engine: Engine, prompt: list[int]) -> ThinkStart | None:
    """Where the reply to `prompt` starts relative to a thinking block, for a model whose tokenizer has the thinking
    tags as tokens (Qwen3); None for other models. The template's opening of the reply is in the last tokens."""
    if not (engine.is_special_token(THINK_OPEN) and engine.is_special_token(THINK_CLOSE)):
        return None
    return thinking_start(engine.decode(prompt[-8:]))


def _delta(item: str | Reasoning | ToolCall, reply: ReplyStream) -> Delta:
    if isinstance(item, str):
        return Delta(content=item)
    if isinstance(item, Reasoning):
        return Delta(reasoning_content=item.text)
    return Delta(tool_calls=[{"index": reply.calls.index(item), **item.model_dump()}])
