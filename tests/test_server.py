from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from autoqwen.local_llm import Engine, ServerConfig, create_app, resolve_model

URL = "/v1/chat/completions"


@pytest.fixture(scope="module")
def client(tiny_engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(tiny_engine, ServerConfig(aliases=("tiny",)))) as c:
        yield c


def body(**overrides: Any) -> dict[str, Any]:
    base = {
        "model": "tiny",
        "messages": [{"role": "user", "content": "Hello!"}],
        "max_tokens": 8,
        "temperature": 0,
        "ignore_eos": True,
    }
    return {**base, **overrides}


def sse_events(text: str) -> list[Any]:
    events = [line.removeprefix("data: ") for line in text.split("\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


def assert_error(response: Any, status: int, *, param: str | None = None, contains: str = "") -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    if param is not None:
        assert error["param"] == param
    assert contains in error["message"]
    return error


def test_models_lists_the_model_and_its_aliases(client: TestClient, tiny_engine: Engine) -> None:
    data = client.get("/v1/models").json()
    assert data["object"] == "list"
    assert [m["id"] for m in data["data"]] == [tiny_engine.model_id, "tiny"]
    assert client.get("/v1/models/tiny").json()["id"] == "tiny"


def test_completion_shape_and_usage(client: TestClient) -> None:
    r = client.post(URL, json=body())
    assert r.status_code == 200
    data = r.json()
    assert data["object"] == "chat.completion" and data["id"].startswith("chatcmpl-")
    choice = data["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["finish_reason"] == "length"
    usage = data["usage"]
    assert usage["completion_tokens"] == 8
    assert usage["total_tokens"] == usage["prompt_tokens"] + 8


def test_stream_matches_non_stream_and_reports_usage(client: TestClient) -> None:
    full = client.post(URL, json=body(seed=5, temperature=1.0)).json()
    r = client.post(URL, json=body(seed=5, temperature=1.0, stream=True, stream_options={"include_usage": True}))
    assert r.headers["content-type"].startswith("text/event-stream")
    chunks = sse_events(r.text)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == full["choices"][0]["message"]["content"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == full["usage"]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)


def test_stream_without_include_usage_has_no_usage_chunk(client: TestClient) -> None:
    chunks = sse_events(client.post(URL, json=body(stream=True)).text)
    assert all(c["choices"] for c in chunks)


def test_stop_sequence_via_api(client: TestClient) -> None:
    full = client.post(URL, json=body(max_tokens=30)).json()["choices"][0]["message"]["content"]
    stop = full[8:11]
    cut = client.post(URL, json=body(max_tokens=30, stop=stop)).json()["choices"][0]
    assert cut["finish_reason"] == "stop" and cut["message"]["content"] == full[: full.index(stop)]


def test_unknown_extra_fields_are_tolerated(client: TestClient) -> None:
    r = client.post(URL, json=body(metadata={"k": "v"}, service_tier="auto", logprobs=False))
    assert r.status_code == 200


def test_developer_and_list_content_are_accepted(client: TestClient) -> None:
    messages = [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]},
    ]
    assert client.post(URL, json=body(messages=messages)).status_code == 200


@pytest.mark.parametrize(
    ("payload", "param", "contains"),
    [
        ({"model": "tiny"}, "messages", "Field required"),
        (body(messages=[]), "messages", "at least 1"),
        (body(messages="hello"), "messages", ""),
        (body(messages=[{"role": "wizard", "content": "x"}]), "messages.0.role", ""),
        (body(max_tokens=0), "max_tokens", "greater than or equal to 1"),
        (body(max_tokens=-5), "max_tokens", ""),
        (body(temperature="hot"), "temperature", ""),
        (body(temperature=3), "temperature", "less than or equal to 2"),
        (body(n=9), "n", "less than or equal to 8"),
        (body(stop=["a", "b", "c", "d", "e"]), None, "at most 4"),
        (body(logit_bias={"abc": 1}), "logit_bias", "token ids"),
        (
            body(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]),
            "messages.0.content",
            "image_url",
        ),
    ],
)
def test_bad_requests_get_openai_400(
    client: TestClient, payload: dict[str, Any], param: str | None, contains: str
) -> None:
    error = assert_error(client.post(URL, json=payload), 400, param=param, contains=contains)
    assert error["type"] == "invalid_request_error"


def test_malformed_json_is_400(client: TestClient) -> None:
    r = client.post(URL, content=b'{"model": "tiny", "messages": [', headers={"content-type": "application/json"})
    assert assert_error(r, 400, contains="not valid JSON")["code"] == "json_invalid"


def test_unknown_model_is_404(client: TestClient) -> None:
    error = assert_error(client.post(URL, json=body(model="gpt-9")), 404, param="model", contains="gpt-9")
    assert error["code"] == "model_not_found"
    assert_error(client.get("/v1/models/gpt-9"), 404, param="model")


def test_unknown_route_and_method_are_openai_errors(client: TestClient) -> None:
    assert_error(client.get("/v1/nothing"), 404)
    assert_error(client.get(URL), 405)


