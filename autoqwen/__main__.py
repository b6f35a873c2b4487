"""`python -m autoqwen`: the same as the `autoqwen` command."""

from autoqwen.cli import app

app(prog_name="autoqwen")
