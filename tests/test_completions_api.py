"""POST /v1/completions (legacy text completion) through the unchanged openai SDK, on the tiny random model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from engine_waits import slowed, wait_for_batch
from fastapi.testclient import TestClient

from autoqwen.local_llm import EmbeddedServer, Engine, ServerConfig, create_app, resolve_model


@pytest.fixture(scope="module")
def client(tiny_server: EmbeddedServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=tiny_server.base_url, api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def model(tiny_server: EmbeddedServer) -> str:
    return tiny_server.engine.model_id


def complete(client: openai.OpenAI, model: str, **kwargs: Any) -> Any:
    base: dict[str, Any] = {"model": model, "prompt": "Hello", "max_tokens": 6, "temperature": 0}
    extra = {"ignore_eos": True} if kwargs.pop("ignore_eos", True) else {}
    return client.completions.create(**{**base, **kwargs}, extra_body=extra)


def test_a_string_prompt_completes_with_usage(client: openai.OpenAI, model: str, tiny_server: EmbeddedServer) -> None:
    r = complete(client, model)
    assert r.object == "text_completion" and r.id.startswith("cmpl-") and r.model == model
    (choice,) = r.choices
    assert choice.index == 0 and choice.finish_reason == "length" and choice.logprobs is None
    prompt_tokens = len(tiny_server.engine.encode("Hello"))  # no chat template around the prompt
    assert r.usage.prompt_tokens == prompt_tokens and r.usage.completion_tokens == 6
    assert r.usage.total_tokens == prompt_tokens + 6


def test_without_max_tokens_a_completion_stops_at_16_tokens(client: openai.OpenAI, model: str) -> None:
    r = client.completions.create(model=model, prompt="Hello", extra_body={"ignore_eos": True})
    assert r.usage is not None and r.usage.completion_tokens == 16  # OpenAI's default for this endpoint


def test_token_ids_prompt_is_the_same_as_its_text(
    client: openai.OpenAI, model: str, tiny_server: EmbeddedServer
) -> None:
    ids = tiny_server.engine.encode("The capital of France")
    by_text = complete(client, model, prompt="The capital of France")
    assert complete(client, model, prompt=ids).choices[0].text == by_text.choices[0].text
    assert complete(client, model, prompt=[ids, ids]).choices[1].text == by_text.choices[0].text


def test_a_list_of_prompts_gets_n_choices_each_in_order(client: openai.OpenAI, model: str) -> None:
    one = complete(client, model, prompt="Hello", temperature=1.0, seed=7)
    two = complete(client, model, prompt="def add", temperature=1.0, seed=7)
    r = complete(client, model, prompt=["Hello", "def add"], n=2, temperature=1.0, seed=7)
    assert [c.index for c in r.choices] == [0, 1, 2, 3]
    # Choice j of a prompt draws with seed + j: the first of each matches a single request with that seed.
    assert r.choices[0].text == one.choices[0].text and r.choices[2].text == two.choices[0].text
    assert r.choices[0].text != r.choices[1].text
    assert r.usage.completion_tokens == 4 * 6


def test_seed_reproduces_a_sampled_completion(client: openai.OpenAI, model: str) -> None:
    first = complete(client, model, temperature=1.0, seed=42, max_tokens=12).choices[0].text
    assert complete(client, model, temperature=1.0, seed=42, max_tokens=12).choices[0].text == first
    assert complete(client, model, temperature=1.0, seed=43, max_tokens=12).choices[0].text != first


def test_stream_matches_the_whole_completion(client: openai.OpenAI, model: str) -> None:
    whole = complete(client, model, temperature=1.0, seed=5, max_tokens=10)
    chunks = list(
        complete(
            client, model, temperature=1.0, seed=5, max_tokens=10, stream=True, stream_options={"include_usage": True}
        )
    )
    assert all(c.object == "text_completion" and c.id == chunks[0].id for c in chunks)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole.choices[0].text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["length"]
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage


def test_stream_of_several_choices_names_each(client: openai.OpenAI, model: str) -> None:
    chunks = list(complete(client, model, prompt=["Hello", "Bye"], n=2, temperature=1.0, seed=3, stream=True))
    texts: dict[int, str] = {}
    finished = []
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + choice.text
            if choice.finish_reason:
                finished.append(choice.index)
    assert sorted(finished) == [0, 1, 2, 3]
    whole = complete(client, model, prompt=["Hello", "Bye"], n=2, temperature=1.0, seed=3)
    assert texts == {c.index: c.text for c in whole.choices}


def test_stop_ends_the_text_before_the_stop_string(client: openai.OpenAI, model: str) -> None:
    full = complete(client, model, max_tokens=30).choices[0].text
    stop = full[8:11]
    cut = complete(client, model, max_tokens=30, stop=[stop], ignore_eos=False).choices[0]
    assert cut.finish_reason == "stop" and cut.text == full[: full.index(stop)]
    streamed = complete(client, model, max_tokens=30, stop=stop, ignore_eos=False, stream=True)
    assert "".join(c.choices[0].text for c in streamed if c.choices) == cut.text


def test_echo_puts_the_prompt_before_the_completion(client: openai.OpenAI, model: str) -> None:
    plain = complete(client, model).choices[0].text
    assert complete(client, model, echo=True).choices[0].text == "Hello" + plain
    streamed = complete(client, model, echo=True, stream=True)
    assert "".join(c.choices[0].text for c in streamed if c.choices) == "Hello" + plain


def test_logprobs_give_each_token_and_its_alternatives(client: openai.OpenAI, model: str) -> None:
    r = complete(client, model, logprobs=3, max_tokens=8)
    choice = r.choices[0]
    lp = choice.logprobs
    assert lp is not None
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == 8
    assert lp.text_offset[0] == 0 and lp.text_offset == sorted(lp.text_offset)
    for token, logprob, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs, strict=True):
        assert logprob <= 0 and 3 <= len(top) <= 4  # the chosen token is among them even when not in the top 3
        assert top[token] == logprob
        assert logprob == pytest.approx(max(top.values()), abs=1e-6)  # greedy: the most likely token
    streamed = list(complete(client, model, logprobs=3, max_tokens=8, stream=True))
    tokens = [t for c in streamed if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.tokens]
    assert tokens == lp.tokens


def test_best_of_keeps_the_likeliest_and_counts_every_candidate(client: openai.OpenAI, model: str) -> None:
    r = complete(client, model, best_of=3, n=1, temperature=1.0, seed=9)
    assert len(r.choices) == 1 and r.choices[0].logprobs is None
    assert r.usage.completion_tokens == 3 * 6
    candidates = complete(client, model, n=3, temperature=1.0, seed=9, logprobs=0).choices
    mean = {c.text: sum(c.logprobs.token_logprobs) / 6 for c in candidates}
    assert r.choices[0].text == max(mean, key=mean.__getitem__)


@pytest.mark.parametrize(
    ("kwargs", "param", "contains"),
    [
        ({"suffix": "end"}, "suffix", "not supported"),
        ({"echo": True, "logprobs": 1}, "logprobs", "echo"),
        ({"logprobs": 6}, "logprobs", "less than or equal to 5"),
        ({"n": 17}, "n", "16"),
        ({"prompt": ["a"] * 9, "n": 2}, "n", "at most 16"),
        ({"n": 3, "best_of": 2}, None, "best_of"),
        ({"best_of": 3, "stream": True}, "best_of", "streaming"),
        ({"prompt": [0, 99999]}, "prompt", "99999"),
        ({"prompt": ""}, "prompt", "at least one token"),
        ({"prompt": []}, "prompt", "at least one prompt"),
        ({"max_tokens": 0}, "max_tokens", ""),
        ({"logit_bias": {"99999": 1}}, "logit_bias", "99999"),
        ({"stop": ["a", "b", "c", "d", "e"]}, None, "at most 4"),
        ({"prompt": "Hello there " * 20000}, "prompt", "context length"),
    ],
)
def test_bad_requests_get_openai_400s(
    client: openai.OpenAI, model: str, kwargs: dict[str, Any], param: str | None, contains: str
) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        complete(client, model, **kwargs)
    error = raised.value.body
    assert isinstance(error, dict) and error["type"] == "invalid_request_error"
    if param is not None:
        assert error["param"] == param
    assert contains in error["message"]


def test_unknown_model_is_404_and_missing_prompt_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError, match="gpt-9"):
        client.completions.create(model="gpt-9", prompt="Hello")
    with pytest.raises(openai.BadRequestError, match="prompt"):
        client.post("/completions", body={"model": "x"}, cast_to=object)


def test_a_model_still_loading_gets_503(tiny_model_dir: Path) -> None:
    engine = Engine(resolve_model(str(tiny_model_dir)))  # not started: never ready
    with TestClient(create_app(engine, ServerConfig(aliases=("tiny",)))) as c:
        long_prompt = {"model": "tiny", "prompt": "Hello there " * 100}
        for path, body in [
            ("/v1/completions", long_prompt),
            ("/v1/completions", {"model": "tiny", "prompt": [1, 2, 3]}),
            ("/v1/responses", {"model": "tiny", "input": "Hello there " * 100}),
        ]:
            r = c.post(path, json=body)
            assert r.status_code == 503 and r.json()["error"]["code"] == "model_not_ready", r.text


@pytest.fixture(scope="module")
def keyed(tiny_engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(tiny_engine, ServerConfig(api_keys=("secret",), aliases=("tiny",)))) as c:
        yield c


def test_the_api_key_guards_completions_and_responses(keyed: TestClient) -> None:
    body = {"model": "tiny", "prompt": "Hello", "max_tokens": 2}
    assert keyed.post("/v1/completions", json=body).status_code == 401
    assert keyed.post("/v1/responses", json={"model": "tiny", "input": "Hi"}).status_code == 401
    ok = keyed.post("/v1/completions", json=body, headers={"Authorization": "Bearer secret"})
    assert ok.status_code == 200, ok.text


def test_a_stream_left_early_frees_its_sequences(lone_tiny_server: EmbeddedServer) -> None:
    server = lone_tiny_server
    body = {"model": server.engine.model_id, "prompt": ["Hello", "Bye"], "n": 2, "max_tokens": 3000}
    body |= {"stream": True, "ignore_eos": True, "temperature": 0}
    with slowed(server.engine), httpx.stream("POST", f"{server.base_url}/completions", json=body, timeout=30) as reply:
        assert reply.status_code == 200
        lines = reply.iter_lines()  # kept: a dropped iterator closes the response when it is collected
        next(lines)
        assert wait_for_batch(server.engine, 4)  # (a first text may come before its sequence joins the batch)
        reply.close()
        assert wait_for_batch(server.engine, 0, timeout=5)  # 3000 steps would take 15 s
