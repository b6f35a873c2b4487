"""PLACEHOLDER (editor_api): filled in by the issue 20 work."""

from __future__ import annotations

from fastapi import APIRouter

from autoqwen.ui.pages import Pages

__all__ = ["router"]


def router(pages: Pages) -> APIRouter:
    """This module's routes."""
    return APIRouter(include_in_schema=False)
