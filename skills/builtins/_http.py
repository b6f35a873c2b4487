"""HTTP for the network skills: connections only to checked addresses, one deadline, bodies capped while decoding.

client = guarded_client(deadline=time.monotonic() + 20, user_agent="...")  # every hop resolved once and checked
body, truncated = read_capped(response, max_bytes=2_000_000, deadline=...)  # gzip/deflate decoded within the cap
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import httpcore
import httpx

from autoqwen.addresses import resolve

__all__ = ["ACCEPT_ENCODING", "BodyRefused", "GuardedTransport", "guarded_client", "read_capped"]

# Only codings whose output can be decoded a bounded piece at a time (zlib's max_length).
ACCEPT_ENCODING = "gzip, deflate"
_GZIP = ("gzip", "x-gzip")


class BodyRefused(Exception):
    """A response body that is not read: an unknown or stacked content-coding; the message says which."""


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read, write and TLS handshake ends by the fetch's deadline, however slow the peer."""

    def __init__(self, stream: httpcore.NetworkStream, deadline: float) -> None:
        self._stream = stream
        self._deadline = deadline

    def _timeout(self, timeout: float | None, error: type[Exception]) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise error("the fetch ran out of time")
        return min(math.inf if timeout is None else timeout, left)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, self._timeout(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, self._timeout(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None) -> Any:
        # server_hostname is the URL's name, not the pinned address: SNI and certificate checks use the name.
        tls = self._stream.start_tls(ssl_context, server_hostname, self._timeout(timeout, httpcore.ConnectTimeout))
        return _DeadlineStream(tls, self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _GuardedBackend(httpcore.NetworkBackend):
    """Resolves each host once, refuses it unless every address is allowed, and connects to a checked address."""

    def __init__(self, deadline: float) -> None:
        self._inner = httpcore.SyncBackend()
        self._deadline = deadline

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise httpcore.ConnectTimeout("the fetch ran out of time")
        limit = min(math.inf if timeout is None else timeout, left)
        try:
            addresses = resolve(host, port, timeout=limit)  # AddressRefused passes through to the caller
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        failure: Exception = httpcore.ConnectError(f"{host} has no address")
        for ip in addresses:
            left = self._deadline - time.monotonic()
            if left <= 0:
                raise httpcore.ConnectTimeout("the fetch ran out of time")
            try:
                stream = self._inner.connect_tcp(
                    str(ip), port, min(limit, left), local_address=local_address, socket_options=socket_options
                )
            except httpcore.ConnectError as exc:
                failure = exc
                continue
            return _DeadlineStream(stream, self._deadline)
        raise failure

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("unix sockets are not reachable from a skill")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


# httpcore's errors as httpx's, most specific first (httpx does the same in its own default transport).
_ERRORS: tuple[tuple[type[Exception], type[httpx.HTTPError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
)


_SOURCES = tuple(source for source, _ in _ERRORS)


@contextmanager
def _httpx_errors() -> Iterator[None]:
    try:
        yield
    except _SOURCES as exc:
        raise next(mapped for source, mapped in _ERRORS if isinstance(exc, source))(str(exc)) from exc


class _Stream(httpx.SyncByteStream):
    def __init__(self, stream: Iterable[bytes]) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        with _httpx_errors():
            yield from self._stream

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()


class GuardedTransport(httpx.BaseTransport):
    """An httpx transport that reaches only addresses `autoqwen.addresses` allows, and only until `deadline`.

    Each new connection resolves its host once, checks every address and connects to one of them, so a redirect
    to an internal host and a name that re-resolves to one later are both refused; the Host header, TLS SNI and
    certificate checks still use the URL's name. Proxies are not used: a proxy would resolve names itself.
    """

    def __init__(self, *, deadline: float, verify: bool = True) -> None:
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify),
            network_backend=_GuardedBackend(deadline),
            max_connections=4,
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _httpx_errors():
            response = self._pool.handle_request(core)
        assert isinstance(response.stream, Iterable)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_Stream(response.stream),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._pool.close()


def guarded_client(*, deadline: float, user_agent: str) -> httpx.Client:
    """An httpx.Client over a GuardedTransport that ignores proxy settings and asks for decodable codings only."""
    return httpx.Client(
        transport=GuardedTransport(deadline=deadline),
        trust_env=False,
        headers={"User-Agent": user_agent, "Accept-Encoding": ACCEPT_ENCODING},
    )


def read_capped(response: httpx.Response, *, max_bytes: int, deadline: float | None = None) -> tuple[bytes, bool]:
    """(body, truncated): at most `max_bytes` of the decoded body, decoding no more than that (a gzip bomb stops
    at the cap). More than one content-coding, or one other than gzip/deflate, is a BodyRefused; past `deadline`
    (time.monotonic) an httpx.ReadTimeout."""
    if response.is_stream_consumed:  # already in memory and decoded (an httpx.MockTransport's response)
        return response.content[:max_bytes], len(response.content) > max_bytes
    inflater = _inflater(response.headers.get("content-encoding", ""))
    body = bytearray()
    for raw in response.iter_raw():
        pending = raw
        while pending:
            if inflater is None:
                out, pending = pending, b""
            else:
                out = inflater.decompress(pending, max_bytes - len(body) + 1)  # max_length 0 would mean no limit
                pending = b"" if inflater.eof else inflater.unconsumed_tail
            body += out
            if len(body) > max_bytes:
                del body[max_bytes:]
                return bytes(body), True
        if deadline is not None and time.monotonic() > deadline:
            raise httpx.ReadTimeout("the fetch ran out of time")
    return bytes(body), False


class _Inflater:
    """zlib decoding for one gzip or deflate body; deflate comes zlib-wrapped or raw, told by its first bytes."""

    def __init__(self, coding: str) -> None:
        self._coding = coding
        self._zlib: Any = zlib.decompressobj(zlib.MAX_WBITS | 16) if coding in _GZIP else None
        self.eof = False
        self.unconsumed_tail = b""

    def decompress(self, data: bytes, max_length: int) -> bytes:
        if self._zlib is None:
            wrapped = len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
        try:
            out: bytes = self._zlib.decompress(data, max_length)
        except zlib.error as exc:
            raise httpx.DecodingError(f"the {self._coding} body is corrupt ({exc})") from None
        self.eof, self.unconsumed_tail = self._zlib.eof, self._zlib.unconsumed_tail
        return out


def _inflater(header: str) -> _Inflater | None:
    codings = [c.strip().lower() for c in header.split(",") if c.strip() and c.strip().lower() != "identity"]
    if len(codings) > 1:
        raise BodyRefused(f"the body is encoded {len(codings)} times ({header}); only one content-coding is accepted")
    if not codings:
        return None
    if codings[0] not in (*_GZIP, "deflate"):
        raise BodyRefused(f"the body is encoded as {codings[0]!r}, which cannot be decoded (only gzip and deflate)")
    return _Inflater(codings[0])
