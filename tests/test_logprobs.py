"""Token log-probabilities from the engine (`SamplingParams.logprobs`), and how they are read back in step with
the text (`LogprobReader`) and written in OpenAI's chat and legacy shapes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from autoqwen.local_llm import EmbeddedServer, Engine, SamplingParams
from autoqwen.local_llm.completion import Completion
from autoqwen.local_llm.logprobs import LogprobReader, chat_logprobs, token_string
from autoqwen.local_llm.sampling import TokenLogprob
from autoqwen.local_llm.serving_completions import legacy_logprobs


def reference_logprobs(model_dir: Path, ids: list[int]) -> Any:
    """log-softmax of transformers' own logits for every position of `ids`, [len(ids), vocab]."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    with torch.inference_mode():
        return torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), dim=-1)


def generate(engine: Engine, params: SamplingParams, prompt: str = "Hello there") -> tuple[list[int], Completion]:
    """The prompt's ids and the finished completion (its text in `completion.whole`)."""
    ids = engine.encode_chat([{"role": "user", "content": prompt}])
    completion = engine.submit(ids, params)
    completion.whole = completion.text()  # type: ignore[attr-defined]
    return ids, completion


def test_logprobs_are_the_models_raw_distribution(tiny_engine: Engine, tiny_model_dir: Path) -> None:
    # Temperature 2 and a strong bias change what is sampled, not the log-probabilities reported.
    params = SamplingParams(max_tokens=6, temperature=2.0, seed=1, ignore_eos=True, logprobs=3, logit_bias={50: 4.0})
    prompt, completion = generate(tiny_engine, params)
    entries = completion.logprobs
    assert len(entries) == 6 == completion.completion_tokens
    reference = reference_logprobs(tiny_model_dir, prompt + [e.token for e in entries])
    for i, entry in enumerate(entries):
        row = reference[len(prompt) - 1 + i]
        assert entry.logprob == pytest.approx(float(row[entry.token]), abs=1e-3)
        assert [t for t, _ in entry.top] == row.topk(3).indices.tolist()
        assert [lp for _, lp in entry.top] == pytest.approx(row.topk(3).values.tolist(), abs=1e-3)
    assert tiny_engine.decode([e.token for e in entries]) == completion.whole  # type: ignore[attr-defined]


def test_greedy_tokens_are_the_top_alternative(tiny_engine: Engine) -> None:
    _, completion = generate(tiny_engine, SamplingParams(max_tokens=5, temperature=0, ignore_eos=True, logprobs=2))
    for entry in completion.logprobs:
        assert entry.top[0] == (entry.token, pytest.approx(entry.logprob))
        assert entry.top[0][1] >= entry.top[1][1]


def test_nothing_is_recorded_unless_asked(tiny_engine: Engine) -> None:
    _, completion = generate(tiny_engine, SamplingParams(max_tokens=5, temperature=0, ignore_eos=True))
    assert completion.completion_tokens == 5 and completion.logprobs == []
    _, zero = generate(tiny_engine, SamplingParams(max_tokens=3, temperature=0, ignore_eos=True, logprobs=0))
    assert len(zero.logprobs) == 3 and all(e.top == () for e in zero.logprobs)


def test_tokens_a_grammar_forces_are_certain(tiny_engine: Engine) -> None:
    grammar = '%llguidance {}\nstart: "Hello world"\n'
    _, completion = generate(tiny_engine, SamplingParams(max_tokens=20, temperature=0, grammar=grammar, logprobs=2))
    assert tiny_engine.decode([e.token for e in completion.logprobs]) == "Hello world"
    assert all(e.logprob == 0.0 and e.top == () for e in completion.logprobs)


class Recorded:
    """A stand-in for a Completion: only what LogprobReader reads."""

    def __init__(self, entries: list[TokenLogprob]) -> None:
        self.logprobs = entries


