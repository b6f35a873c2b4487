"""AutoGen's `model_info` for a served model: what its server reports in /v1/models, else defaults, and the
workflow's overrides on top.

    info = resolve_model_info(reported_capabilities(entry), override=ModelInfoSpec(vision=True))
    info.model_info   # {"vision": True, "function_calling": True, ...}: give it to OpenAIChatCompletionClient
    info.source       # "server", "server+workflow", "defaults" or "defaults+workflow": said in the run's log

AutoGen refuses a model name it does not know without `model_info` ("model_info is required when model name is not
a valid OpenAI model"); `autoqwen serve` reports the fields in each /v1/models entry, and so may other servers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DEFAULT_MODEL_INFO", "ModelInfoSpec", "ResolvedModelInfo", "reported_capabilities", "resolve_model_info"]

# What agents assume of a server that reports nothing: an OpenAI-compatible chat model with tools and json output.
DEFAULT_MODEL_INFO: Mapping[str, Any] = {
    "vision": False,
    "function_calling": True,
    "json_output": True,
    "family": "unknown",
    "structured_output": True,
}
_FLAGS = ("vision", "function_calling", "json_output", "structured_output")


class ModelInfoSpec(BaseModel):
    """The `model_info` of a workflow's external model: each field set here wins over what the server reports.

    model: {base_url: http://127.0.0.1:11434/v1, model: llava, model_info: {vision: true, structured_output: false}}
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    vision: bool | None = Field(default=None, description="the model reads images")
    function_calling: bool | None = Field(default=None, description="the server supports OpenAI tools")
    json_output: bool | None = Field(default=None, description='the server honours {"type": "json_object"}')
    structured_output: bool | None = Field(default=None, description="the server holds output to a JSON schema")
    family: str | None = Field(default=None, max_length=100, description='an AutoGen model family, e.g. "unknown"')

    def fields(self) -> dict[str, Any]:
        """The fields that are set."""
        return {name: value for name, value in self.model_dump().items() if value is not None}


@dataclass(frozen=True)
class ResolvedModelInfo:
    """The model_info agents use, and where it came from (for the run's log)."""

    model_info: Mapping[str, Any]
    source: str

    def describe(self) -> str:
        """One line for the log: the source and the values."""
        values = ", ".join(f"{name}={self.model_info[name]}" for name in DEFAULT_MODEL_INFO)
        return f"{values} (from {self.source})"


def reported_capabilities(entry: Mapping[str, Any] | None) -> dict[str, Any]:
    """The model_info fields a server reports in one /v1/models entry (values of the wrong type are ignored)."""
    if not entry:
        return {}
    found: dict[str, Any] = {name: entry[name] for name in _FLAGS if isinstance(entry.get(name), bool)}
    family = entry.get("family")
    if isinstance(family, str) and 0 < len(family) <= 100:
        found["family"] = family
    return found


def resolve_model_info(reported: Mapping[str, Any], override: ModelInfoSpec | None = None) -> ResolvedModelInfo:
    """Defaults, then what the server reported, then the workflow's overrides."""
    given = override.fields() if override is not None else {}
    source = "server" if reported else "defaults"
    if given:
        source += "+workflow"
    return ResolvedModelInfo({**DEFAULT_MODEL_INFO, **reported, **given}, source)
