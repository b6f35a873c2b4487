"""Every builtin workflow run to its end on the real bundled model; the web is loopback fixtures only."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from skill_sites import ARTICLE, DATA, FakeArxiv, send, serve

from autoqwen.local_llm import EmbeddedServer
from autoqwen.skills import load_skills
from autoqwen.workflows.catalog import find_workflow
from autoqwen.workflows.loader import load_workflow
from autoqwen.workflows.records import Message
from autoqwen.workflows.runner import RunOptions, RunResult, run_workflow
from autoqwen.workflows.store import SessionStore

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def web() -> Iterator[str]:
    """A loopback site with one article, and a fake arXiv whose abs links point back at it."""
    routes = {"/article.html": lambda h: send(h, 200, ARTICLE.encode(), "text/html; charset=utf-8")}
    with serve(routes) as base:
        arxiv = FakeArxiv()
        arxiv.body = (DATA / "arxiv_search.xml").read_bytes().replace(b"http://arxiv.org/abs/", f"{base}/abs/".encode())
        routes["/api/query"] = arxiv
        for n in ("2308.08155v2", "2308.08155"):
            routes[f"/abs/{n}"] = routes["/article.html"]
        yield base


def run(name: str, server: EmbeddedServer, **options: object) -> tuple[RunResult, list[Message]]:
    spec = load_workflow(find_workflow(name), skills=load_skills())
    store = SessionStore()
    result = run_workflow(spec, RunOptions(base_url=server.base_url, seed=0, **options), store=store)  # type: ignore[arg-type]
    messages = store.get_messages(result.session_id)
    print(f"\n{name}: {result}")  # the closing note's figures come from these lines (pytest -s)
    return result, messages


def calls(messages: list[Message], tool: str) -> list[dict[str, object]]:
    return [
        json.loads(str(c["arguments"]))
        for m in messages
        if m.type == "tool_call"
        for c in m.content
        if isinstance(c, dict) and c["name"] == tool
    ]


def test_web_summary_fetches_the_page_and_summarises(bundled_server: EmbeddedServer, web: str) -> None:
    result, messages = run("web-summary", bundled_server, inputs={"url": f"{web}/article.html"})
    assert result.status == "finished" and not result.by_cap
    assert calls(messages, "web_fetch"), "the summarizer should call web_fetch"
    assert messages[-1].source == "summarizer" and messages[-1].type == "text" and messages[-1].text().strip()


def test_research_searches_reads_and_writes(
    bundled_server: EmbeddedServer, web: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTOQWEN_ARXIV_URL", f"{web}/api/query")
    result, messages = run("research", bundled_server, inputs={"topic": "multi-agent LLM frameworks"})
    assert result.status == "finished" and not result.by_cap
    assert calls(messages, "paper_search") and calls(messages, "web_fetch")
    # The reader fetched a paper the searcher really found (its link points at the loopback site), not a made-up URL.
    fetched = [str(c["url"]) for c in calls(messages, "web_fetch")]
    assert any(url.startswith(f"{web}/abs/") for url in fetched), fetched
    results = [c for m in messages if m.type == "tool_result" for c in m.content if isinstance(c, dict)]
    assert any("AutoGen" in str(r["content"]) for r in results)
    assert messages[-1].source == "writer" and messages[-1].text().strip()


def test_write_review_runs_offline_to_its_cap(bundled_server: EmbeddedServer) -> None:
    result, messages = run("write-review", bundled_server, max_turns=2)
    assert result.status == "finished" and result.turns == 2
    assert [m.source for m in messages] == ["user", "writer", "critic"]


def test_code_executor_refuses_without_opt_in(bundled_server: EmbeddedServer) -> None:
    result, messages = run("code", bundled_server, max_turns=2)
    assert result.status == "finished"
    executor = [m for m in messages if m.source == "executor"]
    assert executor and ("--execute-code" in executor[0].text() or "No code blocks" in executor[0].text())


def test_code_runs_when_opted_in(bundled_server: EmbeddedServer) -> None:
    result, messages = run("code", bundled_server, max_turns=2, execute_code=True)
    assert result.status == "finished"
    executor = [m for m in messages if m.source == "executor"]
    assert executor and "--execute-code" not in executor[0].text()


def test_embedded_server_path_starts_its_own_model(tmp_path: Path) -> None:
    spec = load_workflow(find_workflow("write-review"), skills=load_skills())
    loaded: list[str] = []
    options = RunOptions(model="bundled", max_turns=1, seed=0, on_loading=lambda engine: loaded.append(engine.model_id))
    result = run_workflow(spec, options, store=SessionStore())
    assert loaded == ["SmolLM2-135M-Instruct"] and result.turns == 1 and result.status == "finished"


def test_second_load_uses_the_converted_cache(bundled_server: EmbeddedServer, _model_cache: Path) -> None:
    from autoqwen.local_llm import Engine, SamplingParams, resolve_model

    assert bundled_server.engine.loaded_from is not None
    cached = [p for p in _model_cache.iterdir() if p.name.startswith("SmolLM2-135M-Instruct")]
    assert len(cached) == 1 and (cached[0] / "model.safetensors").is_file()
    engine = Engine(resolve_model("bundled")).start().wait_ready(300)
    try:
        assert engine.loaded_from == cached[0]
        prompt = [{"role": "user", "content": "What is the capital of France?"}]
        params = SamplingParams(max_tokens=12, temperature=0)
        fresh = bundled_server.engine.submit(bundled_server.engine.encode_chat(prompt), params).text()
        assert engine.encode_chat(prompt) == bundled_server.engine.encode_chat(prompt)
        assert engine.submit(engine.encode_chat(prompt), params).text() == fresh
    finally:
        engine.close()
