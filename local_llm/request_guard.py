"""Checks every request passes before the app reads its body: the Host header, the API key and the body size.

    app = RequestGuard(app, config)

A plain ASGI middleware, because a FastAPI dependency runs only after the body has been read and parsed: an
unauthenticated or oversized upload is refused from its headers, and the connection closed, without reading it.
"""

from __future__ import annotations

import ipaddress
import secrets
from typing import Any

from autoqwen.local_llm.api_errors import APIError, error_response
from autoqwen.local_llm.server_config import ServerConfig

__all__ = ["LOOPBACK_HOSTS", "RequestGuard"]

# Host names a loopback server answers to whatever the configuration says (any port).
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
# Paths behind the API key, when one is set.
_KEYED_PREFIXES = ("/v1/", "/metrics", "/api/ps")
# Sent with a refusal whose body is left unread, so the server drops the upload instead of draining it.
_CLOSE = {"Connection": "close"}


class RequestGuard:
    """ASGI middleware refusing, from the headers alone, a foreign Host on a loopback connection (400), a missing
    or wrong API key on /v1/*, /metrics and /api/ps (401) and a body over `config.max_body_bytes` (413, also
    counted for chunked bodies, which are read here up to the limit and handed on whole)."""

    def __init__(self, app: Any, config: ServerConfig) -> None:
        self.app = app
        self.config = config
        self.keys = [key.encode() for key in config.api_keys]
        self.extra_hosts = {_host_name(h) for h in config.allowed_hosts}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            headers.setdefault(name.lower(), value)
        error = self._check_headers(scope, headers)
        if error is not None:
            await error_response(error)(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left before sending its body
            body += message.get("body", b"")
            if len(body) > self.config.max_body_bytes:
                await error_response(self._too_large())(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()  # a disconnect, which streams listen for

        await self.app(scope, replay, send)

    def _check_headers(self, scope: dict[str, Any], headers: dict[bytes, bytes]) -> APIError | None:
        server = scope.get("server")
        host = headers.get(b"host")
        if server and host is not None and "*" not in self.extra_hosts and _is_loopback(server[0]):
            name = _host_name(host.decode("latin-1"))
            if name not in LOOPBACK_HOSTS and name != _host_name(server[0]) and name not in self.extra_hosts:
                return APIError(
                    400,
                    f"Host {name[:100]!r} is not served here: a loopback server answers to localhost, 127.0.0.1 and "
                    "[::1] (add names with --allow-host)",
                    type="invalid_request_error",
                    code="invalid_host",
                    headers=_CLOSE,
                )
        if self.keys and scope["path"].startswith(_KEYED_PREFIXES):
            scheme, _, token = headers.get(b"authorization", b"").partition(b" ")
            # Every key compared (each in constant time), so the time taken does not say which one nearly matched.
            matches = [secrets.compare_digest(token.strip(), key) for key in self.keys]
            if scheme.lower() != b"bearer" or not any(matches):
                return APIError(
                    401,
                    "invalid or missing API key: send `Authorization: Bearer <key>`",
                    type="invalid_request_error",
                    code="invalid_api_key",
                    headers=_CLOSE,
                )
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit():
                return APIError(
                    400, "Content-Length is not a number", type="invalid_request_error", code="invalid_length"
                )
            if len(length) > 18 or int(length) > self.config.max_body_bytes:
                return self._too_large()
        return None

    def _too_large(self) -> APIError:
        return APIError(
            413,
            f"the request body is larger than this server accepts ({self.config.max_body_bytes} bytes)",
            type="invalid_request_error",
            code="request_too_large",
            headers=_CLOSE,
        )


def _host_name(host: str) -> str:
    """The name in a Host header or address, lower-case, without port, brackets or a trailing dot."""
    host = host.strip().lower()
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else host[1:]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"
