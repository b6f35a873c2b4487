"""paper_search against a fake arXiv Atom API on loopback (AUTOQWEN_ARXIV_URL), and its polite rate limit."""

from __future__ import annotations

import gzip
import tracemalloc
from collections.abc import Iterator

import httpx
import pytest
from skill_sites import DATA, FakeArxiv, gzipped_zeros, serve

from autoqwen.skills.builtins import arxiv
from autoqwen.skills.builtins.arxiv import RateLimiter, paper_search, parse_feed


@pytest.fixture
def fake_arxiv(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeArxiv]:
    fake = FakeArxiv()
    with serve({"/api/query": fake}) as base:
        monkeypatch.setenv("AUTOQWEN_ARXIV_URL", f"{base}/api/query")
        monkeypatch.setattr(arxiv.ARXIV_RATE_LIMIT, "interval", 0.0)  # the limiter has its own test
        yield fake


def test_results_have_title_authors_date_abstract_and_links(fake_arxiv: FakeArxiv) -> None:
    text = paper_search("multi agent", max_results=3)
    assert text.startswith("arXiv: 3 of 21873 results for 'multi agent' (sorted by relevance)")
    assert "1. AutoGen: Enabling Next-Gen LLM Applications via Multi-Agent Conversation" in text
    assert "Authors: Qingyun Wu, Gagan Bansal, Jieyu Zhang, Yiran Wu, Beibin Li, et al. (14 authors)" in text
    assert "Published: 2023-08-16 · cs.AI" in text
    assert (
        "Abstract page: http://arxiv.org/abs/2308.08155v2" in text and "PDF: http://arxiv.org/pdf/2308.08155v2" in text
    )
    assert "3. Qwen Technical Report" in text and "Authors: Jinze Bai, Shuai Bai, Yunfei Chu, Zeyu Cui\n" in text
    first_abstract = text.split("Abstract: ", 1)[1].split("\n", 1)[0]
    assert first_abstract.endswith(" …") and len(first_abstract) <= arxiv.ABSTRACT_CHARS + 2  # trimmed


def test_the_query_is_sent_as_arxiv_expects(fake_arxiv: FakeArxiv) -> None:
    paper_search("multi agent", max_results=3, sort="submitted")
    paper_search("au:Wang AND ti:agents")
    first, second = fake_arxiv.requests
    assert first["search_query"] == ["all:multi AND all:agent"]
    assert first["max_results"] == ["3"] and first["start"] == ["0"]
    assert first["sortBy"] == ["submittedDate"] and first["sortOrder"] == ["descending"]
    assert second["search_query"] == ["au:Wang AND ti:agents"] and second["sortBy"] == ["relevance"]


def test_an_arxiv_error_feed_is_returned_as_text(fake_arxiv: FakeArxiv) -> None:
    fake_arxiv.status, fake_arxiv.body = 400, (DATA / "arxiv_error.xml").read_bytes()
    assert paper_search("x") == "Error: arXiv rejected the query: max_results must be non-negative"


def test_server_failures_and_garbage_are_returned_as_text(fake_arxiv: FakeArxiv) -> None:
    fake_arxiv.status, fake_arxiv.body = 503, b"<html>busy</html>"
    assert paper_search("x") == "Error: arXiv answered HTTP 503; try again later."
    fake_arxiv.status = 200
    assert paper_search("x").startswith("Error: arXiv sent something that is not an Atom feed")


def test_no_results_and_empty_queries(fake_arxiv: FakeArxiv) -> None:
    fake_arxiv.body = (DATA / "arxiv_search.xml").read_bytes().split(b"<entry>")[0] + b"</feed>"
    assert paper_search("zzzz qqqq").startswith("No papers found on arXiv for 'zzzz qqqq'")
    assert paper_search("   ").startswith("Error: the query is empty")
    assert len(fake_arxiv.requests) == 1


def test_an_oversized_answer_is_refused(fake_arxiv: FakeArxiv) -> None:
    feed = fake_arxiv.body
    fake_arxiv.body = feed.replace(b"<entry>", b"<entry>" + b" " * 300_000, 1)
    assert paper_search("x", max_bytes=200_000) == (
        "Error: arXiv's answer is larger than 200000 bytes; ask for fewer results."
    )
    assert paper_search("x", max_bytes=400_000).startswith("arXiv: 3 of 21873 results")


def test_a_compressed_answer_is_decoded_within_the_cap(fake_arxiv: FakeArxiv) -> None:
    fake_arxiv.body, fake_arxiv.headers = gzip.compress(fake_arxiv.body), {"Content-Encoding": "gzip"}
    assert paper_search("x").startswith("arXiv: 3 of 21873 results")
    fake_arxiv.body = gzipped_zeros(50_000_000)
    tracemalloc.start()
    try:
        text = paper_search("x")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert text == f"Error: arXiv's answer is larger than {arxiv.MAX_BYTES} bytes; ask for fewer results."
    assert peak < 15_000_000, peak
    fake_arxiv.headers = {"Content-Encoding": "gzip, gzip"}
    assert paper_search("x").startswith("Error: could not read arXiv's answer: the body is encoded 2 times")


def test_timeouts_are_returned_as_text() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        text = paper_search("agents", client=client, timeout=2.0, limiter=RateLimiter(0))
    assert text == "Error: arXiv did not answer within 2 s; try again in a minute."


def test_parse_feed_reads_every_field() -> None:
    total, papers = parse_feed((DATA / "arxiv_search.xml").read_bytes())
    assert total == 21873 and [p.arxiv_id for p in papers] == ["2308.08155v2", "2402.01680v2", "2309.16609v1"]
    survey = papers[1]
    assert survey.title == "Large Language Model based Multi-Agents: A Survey of Progress and Challenges"
    assert survey.published == "2024-01-21" and survey.updated == "2024-04-19" and survey.category == "cs.CL"
    assert survey.abstract.startswith("Large Language Models (LLMs) have achieved") and "\n" not in survey.abstract


def test_rate_limit_is_one_request_per_interval() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(round(seconds, 3))
        now[0] += seconds

    limiter = RateLimiter(3.0, clock=lambda: now[0], sleep=sleep)
    limiter.wait()
    now[0] += 1.0
    limiter.wait()
    now[0] += 5.0
    limiter.wait()
    assert slept == [2.0]
    assert arxiv.ARXIV_RATE_LIMIT.interval == 3.0
