from __future__ import annotations

import asyncio
import gc
import threading
import weakref

import pytest

from autoqwen.local_llm import (
    ContextLengthExceeded,
    Engine,
    EngineNotReady,
    LocalLLMError,
    QueueFull,
    SamplingParams,
    resolve_model,
)

MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hello!"}]


def run(engine: Engine, **params: object) -> tuple[str, str | None, int]:
    completion = engine.submit(engine.encode_chat(MESSAGES), SamplingParams(**params))  # type: ignore[arg-type]
    text = completion.text()
    return text, completion.finish_reason, completion.completion_tokens


def test_chat_template_renders_system_and_turns(tiny_engine: Engine) -> None:
    text = tiny_engine.decode(tiny_engine.encode_chat(MESSAGES))
    assert text.index("You are terse.") < text.index("Hello!")
    prompt = tiny_engine.tokenizer.hf.decode(tiny_engine.encode_chat(MESSAGES))
    assert prompt.endswith("<|im_start|>assistant\n")


def test_async_streams_get_every_piece_in_order_and_let_their_loop_go(tiny_engine: Engine) -> None:
    params = SamplingParams(max_tokens=20, temperature=0, ignore_eos=True)
    expected = tiny_engine.submit(tiny_engine.encode_chat(MESSAGES), params).text()

    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def together() -> list[str]:  # three streams on one loop: their pieces share wake-ups of the loop
        loops.append(weakref.ref(asyncio.get_running_loop()))
        streams = [tiny_engine.submit(tiny_engine.encode_chat(MESSAGES), params, async_mode=True) for _ in range(3)]

        async def read(stream: object) -> str:
            return "".join([piece async for piece in stream])  # type: ignore[attr-defined]

        return list(await asyncio.gather(*(read(s) for s in streams)))

    assert asyncio.run(together()) == [expected] * 3
    tiny_engine.submit(tiny_engine.encode_chat(MESSAGES), params).text()  # the worker lets go of the last job
    gc.collect()
    assert loops[0]() is None  # the finished loop is freed: the engine's registry of loops does not hold it


def test_text_decoded_between_deliveries_goes_out_as_one_piece(tiny_engine: Engine) -> None:
    params = SamplingParams(max_tokens=12, temperature=0, ignore_eos=True)
    prompt = tiny_engine.encode_chat(MESSAGES)
    try:
        tiny_engine.stream_interval_ms = 0
        each = list(tiny_engine.submit(prompt, params))
        tiny_engine.stream_interval_ms = 60_000
        held = list(tiny_engine.submit(prompt, params))
    finally:
        tiny_engine.stream_interval_ms = 20
    assert len(each) > 2  # every token's text as it comes
    assert held == [each[0], "".join(each[1:])]  # the first at once, the rest when the completion ends


def test_max_tokens_ends_with_length(tiny_engine: Engine) -> None:
    _, reason, tokens = run(tiny_engine, max_tokens=7, temperature=0, ignore_eos=True)
    assert (reason, tokens) == ("length", 7)


def test_same_seed_same_output_and_other_seed_differs(tiny_engine: Engine) -> None:
    first = run(tiny_engine, max_tokens=24, temperature=1.5, seed=7, ignore_eos=True)
    again = run(tiny_engine, max_tokens=24, temperature=1.5, seed=7, ignore_eos=True)
    other = run(tiny_engine, max_tokens=24, temperature=1.5, seed=8, ignore_eos=True)
    assert first == again
    assert other[0] != first[0]


def test_greedy_is_deterministic_without_seed(tiny_engine: Engine) -> None:
    assert run(tiny_engine, max_tokens=16, temperature=0, ignore_eos=True) == run(
        tiny_engine, max_tokens=16, temperature=0, ignore_eos=True
    )


def test_stop_string_truncates_and_finishes_with_stop(tiny_engine: Engine) -> None:
    full, _, _ = run(tiny_engine, max_tokens=40, temperature=0, ignore_eos=True)
    stop = full[10:13]
    assert stop.strip(), f"need a visible stop string from {full!r}"
    text, reason, _ = run(tiny_engine, max_tokens=40, temperature=0, ignore_eos=True, stop=(stop,))
    assert reason == "stop"
    assert text == full[: full.index(stop)]


