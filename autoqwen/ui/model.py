"""The model the UI's runs use: an external OpenAI server, or the embedded engine started on the first run.

model = LazyModel("auto")          # nothing loads yet
runs = LiveRuns(model.target())    # a run's thread calls model.ensure() before it starts; the first one loads
model.start()                      # or load now, in the background (the Model page's "Load now")
model.state, model.load_stage      # "loading", "reading weights"
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
        self._loader: threading.Thread | None = None
        # Set when starting failed before the engine existed (the model could not be resolved, the port was taken).
        self._failure: str | None = None

    @property
    def state(self) -> str:
        """`not loaded`, `loading` (also while the server starts), or the engine's state (`ready`, `failed`)."""
        if self._server is not None:
            return str(self._server.engine.state)
        if self._failure is not None:
            return "failed"
        return "loading" if self._loader is not None and self._loader.is_alive() else "not loaded"

    @property
    def load_stage(self) -> str:
        """What the load is doing now (the engine's stage: `reading weights`, ..., `done`), or `starting`."""
        if self._server is not None:
            return str(self._server.engine.load_stage)
        return "starting" if self.state == "loading" else ""

    @property
    def error(self) -> str | None:
        """Why loading failed, or None."""
        if self._server is not None and self._server.engine.error is not None:
            return str(self._server.engine.error)
        return self._failure

    @property
    def model_id(self) -> str:
        """The served model's id once the engine exists, else the name it was asked for (`auto`, a path)."""
        return self._server.engine.model_id if self._server is not None else self.model

    @property
    def context_length(self) -> int | None:
        """The model's context window in tokens, once loaded."""
        return (self._server.engine.context_length or None) if self._server is not None else None

    def target(self) -> RunTarget:
        """Where runs send their requests: this server's port, started (and waited for) before each run."""
        return RunTarget(f"http://127.0.0.1:{self.port}/v1", wait_ready=self.ensure)

    def ensure(self) -> None:
        """Start the server (once) and wait until its model is loaded; raise the engine's error if it fails."""
        from autoqwen.local_llm import EmbeddedServer, Engine, resolve_model

        with self._lock:
            if self._server is None:
                try:
                    self._server = EmbeddedServer(Engine(resolve_model(self.model)), port=self.port).start()
                except Exception as exc:
                    self._failure = f"{type(exc).__name__}: {exc}"
                    raise
                self._failure = None
            server = self._server
        server.engine.wait_ready()

    def start(self) -> None:
        """Load in a background thread, now, without waiting; after a failed load, try again; else a no-op."""
        with self._lock:
            if self._server is not None and self._server.engine.state == "failed":
                self._server.stop()  # its engine gave up: a fresh one reads the files again (they may be fixed)
                self._server = None
            if self._server is not None or (self._loader is not None and self._loader.is_alive()):
                return
            self._failure = None
            self._loader = threading.Thread(target=self._load, name="autoqwen-ui-load", daemon=True)
            self._loader.start()

    def _load(self) -> None:
        try:
            self.ensure()
        except Exception as exc:  # the engine keeps its own error; a start that failed earlier is noted here
            if self._server is None and self._failure is None:
                self._failure = f"{type(exc).__name__}: {exc}"

    def close(self) -> None:
        """Stop the server, if it was started."""
        with self._lock:
            if self._server is not None:
                self._server.stop()
                self._server = None
