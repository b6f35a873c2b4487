"""Named workflows: the builtin folder, the user's workflows folder (`<data dir>/workflows`), explicit paths.

A workflow's name is its file name without `.yaml`; a user workflow never silently shadows a builtin one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from autoqwen.paths import user_workflows_dir
from autoqwen.workflows.errors import SpecError, WorkflowNotFound

__all__ = ["BUILTIN_DIR", "WorkflowEntry", "find_workflow", "list_workflows"]

log = logging.getLogger(__name__)

BUILTIN_DIR = Path(__file__).resolve().parent / "builtin"


@dataclass(frozen=True)
class WorkflowEntry:
    """A workflow file the catalog knows, with its one-line description."""

    name: str
    path: Path
    source: Literal["builtin", "user"]
    description: str
    problem: str | None = None


def list_workflows() -> list[WorkflowEntry]:
    """Every named workflow, builtins first; a user file named like a builtin is listed with its problem."""
    entries = [WorkflowEntry(p.stem, p, "builtin", _description(p)) for p in _yaml_files(BUILTIN_DIR)]
    builtin = {e.name for e in entries}
    for path in _yaml_files(user_workflows_dir()):
        problem = None
        if path.stem in builtin:
            problem = f"ignored: a builtin workflow is already named {path.stem!r}; rename the file"
        entries.append(WorkflowEntry(path.stem, path, "user", _description(path), problem))
    return entries


def find_workflow(name_or_path: str) -> Path:
    """The file of a named workflow, or the given path when it is a file."""
    path = Path(name_or_path).expanduser()
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise WorkflowNotFound(f"workflow file not found: {path}", path=path)
        return path
    for entry in list_workflows():
        if entry.name == name_or_path and entry.problem is None:
            return entry.path
    known = ", ".join(e.name for e in list_workflows() if e.problem is None)
    raise WorkflowNotFound(f"no workflow named {name_or_path!r} (known: {known}); or pass a path to a .yaml file")


def _yaml_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.yaml")) if folder.is_dir() else []


def _description(path: Path) -> str:
    from autoqwen.workflows.loader import read_yaml  # size cap and no aliases, as for a full load

    try:
        data = read_yaml(path)
    except SpecError as exc:
        return f"(unreadable: {exc})"
    text = str(data.get("description", "")) if isinstance(data, dict) else ""
    return text.strip().splitlines()[0] if text.strip() else ""
