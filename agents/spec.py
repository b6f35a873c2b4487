"""Agent and model specs, as written in workflow YAML files (validated with pydantic).

agents:
  - name: researcher                  # kind: assistant, the default
    system_message: You find papers and summarise them.
    skills: [paper_search]
    mcp: [{command: python, args: [my_server.py]}]   # MCP servers' tools too (see mcp_spec.py)
  - {name: you, kind: user_proxy, auto_reply: Go on.}
  - {name: runner, kind: code_executor, timeout_s: 30, languages: [python, bash]}
model: embedded   # or: {base_url: http://127.0.0.1:11434/v1, model: qwen:0.5b, context_window: 8192}

Each agent kind takes its own fields, so a field of another kind (`timeout_s` on an assistant) is an error.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from autoqwen.agents.mcp_spec import McpServerSpec
from autoqwen.agents.model_info import ModelInfoSpec

__all__ = [
    "AGENT_KINDS",
    "AgentSpec",
    "AssistantSpec",
    "CodeExecutorSpec",
    "EmbeddedModel",
    "ExternalModel",
    "ModelSpec",
    "UserProxySpec",
]

_SPEC = ConfigDict(extra="forbid", frozen=True)


class EmbeddedModel(BaseModel):
    """The embedded local_llm server, started in-process on a free loopback port."""

    model_config = _SPEC
    kind: Literal["embedded"] = "embedded"
    model: str = Field(default="auto", description="auto | bundled | a hub id | a model folder | a .gguf file")


class ExternalModel(BaseModel):
    """Any OpenAI-compatible server: LM Studio, Ollama, vLLM, llama.cpp."""

    model_config = _SPEC
    kind: Literal["external"] = "external"
    base_url: str = Field(description="the server's OpenAI base URL, e.g. http://127.0.0.1:1234/v1")
    model: str = Field(description="the model name the server expects")
    api_key_env: str | None = Field(default=None, description="environment variable holding the API key")
    function_calling: bool | None = Field(
        default=None, description="whether the server supports OpenAI tools; unset: what it reports, else true"
    )
    model_info: ModelInfoSpec | None = Field(
        default=None, description="AutoGen model_info fields that win over what the server reports in /v1/models"
    )
    context_window: int | None = Field(
        default=None,
        ge=256,
        description="the model's context window in tokens; unset: what the server's /v1/models says, else 4096",
    )


ModelSpec = Annotated[EmbeddedModel | ExternalModel, Field(discriminator="kind")]

AgentName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="a Python identifier")]


class _Agent(BaseModel):
    """The fields every agent kind has."""

    model_config = _SPEC
    name: AgentName
    kind: str
    description: str = Field(default="", description="what the agent does; the selector team reads it")


class AssistantSpec(_Agent):
    """An LLM agent: instructions, skills it may call as tools, sampling settings."""

    kind: Literal["assistant"] = Field(default="assistant", description="an LLM agent (the default kind)")
    system_message: str | None = Field(default=None, description="its instructions")
    skills: tuple[str, ...] = Field(default=(), description="names of skills it may call as tools")
    mcp: tuple[McpServerSpec, ...] = Field(
        default=(), description="MCP servers whose tools it may call: {command, args, env} or {url}"
    )
    reflect_on_tool_use: bool = Field(default=True, description="answer in text after its tool calls")
    max_tool_iterations: int = Field(default=1, ge=1, le=10, description="tool rounds per turn")
    temperature: float | None = Field(default=None, ge=0, le=2, description="sampling temperature")
    max_tokens: int | None = Field(default=None, ge=1, description="cap on each reply")


class UserProxySpec(_Agent):
    """A human in the team: asked for input from the CLI or the browser, or answering by itself."""

    kind: Literal["user_proxy"] = Field(description="a human")
    auto_reply: str = Field(
        default="Please continue. Reply TERMINATE when the task is done.",
        description="what it says when no human is asked (human_input never)",
    )


class CodeExecutorSpec(_Agent):
    """Runs the code blocks it receives, in the session's work folder, when the run allows code execution."""

    kind: Literal["code_executor"] = Field(description="runs the code blocks it receives")
    timeout_s: int = Field(default=60, ge=1, le=3600, description="time limit of one code block")
    languages: tuple[Literal["python", "bash", "sh"], ...] = Field(
        default=("python",), min_length=1, description="the code block languages it runs: python, bash, sh"
    )


AGENT_KINDS: dict[str, type[BaseModel]] = {
    "assistant": AssistantSpec,
    "user_proxy": UserProxySpec,
    "code_executor": CodeExecutorSpec,
}


def _default_kind(data: Any) -> Any:
    # A discriminated union needs its tag present; an agent without `kind` has always been an assistant.
    if isinstance(data, dict) and "kind" not in data:
        return {**data, "kind": "assistant"}
    return data


AgentSpec = Annotated[
    Annotated[AssistantSpec | UserProxySpec | CodeExecutorSpec, Field(discriminator="kind")],
    BeforeValidator(_default_kind),
]
"""One agent of a workflow: a union on `kind` (assistant, the default; user_proxy; code_executor)."""