VOCAB = {1: (b"He", False), 2: (b"llo", False), 3: (b"\xc3", False), 4: (b"\xa9", False), 5: (b" ST", False)}
VOCAB[6] = (b"<|sep|>", True)


def token_bytes(ids: Sequence[int]) -> list[tuple[bytes, bool]]:
    return [VOCAB[i] for i in ids]


def entries(*tokens: int) -> list[TokenLogprob]:
    return [TokenLogprob(t, -0.5 * t, ((t, -0.5 * t), (2, -3.0))) for t in tokens]


def test_reader_hands_out_tokens_as_their_text_goes_out() -> None:
    recorded = Recorded(entries(1, 2))
    reader = LogprobReader(recorded, token_bytes)  # type: ignore[arg-type]
    assert [t.entry.token for t in reader.feed("He")] == [1]  # "llo" is recorded but its text is held back
    recorded.logprobs += entries(3, 4, 6, 5)
    out = reader.feed("llo\u00e9")
    assert [t.entry.token for t in out] == [2, 3, 4, 6]  # the special token once the text before it is out
    assert [t.offset for t in out] == [2, 5, 5, 6]  # characters: é spans tokens 3 and 4
    assert reader.feed("") == []  # " ST" was cut by a stop string: never sent, never handed out


def test_token_strings_and_shapes() -> None:
    assert token_string(b"\xc3") == "bytes:\\xc3" and token_string("é".encode()) == "é"
    reader = LogprobReader(Recorded(entries(1, 3, 4)), token_bytes)  # type: ignore[arg-type]
    tokens = reader.feed("He\u00e9")
    chat = chat_logprobs(tokens)
    assert chat[1].token == "bytes:\\xc3" and chat[1].bytes == [0xC3]
    assert [t.token for t in chat[0].top_logprobs] == ["He", "llo"] and chat[0].top_logprobs[1].logprob == -3.0
    legacy = legacy_logprobs(tokens, offset=10)
    assert legacy.tokens == ["He", "bytes:\\xc3", "bytes:\\xa9"] and legacy.text_offset == [10, 12, 12]
    assert legacy.top_logprobs[1] == {"bytes:\\xc3": -1.5, "llo": -3.0}


def test_chat_completions_return_logprobs_through_the_openai_sdk(tiny_server: EmbeddedServer) -> None:
    import openai

    client = openai.OpenAI(base_url=tiny_server.base_url, api_key="none")
    model = tiny_server.engine.model_id
    ask: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": "Hello"}],
        "max_tokens": 8,
        "temperature": 0,
        "extra_body": {"ignore_eos": True},
    }
    reply = client.chat.completions.create(**ask, logprobs=True, top_logprobs=2)
    tokens = reply.choices[0].logprobs.content  # type: ignore[union-attr]
    assert tokens is not None and len(tokens) == reply.usage.completion_tokens == 8  # type: ignore[union-attr]
    whole = b"".join(bytes(t.bytes or []) for t in tokens)  # (a token inside a character is named `bytes:\x..`)
    assert whole.decode("utf-8", "replace") == reply.choices[0].message.content
    for token in tokens:  # greedy: the chosen token is the likeliest, listed first among its alternatives
        assert len(token.top_logprobs) == 2 and token.top_logprobs[0].logprob == pytest.approx(token.logprob)
        assert token.logprob <= 0
    streamed = [
        token
        for chunk in client.chat.completions.create(**ask, logprobs=True, top_logprobs=2, stream=True)
        if chunk.choices and chunk.choices[0].logprobs and chunk.choices[0].logprobs.content
        for token in chunk.choices[0].logprobs.content
    ]
    assert [(t.token, t.logprob) for t in streamed] == [(t.token, t.logprob) for t in tokens]
    plain = client.chat.completions.create(**ask)
    assert plain.choices[0].logprobs is None  # nothing unless asked
    with pytest.raises(openai.BadRequestError, match="top_logprobs"):
        client.chat.completions.create(**ask, top_logprobs=2)
