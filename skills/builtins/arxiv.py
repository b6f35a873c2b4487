"""The `paper_search` skill: academic papers from the arXiv Atom API (base URL from `AUTOQWEN_ARXIV_URL`)."""

from __future__ import annotations

import os
import re
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Annotated, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field

from autoqwen.skills._schema import Injected
from autoqwen.skills._skill import skill
from autoqwen.skills.builtins._http import ACCEPT_ENCODING, BodyRefused, read_capped

__all__ = [
    "ARXIV_RATE_LIMIT",
    "DEFAULT_ARXIV_URL",
    "MAX_BYTES",
    "Paper",
    "QueryRejected",
    "RateLimiter",
    "arxiv_url",
    "format_papers",
    "paper_search",
    "parse_feed",
]

DEFAULT_ARXIV_URL = "https://export.arxiv.org/api/query"
DEFAULT_TIMEOUT = 20.0
MAX_BYTES = 2_000_000  # 20 results with full abstracts are well under 100 kB
ABSTRACT_CHARS = 600
_NS = {
    "atom": "http://www.w3.org/2005/Atom",
    "arxiv": "http://arxiv.org/schemas/atom",
    "opensearch": "http://a9.com/-/spec/opensearch/1.1/",
}
_SORT_BY = {"relevance": "relevance", "submitted": "submittedDate", "updated": "lastUpdatedDate"}
_FIELD_PREFIX = re.compile(r"\b(ti|au|abs|co|jr|cat|rn|id|all):")


class QueryRejected(ValueError):
    """arXiv answered with an error entry (a query it cannot run); the message says why."""


