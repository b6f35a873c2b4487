"""The skills that ship with autoqwen: `web_fetch`, `paper_search` and `make_chart`."""

from __future__ import annotations

from autoqwen.skills.builtins.arxiv import paper_search
from autoqwen.skills.builtins.chart import make_chart
from autoqwen.skills.builtins.web import web_fetch

__all__ = ["make_chart", "paper_search", "web_fetch"]
