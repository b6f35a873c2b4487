"""The model the UI's runs use: an external OpenAI server, or the embedded engine started on the first run.

model = LazyModel("auto")          # nothing loads yet
runs = LiveRuns(model.target())    # a run's thread calls model.ensure() before it starts; the first one loads
model.close()
"""

from __future__ import annotations

import socket
import threading
from typing import TYPE_CHECKING

from autoqwen.workflows.live_runs import RunTarget

if TYPE_CHECKING:
    from autoqwen.local_llm import EmbeddedServer

__all__ = ["LazyModel", "free_port"]


def free_port() -> int:
    """A loopback port that is free now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LazyModel:
    """The embedded engine's server on a loopback port chosen now, started the first time a run needs it."""

    def __init__(self, model: str = "auto") -> None:
        self.model = model
        self.port = free_port()
        self._server: EmbeddedServer | None = None
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        """`not loaded`, or the engine's state (`loading`, `ready`, `failed`)."""
        return "not loaded" if self._server is None else str(self._server.engine.state)

    def target(self) -> RunTarget:
        """Where runs send their requests: this server's port, started (and waited for) before each run."""
        return RunTarget(f"http://127.0.0.1:{self.port}/v1", wait_ready=self.ensure)

    def ensure(self) -> None:
        """Start the server (once) and wait until its model is loaded; raise the engine's error if it fails."""
        from autoqwen.local_llm import EmbeddedServer, Engine, resolve_model

        with self._lock:
            if self._server is None:
                self._server = EmbeddedServer(Engine(resolve_model(self.model)), port=self.port).start()
            server = self._server
        server.engine.wait_ready()

    def close(self) -> None:
        """Stop the server, if it was started."""
        with self._lock:
            if self._server is not None:
                self._server.stop()
                self._server = None
