"""`python -m autoqwen`: the same as the `autoqwen` command."""

from __future__ import annotations

from autoqwen.cli import app

app(prog_name="autoqwen")
