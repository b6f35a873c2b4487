"""AutoGen Studio / AgentChat team JSON into a workflow YAML: `autoqwen workflows import FILE.json`.

    result = import_team_file(Path("team.json"), name="my-team")   # writes <data dir>/workflows/my-team.yaml
    result.notes                                                   # what could not be mapped, one line each

The file is untrusted: it is read as data (size capped, JSON only), never run. Nothing in it is exec'd or imported:
a tool is mapped to the installed skill of the same name, and a tool given only as source code is named in a note
and left out (AutoGen Studio itself stopped running those). Its API keys are not copied, and code execution stays
off whatever it says. Errors name the file and the JSON path of the problem.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from autoqwen.paths import user_workflows_dir
from autoqwen.skills import SkillRegistry
from autoqwen.workflows.autogen_mapping import ImportedTeam, slug, team_to_spec
from autoqwen.workflows.catalog import BUILTIN_DIR
from autoqwen.workflows.errors import InteropError
from autoqwen.workflows.loader import read_bounded
from autoqwen.workflows.spec import WorkflowSpec

__all__ = ["MAX_COMPONENT_BYTES", "ImportedTeam", "import_team_file", "team_to_spec", "workflow_yaml"]

MAX_COMPONENT_BYTES = 4 * 1024 * 1024
"""A team or gallery file larger than this is refused (AutoGen Studio's own default gallery is ~60 KiB)."""


def import_team_file(
    path: Path,
    *,
    name: str | None = None,
    team: str | None = None,
    skills: SkillRegistry | None = None,
    folder: Path | None = None,
    replace: bool = False,
) -> ImportedTeam:
    """Read a team component or a gallery file (its team labelled `team`), and write the workflow YAML into
    `folder` (the user workflows folder by default) as `<name>.yaml`."""
    data = _read(path)
    component, where = _choose(data, path, team)
    imported = team_to_spec(component, name=name, skills=skills, where=where, path=path)
    spec = imported.spec
    if (BUILTIN_DIR / f"{spec.name}.yaml").is_file():
        raise InteropError(f"{path}: a builtin workflow is named {spec.name!r}: pass --name NAME", path=path)
    target = (folder or user_workflows_dir()) / f"{spec.name}.yaml"
    if target.exists() and not replace:
        raise InteropError(f"{target} exists: pass --name NAME, or --replace to overwrite it", path=path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=target.parent, suffix=".tmp", delete=False) as out:
        out.write(workflow_yaml(spec))
    os.replace(out.name, target)
    imported.path = target
    return imported


def workflow_yaml(spec: WorkflowSpec) -> str:
    """The workflow as YAML, fields left at their defaults left out; it loads back to an equal spec."""
    data = spec.model_dump(mode="json", exclude_defaults=True)
    if "model" in data:  # the union needs its tag, which exclude_defaults drops
        data["model"] = {"kind": spec.model.kind, **data["model"]}
    header = "# Imported from an AutoGen component file by `autoqwen workflows import`.\n"
    return header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=110)


def _read(path: Path) -> Any:
    raw = read_bounded(path, MAX_COMPONENT_BYTES, InteropError)
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InteropError(f"{path}: not JSON: {exc}", path=path) from exc
    except RecursionError:
        raise InteropError(f"{path}: not JSON this program reads: nested too deeply", path=path) from None


def _choose(data: Any, path: Path, team: str | None) -> tuple[Any, str]:
    """The team component of a file: the file itself, or one of a gallery's `components.teams`."""
    if not isinstance(data, dict):
        raise InteropError(f"{path}: $: expected a JSON object (a team component or a gallery)", path=path)
    if "provider" in data:
        return data, "$"
    components = data.get("components")
    teams = components.get("teams") if isinstance(components, dict) else None
    if not isinstance(teams, list):
        raise InteropError(
            f"{path}: $: neither a component (no provider) nor a gallery (no components.teams)", path=path
        )
    labels = [str(t.get("label")) if isinstance(t, dict) else "?" for t in teams]
    if team is None and len(teams) == 1:
        return teams[0], "$.components.teams[0]"
    for i, label in enumerate(labels):
        if team is not None and (label == team or slug(label) == team):
            return teams[i], f"$.components.teams[{i}]"
    listed = ", ".join(repr(label) for label in labels) or "none"
    ask = f"no team labelled {team!r}" if team is not None else "several teams: choose one with --team LABEL"
    raise InteropError(f"{path}: $.components.teams: {ask} (teams: {listed})", path=path)
