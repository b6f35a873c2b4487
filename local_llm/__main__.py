"""`python -m autoqwen.local_llm`: the OpenAI-compatible model server alone, with `autoqwen serve`'s options.

An entry point, not library code (nothing imports it), so it may use the CLI's serve command, which loads only
this package: none of the agent layers.
"""

from __future__ import annotations

import typer

from autoqwen.cli.serve import serve

typer.run(serve)
