"""The skills that ship with autoqwen: `web_fetch`, `paper_search` and `make_chart`."""

from __future__ import annotations

from skills.builtins.arxiv import paper_search
from skills.builtins.chart import make_chart
from skills.builtins.web import web_fetch

__all__ = ["make_chart", "paper_search", "web_fetch"]