def test_too_long_prompt_is_400_context_length(client: TestClient) -> None:
    r = client.post(URL, json=body(messages=[{"role": "user", "content": "Hello there " * 3000}]))
    assert assert_error(r, 400, param="messages")["code"] == "context_length_exceeded"


def test_server_keeps_serving_after_errors(client: TestClient) -> None:
    client.post(URL, content=b"{", headers={"content-type": "application/json"})
    client.post(URL, json=body(max_tokens=0))
    assert client.post(URL, json=body()).status_code == 200


def test_api_key_is_required_when_set(tiny_engine: Engine) -> None:
    with TestClient(create_app(tiny_engine, ServerConfig(api_keys=["s3cret"]))) as c:
        m = tiny_engine.model_id
        assert_error(c.post(URL, json=body(model=m)), 401)
        error = assert_error(c.get("/v1/models", headers={"Authorization": "Bearer nope"}), 401)
        assert error["code"] == "invalid_api_key"
        assert c.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/health").status_code == 200


def test_any_of_several_keys_is_accepted(tiny_engine: Engine) -> None:
    with TestClient(create_app(tiny_engine, ServerConfig(api_keys=["alice-key", "bob-key"]))) as c:
        for key in ("alice-key", "bob-key"):
            assert c.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code == 200
        for key in ("alice", "alice-keybob-key", ""):
            assert_error(c.get("/v1/models", headers={"Authorization": f"Bearer {key}"}), 401)


@pytest.mark.parametrize("keys", [[""], [" "], ["two words"]])
def test_unusable_keys_are_refused_in_the_config(keys: list[str]) -> None:
    with pytest.raises(ValueError, match="API key"):
        ServerConfig(api_keys=keys)


def test_health_is_503_until_the_model_is_loaded(tiny_model_dir: object) -> None:
    engine = Engine(resolve_model(str(tiny_model_dir)))
    with TestClient(create_app(engine)) as c:
        r = c.get("/health")
        assert r.status_code == 503 and r.json()["status"] == "created"
        error = assert_error(c.post(URL, json=body(model=engine.model_id)), 503)
        assert error["code"] == "model_not_ready"
        engine.start().wait_ready(60)
        assert c.get("/health").json()["status"] == "ready"
    engine.close()


def test_health_reports_a_failed_load(tmp_path: Any) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"")
    engine = Engine(resolve_model(str(tmp_path))).start()
    with pytest.raises(Exception, match="could not load"):
        engine.wait_ready(60)
    with TestClient(create_app(engine)) as c:
        r = c.get("/health")
        assert r.status_code == 503 and r.json()["status"] == "failed" and "could not load" in r.json()["error"]


def test_queue_full_is_503_with_retry_after(tiny_model_dir: object, monkeypatch: pytest.MonkeyPatch) -> None:
    from autoqwen.local_llm import QueueFull

    engine = Engine(resolve_model(str(tiny_model_dir))).start().wait_ready(60)

    def full(*_: object, **__: object) -> None:
        raise QueueFull("16 requests are already waiting for the model; retry shortly", retry_after=2)

    monkeypatch.setattr(engine, "submit", full)
    with TestClient(create_app(engine)) as c:
        r = c.post(URL, json=body(model=engine.model_id))
        assert_error(r, 503, contains="already waiting")
        assert r.headers["retry-after"] == "2"
    engine.close()


def test_metrics_count_requests_and_tokens(client: TestClient) -> None:
    def requests(status: int) -> float:
        name = f'autoqwen_requests_total{{path="/v1/chat/completions",status="{status}"}}'
        lines = [line for line in client.get("/metrics").text.splitlines() if line.startswith(name)]
        return float(lines[0].split()[-1]) if lines else 0.0

    before = requests(200), requests(400)
    client.post(URL, json=body(max_tokens=3))
    client.post(URL, json=body(max_tokens=3, stream=True))
    client.post(URL, json=body(max_tokens=-1))
    assert (requests(200), requests(400)) == (before[0] + 2, before[1] + 1)  # streamed or not; errors too
    text = client.get("/metrics").text
    assert "autoqwen_completion_tokens_total" in text
    assert "autoqwen_time_to_first_token_seconds_bucket" in text
    assert "autoqwen_queue_depth 0.0" in text and "autoqwen_model_ready 1.0" in text
    completion_tokens = next(
        float(line.split()[-1]) for line in text.splitlines() if line.startswith("autoqwen_completion_tokens_total")
    )
    assert completion_tokens >= 3


def test_metrics_count_the_seconds_of_tool_scoring_and_grammars(client: TestClient) -> None:
    def seconds(name: str) -> float:
        text = client.get("/metrics").text
        return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(f"{name}_total{{model="))

    tools = [
        {"type": "function", "function": {"name": name, "parameters": {"type": "object", "properties": {}}}}
        for name in ("get_weather", "get_time")
    ]
    before = seconds("autoqwen_tool_scoring_seconds"), seconds("autoqwen_grammar_seconds")
    r = client.post(URL, json=body(max_tokens=8, tools=tools, tool_choice="required"))
    assert r.status_code == 200
    after = seconds("autoqwen_tool_scoring_seconds"), seconds("autoqwen_grammar_seconds")
    assert after[0] > before[0] and after[1] > before[1]  # two tools scored, then the call's grammar
