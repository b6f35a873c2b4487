"""The `web_fetch` skill: a web page's main content as Markdown, in pieces the model can page through."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated

import httpx
from pydantic import Field

from autoqwen.addresses import AddressRefused, check_host
from autoqwen.skills._schema import Injected
from autoqwen.skills._skill import skill
from autoqwen.skills.builtins._html import html_to_markdown
from autoqwen.skills.builtins._http import ACCEPT_ENCODING, BodyRefused, guarded_client, read_capped

__all__ = ["DEFAULT_TIMEOUT", "MAX_BYTES", "MAX_REDIRECTS", "USER_AGENT", "Page", "download", "web_fetch"]

DEFAULT_TIMEOUT = 20.0
MAX_BYTES = 2_000_000
MAX_REDIRECTS = 5
USER_AGENT = "autoqwen-web-fetch/0.1 (a local research assistant)"

_HTML_TYPES = ("text/html", "application/xhtml+xml")
_TEXT_TYPES = ("application/json", "application/xml", "application/javascript", "application/x-yaml")


class _FetchProblem(Exception):
    """A failure the model can act on; web_fetch returns its message instead of raising."""


@dataclass(frozen=True)
class Page:
    """A downloaded page: final URL (after redirects), media type, charset and at most `max_bytes` of body."""

    url: str
    media_type: str
    charset: str | None
    body: bytes
    truncated: bool

    @property
    def is_html(self) -> bool:
        """Whether the body is HTML, by header or, without one, by its first bytes."""
        if self.media_type:
            return self.media_type in _HTML_TYPES
        head = self.body[:512].lstrip().lower()
        return head.startswith((b"<!doctype html", b"<html"))


@skill
def web_fetch(
    url: Annotated[str, "The http:// or https:// address of the page", Field(json_schema_extra={"format": "uri"})],
    max_length: Annotated[int, "The most characters to return", Field(ge=1, le=100_000)] = 5000,
    start_index: Annotated[int, "Where to start reading, to continue a long page", Field(ge=0)] = 0,
    *,
    client: Injected[httpx.Client | None] = None,
    timeout: Injected[float] = DEFAULT_TIMEOUT,
    max_bytes: Injected[int] = MAX_BYTES,
    max_redirects: Injected[int] = MAX_REDIRECTS,
) -> str:
    """Fetch a web page and return its main content as Markdown; long pages come in pieces (use start_index)."""
    try:
        page = download(url, client=client, timeout=timeout, max_bytes=max_bytes, max_redirects=max_redirects)
    except _FetchProblem as exc:
        return f"Error: {exc}"
    if page.is_html:
        text = html_to_markdown(page.body, base_url=page.url, charset=page.charset)
    else:
        text = page.body.decode(page.charset or "utf-8", errors="replace").strip()
    return _window(text, page, max_length=max_length, start_index=start_index)


def download(
    url: str,
    *,
    client: httpx.Client | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    max_bytes: int = MAX_BYTES,
    max_redirects: int = MAX_REDIRECTS,
) -> Page:
    """GET a text page within the limits (scheme, public addresses, redirects, bytes, one deadline for it all);
    failures raise `_FetchProblem`.

    Without `client`, every hop connects only to addresses `autoqwen.addresses` allows (resolved once, pinned);
    an injected client connects its own way, and only the URLs' hosts are checked (no DNS).
    """
    current = _checked(url)
    deadline = time.monotonic() + timeout
    http = client or guarded_client(deadline=deadline, user_agent=USER_AGENT)
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": ACCEPT_ENCODING}
    try:
        for _ in range(max_redirects + 1):
            left = deadline - time.monotonic()
            if left <= 0:
                raise httpx.TimeoutException("the fetch ran out of time")
            request = http.build_request("GET", current, headers=headers, timeout=left)
            response = http.send(request, stream=True, follow_redirects=False)
            try:
                if response.is_redirect:
                    current = _checked(str(response.url.join(response.headers["location"])))
                    continue
                return _read(response, deadline=deadline, max_bytes=max_bytes)
            finally:
                response.close()
        raise _FetchProblem(f"{url} redirected more than {max_redirects} times (a redirect loop?); try another address")
    except httpx.TimeoutException:
        raise _FetchProblem(
            f"timed out after {timeout:g} s fetching {current}; the site is slow or down, try again later"
        ) from None
    except AddressRefused as exc:
        raise _FetchProblem(f"refused to fetch {current}: {exc}") from None
    except BodyRefused as exc:
        raise _FetchProblem(f"could not read {current}: {exc}") from None
    except httpx.HTTPError as exc:
        raise _FetchProblem(f"could not fetch {current}: {type(exc).__name__}: {exc}") from None
    finally:
        if client is None:
            http.close()


def _checked(url: str) -> str:
    try:
        parsed = httpx.URL(url.strip())
    except httpx.InvalidURL as exc:
        raise _FetchProblem(f"{url!r} is not a valid URL ({exc})") from None
    if not parsed.scheme:
        raise _FetchProblem(f"{url!r} has no scheme; start it with https:// or http://")
    if parsed.scheme not in ("http", "https"):
        raise _FetchProblem(f"only http:// and https:// URLs can be fetched, not {url!r}")
    if not parsed.host:
        raise _FetchProblem(f"{url!r} has no host name")
    try:
        check_host(parsed.host)
    except AddressRefused as exc:
        raise _FetchProblem(f"refused to fetch {url}: {exc}") from None
    return str(parsed)


def _read(response: httpx.Response, *, deadline: float, max_bytes: int) -> Page:
    url = str(response.url)
    if response.status_code >= 400:
        raise _FetchProblem(f"HTTP {response.status_code} {response.reason_phrase} for {url}; {_hint(response)}")
    media_type = response.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type and not _is_text(media_type):
        raise _FetchProblem(f"{url} is {media_type}, not a web page or text; web_fetch reads HTML and text only")
    body, truncated = read_capped(response, max_bytes=max_bytes, deadline=deadline)
    if not media_type and b"\x00" in body[:1024]:
        raise _FetchProblem(f"{url} looks like a binary file, not a web page or text")
    return Page(url=url, media_type=media_type, charset=response.charset_encoding, body=body, truncated=truncated)


def _is_text(media_type: str) -> bool:
    return (
        media_type.startswith("text/")
        or media_type in (*_HTML_TYPES, *_TEXT_TYPES)
        or media_type.endswith(("+json", "+xml"))
    )


def _hint(response: httpx.Response) -> str:
    code = response.status_code
    if code in (401, 403):
        return "the site refuses access; try another source"
    if code in (404, 410):
        return "the page does not exist; check the address"
    if code == 429:
        return "too many requests; wait before trying again"
    if code >= 500:
        return "the server failed; try again later"
    return "the request was refused"


def _window(text: str, page: Page, *, max_length: int, start_index: int) -> str:
    total = len(text)
    if total == 0:
        return f"{page.url} has no readable text (it may need JavaScript)."
    if start_index >= total:
        return f"Error: start_index {start_index} is past the end of the content ({total} characters)."
    end = min(start_index + max_length, total)
    span = f" (characters {start_index}-{end} of {total})" if start_index or end < total else ""
    parts = [f"Contents of {page.url}{span}:", "", text[start_index:end]]
    if end < total:
        parts += ["", f"[Truncated. Call web_fetch with start_index={end} to read more.]"]
    if page.truncated:
        parts += ["", f"[The page is larger than {len(page.body)} bytes; only that much was downloaded.]"]
    return "\n".join(parts)
