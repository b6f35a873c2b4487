"""The web UI (`autoqwen ui`): pages to browse workflows, run one and watch it live, and read sessions.

It sits on top of every layer, beside the CLI: its pages are clients of the workflows HTTP API, mounted under /api.
"""

from autoqwen.ui.app import API_PREFIX, create_ui_app
from autoqwen.ui.errors import UIError, UnsafeBinding
from autoqwen.ui.guard import COOKIE, AccessGuard, GuardConfig
from autoqwen.ui.model import LazyModel, free_port

__all__ = [
    "API_PREFIX",
    "COOKIE",
    "AccessGuard",
    "GuardConfig",
    "LazyModel",
    "UIError",
    "UnsafeBinding",
    "create_ui_app",
    "free_port",
]
