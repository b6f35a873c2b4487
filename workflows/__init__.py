"""Named YAML workflows, their runner, the session store, the gallery export, and the `autoqwen` CLI."""

from __future__ import annotations

__all__: list[str] = []
