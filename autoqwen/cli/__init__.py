"""The `autoqwen` command line: a thin typer layer over the library, one module per command group.

serve.py     `serve`, `chat`: the model server's commands (also `python -m autoqwen.local_llm`)
run.py       `run`, `workflows list|show|validate|schema`
skills.py    `skills list|show|add|remove|run`
sessions.py  `sessions list|show|delete`
export.py    `export`, `gallery import|export-autogen`
models.py    `models list|pull|show|rm`
mcp.py       `mcp serve`
ui.py        `ui`: the web UI (autoqwen.ui)
"""

from __future__ import annotations

from autoqwen.cli.main import app, user_facing_errors

__all__ = ["app", "user_facing_errors"]
