"""Run the OpenAI-compatible server in a background thread of this process, on a loopback port.

    with EmbeddedServer(Engine(resolve_model("auto"))) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="none")

The CLI's `chat`, the workflow runner and the tests use it, so agents always reach the model over HTTP.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING

import uvicorn

from autoqwen.local_llm.engine import Engine
from autoqwen.local_llm.model_provider import ModelProvider
from autoqwen.local_llm.server import ServerConfig, create_app

if TYPE_CHECKING:
    from autoqwen.local_llm.model_catalog import LocalModel
    from autoqwen.local_llm.model_pool import Spec

__all__ = ["EmbeddedServer"]


class EmbeddedServer:
    """The engine's server on `host:port` (port 0 picks a free one) in a daemon thread."""

    def __init__(
        self,
        engine: Engine,
        config: ServerConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        providers: Sequence[ModelProvider] = (),
        catalog: Callable[[], Sequence[LocalModel]] | None = None,
        make_engine: Callable[[Spec], Engine] | None = None,
    ) -> None:
        self.engine = engine
        self.app = create_app(engine, config, providers=providers, catalog=catalog, make_engine=make_engine)
        self._server = uvicorn.Server(
            uvicorn.Config(self.app, host=host, port=port, log_level="warning", lifespan="off")
        )
        self._thread: threading.Thread | None = None
        self.host = host
        self.port = port

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, e.g. http://127.0.0.1:40123/v1."""
        return f"http://{self.host}:{self.port}/v1"

    def start(self, timeout: float = 30.0) -> EmbeddedServer:
        """Start the engine (if needed) and the HTTP server; return once the port is listening."""
        self.engine.start()
        self._thread = threading.Thread(target=self._server.run, name="autoqwen-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the embedded server did not start on {self.host}:{self.port}")
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        """Stop serving and stop the engines (`engine`, and any loaded on demand)."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        for engine in [self.engine, *self.app.state.models.engines]:
            engine.close()

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
