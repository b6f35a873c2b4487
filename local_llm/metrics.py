"""Prometheus metrics of one server instance (its own registry, so several apps can live in one process)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from starlette.routing import Match

if TYPE_CHECKING:
    from autoqwen.local_llm.engine import Engine

__all__ = ["UNMATCHED", "CountRequests", "ServerMetrics"]

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)


class ServerMetrics:
    """Counters for requests, tokens and latency, rendered as Prometheus text at GET /metrics."""

    def __init__(self, engines: Callable[[], Sequence[Engine]]) -> None:
        """`engines()`: the loaded models' engines now (gauges add them up)."""
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "autoqwen_requests", "HTTP requests by route and status code", ["path", "status"], registry=r
        )
        self.prompt_tokens = Counter("autoqwen_prompt_tokens", "Prompt tokens processed", registry=r)
        self.cached_tokens = Counter(
            "autoqwen_prompt_cached_tokens", "Prompt tokens served from the prefix cache", registry=r
        )
        self.completion_tokens = Counter("autoqwen_completion_tokens", "Completion tokens generated", registry=r)
        self.latency = Histogram(
            "autoqwen_completion_seconds",
            "Chat completion latency, submit to last token",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "autoqwen_time_to_first_token_seconds",
            "Time from submit to the first generated text",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.decode_rate = Gauge(
            "autoqwen_decode_tokens_per_second",
            "Completion tokens per second of the last request",
            registry=r,
        )
        queue_depth = Gauge("autoqwen_queue_depth", "Requests waiting for the model", registry=r)
        queue_depth.set_function(lambda: sum(e.queue_depth for e in engines()))
        batch = Gauge("autoqwen_batch_size", "Sequences decoding together now", registry=r)
        batch.set_function(lambda: sum(e.batch_size for e in engines()))
        rate = Gauge("autoqwen_tokens_per_second", "Tokens generated per second, all sequences, last 10 s", registry=r)
        rate.set_function(lambda: sum(e.tokens_per_second for e in engines()))
        cache_bytes = Gauge("autoqwen_prefix_cache_bytes", "Bytes of KV states in the prefix cache", registry=r)
        cache_bytes.set_function(lambda: sum(e.prefix_cache.nbytes for e in engines()))
        cache_entries = Gauge("autoqwen_prefix_cache_entries", "Sequences in the prefix cache", registry=r)
        cache_entries.set_function(lambda: sum(len(e.prefix_cache) for e in engines()))
        ready = Gauge("autoqwen_model_ready", "1 once a model is loaded", registry=r)
        ready.set_function(lambda: float(any(e.state == "ready" for e in engines())))
        loaded = Gauge("autoqwen_models_loaded", "Models loaded and ready", registry=r)
        loaded.set_function(lambda: sum(e.state == "ready" for e in engines()))
        r.register(_WorkCollector(engines))

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


class _WorkCollector:
    """Counters of each loaded model's seconds of tool calling's extra work, labelled by model: a model's series
    ends when it unloads and starts again from 0 when it reloads."""

    def __init__(self, engines: Callable[[], Sequence[Engine]]) -> None:
        self.engines = engines

    def collect(self) -> Iterator[CounterMetricFamily]:
        scoring = CounterMetricFamily(
            "autoqwen_tool_scoring_seconds",
            "Seconds spent scoring tools to choose one (channel selection)",
            labels=["model"],
        )
        grammar = CounterMetricFamily(
            "autoqwen_grammar_seconds",
            "Seconds spent checking and compiling grammars, masking sampled tokens and forcing tokens",
            labels=["model"],
        )
        for engine in self.engines():
            work = engine.work_seconds.copy()
            scoring.add_metric([engine.model_id], work.scoring)
            grammar.add_metric([engine.model_id], work.grammar)
        yield scoring
        yield grammar


# The `path` label of a request that matches no route: random paths must not grow the series without bound.
UNMATCHED = "unmatched"


class CountRequests:
    """ASGI middleware counting requests by route template (`/v1/models/{model_id:path}`) and status code into
    `metrics.requests`; paths no route matches share the label UNMATCHED.

    A plain ASGI wrapper, not Starlette's BaseHTTPMiddleware, which relays every streamed chunk through a task and
    a memory stream (measured with benchmarks/bench_server.py: docs/benchmarks.md).
    """

    def __init__(self, app: Any, metrics: ServerMetrics, routes: Sequence[Any] = ()) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes  # the app's routes, to label a request refused before routing (401, 413)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # unless a response starts

        async def send_and_note(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            self.metrics.requests.labels(self._route(scope), str(status)).inc()

    def _route(self, scope: dict[str, Any]) -> str:
        route = scope.get("route")
        if route is None:
            route = next((r for r in self.routes if r.matches(scope)[0] != Match.NONE), None)
        path = getattr(route, "path", None)
        return path if isinstance(path, str) else UNMATCHED
