"""The skills that ship with autoqwen: `web_fetch`, `paper_search`, `make_chart` and `generate_image`."""

from __future__ import annotations

from autoqwen.skills.builtins.arxiv import paper_search
from autoqwen.skills.builtins.chart import make_chart
from autoqwen.skills.builtins.image import generate_image
from autoqwen.skills.builtins.web import web_fetch

__all__ = ["generate_image", "make_chart", "paper_search", "web_fetch"]
