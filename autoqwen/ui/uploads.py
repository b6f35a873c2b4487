"""What the UI's upload routes (a skill file, a gallery import) share: the size check before any byte is read, and
the checkbox fields of their forms."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request

from autoqwen.local_llm.api_errors import APIError

__all__ = ["check_length", "form_flag"]

_TRUE = frozenset({"1", "true", "on", "yes"})


def form_flag(value: object) -> bool:
    """A form field as a checkbox: `true`, `on`, `1` or `yes` (any case) is ticked."""
    return str(value or "").strip().lower() in _TRUE


def check_length(request: Request, limit: int, *, what: str, too_large: Callable[[], APIError]) -> None:
    """Refuse an upload without a Content-Length (411, naming `what` to send) or declaring more than `limit` bytes
    (the error `too_large` makes)."""
    length = request.headers.get("content-length")
    if length is None or not length.isdigit():
        raise APIError(411, f"send {what} with a Content-Length", type="invalid_request_error")
    if int(length) > limit:
        raise too_large()
