"""autoqwen: local multi-agent workflows on a small local chat model, with an embedded OpenAI-compatible server.

Run a workflow from Python with one import:

    from autoqwen import RunOptions, load_workflow, run_workflow

    spec = load_workflow("write-review")                    # a named workflow, or a path to a .yaml file
    result = run_workflow(spec, RunOptions(inputs={"topic": "small models"}, max_turns=2))
    print(result.status, result.session_id)                 # the session is stored: `autoqwen sessions show ID`

Subpackages, lowest layer first: `autoqwen.local_llm` (the model server), `autoqwen.skills` (typed Python tools),
`autoqwen.agents` (AutoGen agents from YAML), `autoqwen.workflows` (specs, runner, store, gallery), `autoqwen.cli`.
Importing this package is cheap: the names below load their layer on first use.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from autoqwen.workflows.runner import RunOptions, RunResult, resume_workflow, run_workflow
    from autoqwen.workflows.spec import WorkflowSpec
    from autoqwen.workflows.store import SessionStore

__all__ = [
    "RunOptions",
    "RunResult",
    "SessionStore",
    "WorkflowSpec",
    "__version__",
    "load_workflow",
    "resume_workflow",
    "run_workflow",
]

_LAZY = {
    "RunOptions": "autoqwen.workflows.runner",
    "RunResult": "autoqwen.workflows.runner",
    "resume_workflow": "autoqwen.workflows.runner",
    "run_workflow": "autoqwen.workflows.runner",
    "SessionStore": "autoqwen.workflows.store",
    "WorkflowSpec": "autoqwen.workflows.spec",
}


def load_workflow(name_or_path: str | os.PathLike[str]) -> WorkflowSpec:
    """A named workflow (see `autoqwen workflows list`) or a workflow YAML file, validated, its skills checked."""
    from autoqwen.skills import load_skills
    from autoqwen.workflows.catalog import find_workflow
    from autoqwen.workflows.loader import load_workflow as load_file

    return load_file(find_workflow(os.fspath(name_or_path)), skills=load_skills())


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import version

        return version("autoqwen")
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'autoqwen' has no attribute {name!r}")
