"""Pluggable Python skills: typed functions that agents call as tools.

Filled in by the skills issue: the `@skill` decorator, discovery (builtins, entry points, user folder).
"""

from __future__ import annotations

__all__: list[str] = []
