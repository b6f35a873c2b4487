"""AutoGen agents (assistant, user proxy, code executor) and model clients built from YAML specs.

Filled in by the agents/workflows issue; agents reach the model only over the OpenAI HTTP API.
"""

from __future__ import annotations

__all__: list[str] = []
