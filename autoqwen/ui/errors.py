"""Errors of the web UI (`autoqwen ui`).

UIError
 └─ UnsafeBinding   bound beyond loopback without an access token
"""

from __future__ import annotations

__all__ = ["UIError", "UnsafeBinding"]


class UIError(Exception):
    """Root of the web UI's errors; the CLI prints its message and exits 1."""


class UnsafeBinding(UIError):
    """The UI was asked to listen beyond this machine without an access token; `host` names the address."""

    def __init__(self, host: str) -> None:
        super().__init__(
            f"refusing to serve the UI on {host} without an access token: anyone who reaches the port could run "
            "workflows (pass --token or set AUTOQWEN_UI_TOKEN, or bind 127.0.0.1)"
        )
        self.host = host
