"""The Model page, /model: the model the runs use, its state and capabilities, and the server's live figures.

The page is rendered with the figures of the moment; static/model.js then asks GET /api/v1/model (model_api)
every few seconds and fills in each `data-field` with textContent, formatted as its `data-format` says (the same
rules as `shown` here).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from autoqwen.ui.model_api import model_status
from autoqwen.ui.pages import Pages

__all__ = ["CAPABILITIES", "FIGURES", "router", "shown"]

# (field of ModelStatus.capabilities, label)
CAPABILITIES = (
    ("function_calling", "Tool calls"),
    ("json_output", "JSON output"),
    ("structured_output", "Output held to a JSON schema"),
    ("vision", "Reads images"),
    ("family", "Model family"),
)
# (field of ServerFigures, label, format)
FIGURES = (
    ("tokens_per_second", "Tokens per second (all sequences, last 10 s)", "rate"),
    ("decode_tokens_per_second", "Tokens per second (last request)", "rate"),
    ("queue_depth", "Requests waiting", "int"),
    ("batch_size", "Sequences decoding now", "int"),
    ("requests", "HTTP requests served", "int"),
    ("prompt_tokens", "Prompt tokens", "int"),
    ("cached_prompt_tokens", "Prompt tokens from the prefix cache", "int"),
    ("prefix_cache_hit_rate", "Prefix-cache hits (share of prompt tokens)", "percent"),
    ("prefix_cache_entries", "Prefix-cache entries", "int"),
    ("prefix_cache_bytes", "Prefix-cache size", "bytes"),
    ("completion_tokens", "Completion tokens", "int"),
    ("mean_latency_s", "Mean completion time", "seconds"),
    ("mean_ttft_s", "Mean time to first token", "seconds"),
)


def shown(value: Any, fmt: str = "text") -> str:
    """A figure as the page shows it: `—` when unknown, else formatted (`rate`, `int`, `percent`, ...)."""
    if value is None or value == "":
        return "—"
    if isinstance(value, bool) or fmt == "bool":
        return "yes" if value else "no"
    if fmt == "rate":
        return f"{float(value):.1f}"
    if fmt == "int":
        return f"{int(value):,}"
    if fmt == "percent":
        return f"{float(value) * 100:.0f}%"
    if fmt == "seconds":
        return f"{float(value):.2f} s"
    if fmt == "bytes":
        return f"{float(value) / 1_048_576:.1f} MiB"
    return str(value)


def router(pages: Pages) -> APIRouter:
    """The model page's route."""
    routes = APIRouter(include_in_schema=False)

    @routes.get("/model")
    async def model_page(request: Request) -> HTMLResponse:
        status = await model_status(pages)
        figures = status.metrics.model_dump() if status.metrics is not None else {}
        return pages.page(
            request,
            "model.html",
            title="Model",
            nav="model",
            info=status,
            capabilities=[(f"capabilities.{k}", label, shown(status.capabilities.get(k))) for k, label in CAPABILITIES],
            figures=[(f"metrics.{k}", label, fmt, shown(figures.get(k), fmt)) for k, label, fmt in FIGURES],
            shown=shown,
        )

    return routes
