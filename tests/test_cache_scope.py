"""The prefix cache never tells one API key's clients what another key's clients sent: `cached_tokens` (and the time
to the first token) come only from prompts sent with the same key."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from autoqwen.local_llm import Engine, ServerConfig, create_app
from autoqwen.local_llm.sampling import SamplingParams
from autoqwen.local_llm.scoring import scope_of

URL = "/v1/chat/completions"
SECRET = [{"role": "user", "content": "My account number is 4417 1234 5678 9113; what is my balance?"}]


def cached_tokens(client: TestClient, key: str, messages: list[dict[str, str]]) -> int:
    payload = {"model": "tiny", "messages": messages, "max_tokens": 4, "temperature": 0}
    r = client.post(URL, json=payload, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.text
    return int(r.json()["usage"]["prompt_tokens_details"]["cached_tokens"])


@pytest.fixture
def two_keys(tiny_engine: Engine) -> Iterator[tuple[TestClient, TestClient]]:
    """Two servers over one engine (so one prefix cache), each with its own API key."""
    tiny_engine.prefix_cache.clear()
    with (
        TestClient(create_app(tiny_engine, ServerConfig(api_keys=["alice-key"], aliases=("tiny",)))) as alice,
        TestClient(create_app(tiny_engine, ServerConfig(api_keys=["bob-key"], aliases=("tiny",)))) as bob,
    ):
        yield alice, bob
    tiny_engine.prefix_cache.clear()


def test_another_keys_prompt_is_not_reused_or_reported(two_keys: tuple[TestClient, TestClient]) -> None:
    """Before, Bob's cached_tokens showed that someone had sent Alice's prompt."""
    alice, bob = two_keys
    assert cached_tokens(alice, "alice-key", SECRET) == 0
    assert cached_tokens(bob, "bob-key", SECRET) == 0
    assert cached_tokens(alice, "alice-key", SECRET) > 0  # a key's own prompts still reuse the cache
    assert cached_tokens(bob, "bob-key", SECRET) > 0


def test_two_keys_of_one_server_keep_their_caches_apart(tiny_engine: Engine) -> None:
    tiny_engine.prefix_cache.clear()
    config = ServerConfig(api_keys=["alice-key", "bob-key"], aliases=("tiny",))
    with TestClient(create_app(tiny_engine, config)) as client:
        assert cached_tokens(client, "alice-key", SECRET) == 0
        assert cached_tokens(client, "bob-key", SECRET) == 0
        assert cached_tokens(client, "bob-key", SECRET) > 0
    tiny_engine.prefix_cache.clear()


def test_a_key_reuses_its_own_conversation_turn_after_turn(tiny_engine: Engine) -> None:
    tiny_engine.prefix_cache.clear()
    with TestClient(create_app(tiny_engine, ServerConfig(api_keys=["k"], aliases=("tiny",)))) as client:
        assert cached_tokens(client, "k", SECRET) == 0
        longer = [*SECRET, {"role": "assistant", "content": "Let me look."}, {"role": "user", "content": "Thanks."}]
        assert cached_tokens(client, "k", longer) > 0


def test_engine_scopes_keep_prefixes_apart(tiny_engine: Engine) -> None:
    tiny_engine.prefix_cache.clear()
    prompt = tiny_engine.encode_chat(SECRET)
    params = SamplingParams(max_tokens=2, temperature=0)

    def run(scope: str | None) -> Any:
        completion = tiny_engine.submit(prompt, params, cache_scope=scope)
        completion.text()
        return completion.cached_tokens

    assert run("a") == 0
    assert run("b") == 0 and run(None) == 0
    assert run("a") == run("b") == run(None) == len(prompt) - 1


def test_scoring_reads_only_its_scopes_prefixes(tiny_engine: Engine) -> None:
    tiny_engine.prefix_cache.clear()
    prefix, continuation = tiny_engine.encode("Tool: transfer - moves money"), tiny_engine.encode(" Pay Bob.")
    tiny_engine.score([(prefix, continuation)], cache_scope="a")
    assert tiny_engine.prefix_cache.lookup(prefix + continuation, scope=scope_of("b")) == (0, None)
    assert tiny_engine.prefix_cache.lookup(prefix + continuation, scope=scope_of("a"))[0] == len(prefix) - 1
    # Read with bfloat16 copies of the weights where that pays: kept from prompts, even of the same scope.
    assert tiny_engine.prefix_cache.lookup(prefix + continuation, scope="a") == (0, None)