class RateLimiter:
    """At most one call per `interval` seconds across the threads of a process: `RateLimiter(3.0).wait()`."""

    def __init__(
        self,
        interval: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = interval
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next = float("-inf")

    def wait(self) -> None:
        """Block until the next call is allowed, then claim it."""
        with self._lock:
            delay = self._next - self._clock()
            if delay > 0:
                self._sleep(delay)
            self._next = self._clock() + self.interval


# arXiv asks API clients for no more than one request every three seconds.
ARXIV_RATE_LIMIT = RateLimiter(3.0)


class Paper(BaseModel):
    """One arXiv search result."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    arxiv_id: str
    title: str
    authors: list[str]
    published: str
    updated: str
    abstract: str
    abs_url: str
    pdf_url: str | None
    category: str | None


def arxiv_url() -> str:
    """The arXiv API endpoint: `AUTOQWEN_ARXIV_URL` when set (tests point it at a loopback fixture)."""
    return os.environ.get("AUTOQWEN_ARXIV_URL") or DEFAULT_ARXIV_URL


@skill
def paper_search(
    query: Annotated[str, "Words to search for in titles, abstracts and authors, e.g. 'multi-agent LLM'"],
    max_results: Annotated[int, "How many papers to return", Field(ge=1, le=20)] = 5,
    sort: Annotated[Literal["relevance", "submitted", "updated"], "Best match first, or newest first"] = "relevance",
    *,
    client: Injected[httpx.Client | None] = None,
    timeout: Injected[float] = DEFAULT_TIMEOUT,
    limiter: Injected[RateLimiter | None] = None,
    max_bytes: Injected[int] = MAX_BYTES,
) -> str:
    """Search arXiv for academic papers; returns titles, authors, dates, abstracts and links."""
    words = query.split()
    if not words:
        return "Error: the query is empty; give a few words to search for."
    search = query if _FIELD_PREFIX.search(query) else " AND ".join(f"all:{w}" for w in words)
    params: dict[str, str | int] = {"search_query": search, "start": 0, "max_results": max_results}
    params |= {"sortBy": _SORT_BY[sort], "sortOrder": "descending"}
    http = client or httpx.Client(headers={"User-Agent": "autoqwen-paper-search/0.1"})
    (limiter or ARXIV_RATE_LIMIT).wait()
    deadline = time.monotonic() + timeout
    headers = {"Accept-Encoding": ACCEPT_ENCODING}
    try:
        with http.stream(
            "GET", arxiv_url(), params=params, headers=headers, timeout=timeout, follow_redirects=True
        ) as response:
            status = response.status_code
            body, truncated = read_capped(response, max_bytes=max_bytes, deadline=deadline)
    except httpx.TimeoutException:
        return f"Error: arXiv did not answer within {timeout:g} s; try again in a minute."
    except BodyRefused as exc:
        return f"Error: could not read arXiv's answer: {exc}."
    except httpx.HTTPError as exc:
        return f"Error: could not reach arXiv ({type(exc).__name__}: {exc}); try again later."
    finally:
        if client is None:
            http.close()
    if truncated:
        return f"Error: arXiv's answer is larger than {max_bytes} bytes; ask for fewer results."
    try:
        total, papers = parse_feed(body)
    except QueryRejected as exc:
        return f"Error: {exc}"
    except ValueError as exc:
        if status >= 400:
            return f"Error: arXiv answered HTTP {status}; try again later."
        return f"Error: {exc}"
    if status >= 400:
        return f"Error: arXiv answered HTTP {status}; try again later."
    if not papers:
        return f"No papers found on arXiv for {query!r}; try fewer or broader words."
    return format_papers(papers, query=query, total=total, sort=sort)


def parse_feed(xml: bytes) -> tuple[int | None, list[Paper]]:
    """(total results, papers) from an arXiv Atom response; an arXiv error entry or non-Atom body is a ValueError."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise ValueError(f"arXiv sent something that is not an Atom feed ({exc})") from None
    if root.tag != f"{{{_NS['atom']}}}feed":
        raise ValueError("arXiv sent something that is not an Atom feed")
    total_text = root.findtext("opensearch:totalResults", namespaces=_NS)
    total = int(total_text) if total_text and total_text.strip().isdigit() else None
    papers = []
    for entry in root.findall("atom:entry", _NS):
        entry_id = _text(entry, "atom:id")
        if "/api/errors" in entry_id:
            raise QueryRejected(f"arXiv rejected the query: {_text(entry, 'atom:summary')}")
        links = {link.get("title") or link.get("rel"): link.get("href", "") for link in entry.findall("atom:link", _NS)}
        category = entry.find("arxiv:primary_category", _NS)
        papers.append(
            Paper(
                arxiv_id=entry_id.rsplit("/abs/", 1)[-1],
                title=_text(entry, "atom:title"),
                authors=[_squash(a.findtext("atom:name", "", _NS)) for a in entry.findall("atom:author", _NS)],
                published=_text(entry, "atom:published")[:10],
                updated=_text(entry, "atom:updated")[:10],
                abstract=_text(entry, "atom:summary"),
                abs_url=links.get("alternate") or entry_id,
                pdf_url=links.get("pdf"),
                category=category.get("term") if category is not None else None,
            )
        )
    return total, papers


def format_papers(papers: list[Paper], *, query: str, total: int | None, sort: str = "relevance") -> str:
    """A numbered, model-friendly list of papers, each abstract trimmed to a few sentences."""
    of_total = f" of {total}" if total is not None else ""
    lines = [f"arXiv: {len(papers)}{of_total} results for {query!r} (sorted by {sort})"]
    for number, paper in enumerate(papers, 1):
        authors = ", ".join(paper.authors[:5]) + (
            f", et al. ({len(paper.authors)} authors)" if len(paper.authors) > 5 else ""
        )
        dated = paper.published + (f" · {paper.category}" if paper.category else "")
        lines += [
            "",
            f"{number}. {paper.title}",
            f"   Authors: {authors}",
            f"   Published: {dated}",
            f"   Abstract: {_trim(paper.abstract, ABSTRACT_CHARS)}",
            f"   Abstract page: {paper.abs_url}",
        ]
        if paper.pdf_url:
            lines.append(f"   PDF: {paper.pdf_url}")
    return "\n".join(lines)


def _text(entry: ET.Element, path: str) -> str:
    return _squash(entry.findtext(path, "", _NS))


def _squash(text: str) -> str:
    return " ".join(text.split())


def _trim(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return cut.rstrip(",;:") + " …"
