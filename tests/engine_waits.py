"""Shared by the tests that leave a stream early: slow decode steps on the shared tiny server, and a wait on the
engine's batch.

    with slowed(tiny_server.engine):
        ...
        assert wait_for_batch(tiny_server.engine, 0, timeout=5)
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from autoqwen.local_llm import Engine


@contextmanager
def slowed(engine: Engine, step_s: float = 0.005) -> Iterator[None]:
    """Decode steps of `step_s` or more: a sequence left running would outlast a test's waits by far."""
    engine.hooks.on_step = lambda rows: time.sleep(step_s)
    try:
        yield
    finally:
        engine.hooks.on_step = None


def wait_for_batch(engine: Engine, size: int, timeout: float = 10.0) -> bool:
    """Whether the engine's batch holds `size` sequences within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while engine.batch_size != size and time.monotonic() < deadline:
        time.sleep(0.01)
    return engine.batch_size == size
