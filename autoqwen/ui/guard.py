"""The UI's access guard, an ASGI middleware: the access token, the Host header, and cross-site writes.

- With a token, every request needs it: `Authorization: Bearer T`, or the cookie a `?token=T` link sets (the link
  then redirects to itself without the token, so it leaves the address bar).
- Without a token (loopback only), the Host header must name this machine, so a rebound DNS name cannot reach it.
- A state-changing request (any method but GET, HEAD, OPTIONS) from another site is refused: its `Sec-Fetch-Site`
  must be same-origin (or none), and its `Origin`, when sent, must be the app's own scheme, host and port.
- A body that is not a multipart upload (those routes cap their own files) may hold at most `MAX_JSON_BYTES`
  (413): by its Content-Length, and counted as it arrives (it is read here, then handed on whole).

Refusals are OpenAI-style JSON errors, like the rest of the API.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.responses import RedirectResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from autoqwen.local_llm.api_errors import APIError, error_response

__all__ = ["COOKIE", "MAX_JSON_BYTES", "AccessGuard", "GuardConfig"]

COOKIE = "autoqwen_ui_token"
MAX_JSON_BYTES = 4 * 1024 * 1024  # a workflow's YAML (256 KiB) escaped in JSON fits many times over
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})


@dataclass(frozen=True)
class GuardConfig:
    """The access token (None: loopback only, no token) and extra Host names to accept (the bound address)."""

    token: str | None = None
    hosts: tuple[str, ...] = ()


class AccessGuard:
    """Wraps the UI app; see the module docstring for what it checks."""

    def __init__(self, app: ASGIApp, config: GuardConfig) -> None:
        self.app = app
        self.config = config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            await error_response(refusal)(scope, receive, send)
            return
        token = self.config.token
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        if token is not None and hmac.compare_digest(query.get("token", "").encode(), token.encode()):
            # A `?token=` link: keep the token in a cookie and drop it from the address.
            rest = urlencode([(k, v) for k, v in query.items() if k != "token"])
            response = RedirectResponse(scope["path"] + (f"?{rest}" if rest else ""), status_code=303)
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/")
            await response(scope, receive, send)
            return
        if headers.get("content-type", "").startswith("multipart/form-data"):
            await self.app(scope, receive, send)
            return
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_JSON_BYTES:
            await error_response(_too_large())(scope, receive, send)
            return
        body = bytearray()
        while True:  # counted as it arrives (a chunked body has no Content-Length)
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left before sending its body
            body += message.get("body", b"")
            if len(body) > MAX_JSON_BYTES:
                await error_response(_too_large())(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(bytes(body), receive), send)

    def _refusal(self, scope: Scope, headers: Headers) -> APIError | None:
        host = headers.get("host", "").lower()
        if self.config.token is None and _hostname(host) not in _LOOPBACK_NAMES | set(self.config.hosts):
            return APIError(
                403, f"this UI answers only to localhost, not to host {host[:100]!r}", type="permission_error"
            )
        if self.config.token is not None and not self._authorized(headers, scope):
            return APIError(
                401,
                "this UI needs its access token: open the link with ?token=... or send Authorization: Bearer ...",
                type="authentication_error",
                code="invalid_token",
            )
        if scope["method"] not in _SAFE_METHODS and _cross_site(scope, headers, host):
            return APIError(403, "cross-site request refused", type="permission_error", code="cross_site")
        return None

    def _authorized(self, headers: Headers, scope: Scope) -> bool:
        token = (self.config.token or "").encode()
        bearer = headers.get("authorization", "")
        if bearer.lower().startswith("bearer ") and hmac.compare_digest(bearer[7:].strip().encode(), token):
            return True
        cookie = cookie_parser(headers.get("cookie", "")).get(COOKIE)  # lenient: other apps' odd cookies
        if cookie is not None and hmac.compare_digest(cookie.encode(), token):
            return True
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        return scope["method"] == "GET" and hmac.compare_digest(query.get("token", "").encode(), token)


def _too_large() -> APIError:
    message = f"the request body may hold at most {MAX_JSON_BYTES // (1024 * 1024)} MiB"
    return APIError(413, message, type="invalid_request_error", code="body_too_large")


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the body read already, then whatever the client sends next (its disconnect)."""
    pending = True

    async def replayed() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


def _hostname(host: str) -> str:
    """The name in a Host header, without its port."""
    if host.startswith("["):
        return host.split("]")[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _cross_site(scope: Scope, headers: Headers, host: str) -> bool:
    """Whether a request comes from another site, by Sec-Fetch-Site or by an Origin unlike the app's own."""
    site = headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return True
    origin = headers.get("origin")
    if origin is None:
        return False  # not a browser's cross-origin request (curl, scripts): nothing to guard
    parts = urlsplit(origin)
    return parts.scheme != scope.get("scheme", "http") or parts.netloc.lower() != host