def test_top_p_tiny_keeps_only_the_most_likely_token(tiny_engine: Engine) -> None:
    greedy = run(tiny_engine, max_tokens=12, temperature=0, ignore_eos=True)
    nucleus = run(tiny_engine, max_tokens=12, temperature=1.0, top_p=1e-6, seed=3, ignore_eos=True)
    assert nucleus == greedy


def test_logit_bias_forces_a_token(tiny_engine: Engine) -> None:
    token = tiny_engine.encode("Paris")[0]
    completion = tiny_engine.submit(
        tiny_engine.encode_chat(MESSAGES),
        SamplingParams(max_tokens=3, temperature=0, logit_bias={token: 100.0}, ignore_eos=True),
    )
    assert completion.text() == tiny_engine.decode([token] * 3)


def test_prompt_longer_than_context_is_refused(tiny_engine: Engine) -> None:
    long_prompt = list(range(5, 5 + tiny_engine.context_length + 1))
    with pytest.raises(ContextLengthExceeded, match=f"maximum context length is {tiny_engine.context_length}"):
        tiny_engine.submit(long_prompt, SamplingParams())


def test_generation_stops_at_the_context_window(tiny_engine: Engine) -> None:
    prompt = (tiny_engine.encode_chat(MESSAGES) * 400)[: tiny_engine.context_length - 20]  # 20 tokens of room
    completion = tiny_engine.submit(prompt, SamplingParams(temperature=0, ignore_eos=True))
    completion.text()
    assert completion.finish_reason == "length"
    assert completion.prompt_tokens + completion.completion_tokens == tiny_engine.context_length


def test_engine_not_ready_before_start(tiny_model_dir: object) -> None:
    engine = Engine(resolve_model(str(tiny_model_dir)))
    with pytest.raises(EngineNotReady, match="created"):
        engine.submit([1, 2], SamplingParams())


def test_bounded_queue_refuses_when_full(tiny_model_dir: object) -> None:
    engine = Engine(resolve_model(str(tiny_model_dir)), max_queue=1, max_batch=1).start().wait_ready(60)
    try:
        gate = threading.Event()
        engine.hooks.on_prefill = lambda job: gate.wait(10)
        prompt = engine.encode_chat(MESSAGES)
        params = SamplingParams(max_tokens=2, temperature=0)
        running = engine.submit(prompt, params)
        while engine.queue_depth:  # the worker took the first one and is blocked on it
            pass
        waiting = engine.submit(prompt, params)
        with pytest.raises(QueueFull, match="1 requests are already waiting"):
            engine.submit(prompt, params)
        gate.set()
        assert running.text() == waiting.text()
    finally:
        engine.close()


def test_cancel_frees_the_model_early(tiny_engine: Engine) -> None:
    completion = tiny_engine.submit(tiny_engine.encode_chat(MESSAGES), SamplingParams(temperature=0, ignore_eos=True))
    first = next(iter(completion))
    completion.cancel()
    rest = "".join(completion)
    assert completion.completion_tokens < tiny_engine.context_length - completion.prompt_tokens
    assert isinstance(first + rest, str)


def test_a_failure_while_sampling_fails_that_request_and_the_engine_goes_on(
    tiny_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from autoqwen.local_llm import sampling

    sample, calls = sampling.sample, []

    def flaky(*args: object) -> int:
        calls.append(1)
        if len(calls) == 3:
            raise ValueError("probabilities contain NaN")
        return sample(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(sampling, "sample", flaky)
    completion = tiny_engine.submit(tiny_engine.encode_chat(MESSAGES), SamplingParams(max_tokens=8, temperature=0))
    with pytest.raises(LocalLLMError, match="generation failed: probabilities contain NaN"):
        completion.text()
    assert run(tiny_engine, max_tokens=4, temperature=0, ignore_eos=True)[1:] == ("length", 4)


def test_forced_text_comes_in_the_tokenizers_own_split(tiny_engine: Engine) -> None:
    text = "Hello! How are you today?"
    grammar = '%llguidance {}\nstart: "' + text + '"'
    out, reason, tokens = run(tiny_engine, grammar=grammar, temperature=1.0, seed=3, max_tokens=40)
    assert (out, reason) == (text, "stop")
    assert tokens == len(tiny_engine.encode(text))  # fast-forwarded, not spelled out by random weights
