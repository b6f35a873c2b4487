"""Agent and model specs, as written in workflow YAML files (validated with pydantic).

agents:
  - name: researcher
    kind: assistant
    system_message: You find papers and summarise them.
    skills: [paper_search]
model: embedded                       # or: {base_url: http://127.0.0.1:11434/v1, model: qwen:0.5b}
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["AgentSpec", "EmbeddedModel", "ExternalModel", "ModelSpec"]

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
    function_calling: bool = Field(default=True, description="whether the server supports OpenAI tools")


ModelSpec = Annotated[EmbeddedModel | ExternalModel, Field(discriminator="kind")]

AgentName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="a Python identifier")]


class AgentSpec(BaseModel):
    """One agent of a workflow."""

    model_config = _SPEC
    name: AgentName
    kind: Literal["assistant", "user_proxy", "code_executor"] = Field(
        default="assistant", description="assistant (an LLM agent), user_proxy (a human), code_executor"
    )
    description: str = Field(default="", description="what the agent does; the selector team reads it")
    system_message: str | None = Field(default=None, description="assistant: its instructions")
    skills: tuple[str, ...] = Field(default=(), description="assistant: names of skills it may call as tools")
    reflect_on_tool_use: bool = Field(default=True, description="assistant: answer in text after its tool calls")
    max_tool_iterations: int = Field(default=1, ge=1, le=10, description="assistant: tool rounds per turn")
    temperature: float | None = Field(default=None, ge=0, le=2, description="assistant: sampling temperature")
    max_tokens: int | None = Field(default=None, ge=1, description="assistant: cap on each reply")
    auto_reply: str = Field(
        default="Please continue. Reply TERMINATE when the task is done.",
        description="user_proxy: what it says when no human is asked (human_input never)",
    )
    timeout_s: int = Field(default=60, ge=1, le=3600, description="code_executor: time limit of one code block")
