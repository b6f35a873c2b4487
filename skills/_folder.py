"""The user skills folder: add a validated skill file to it, or remove the file that defines a skill."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from autoqwen.paths import user_skills_dir
from autoqwen.skills._registry import collect_skills, import_skill_file, load_skills
from autoqwen.skills._skill import Skill
from autoqwen.skills.errors import SkillClash, SkillExists, SkillLoadError, SkillNotFound, SkillNotRemovable

__all__ = ["SkillFileChange", "add_skill_file", "remove_skill"]


# A skill name (OpenAI's rule for function names) or a user file name: never a path.
_REMOVABLE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}(\.py)?")


class SkillFileChange(BaseModel):
    """What `add_skill_file` or `remove_skill` did: the user file and the skills it defines."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: Path
    skills: list[str]
    replaced: bool = False


def add_skill_file(source: Path, *, force: bool = False, user_dir: Path | None = None) -> SkillFileChange:
    """Validate a skill file (it imports, defines skills, schemas build, no clashes) and copy it to the user folder."""
    source = Path(source)
    if source.suffix != ".py" or not source.is_file():
        raise SkillLoadError(f"{source}: not a Python file (expected an existing FILE.py)", path=source)
    folder = user_dir if user_dir is not None else user_skills_dir()
    dest = folder / source.name
    if dest.exists() and dest.resolve() == source.resolve():
        raise SkillExists(f"{source} is already in the user skills folder", path=dest)
    if dest.exists() and not force:
        raise SkillExists(f"{dest} already exists; use --force to replace it", path=dest)
    module_name = f"autoqwen_user_skills._checking_{abs(hash(str(source.resolve())))}"
    try:
        found = collect_skills(import_skill_file(source, module_name=module_name))
    finally:
        sys.modules.pop(module_name, None)
    registry = load_skills(user_dir=folder, warn=False)
    own = [s for s in found if not (s.name in registry and registry.get(s.name) is s)]
    if not own:
        raise SkillLoadError(
            f"{source}: defines no skills (mark typed functions with @skill, from `from autoqwen.skills import skill`)",
            path=source,
        )
    _check_tools(own, source)
    for item in own:
        if item.name in registry and registry.registration(item.name).source.path != dest:
            other = registry.registration(item.name).source
            raise SkillClash(f"skill {item.name!r} in {source} clashes with the one from {other}", skill=item.name)
    folder.mkdir(parents=True, exist_ok=True)
    replaced = dest.exists()
    shutil.copyfile(source, dest)
    return SkillFileChange(path=dest, skills=[s.name for s in own], replaced=replaced)


def remove_skill(name: str, *, user_dir: Path | None = None) -> SkillFileChange:
    """Delete the user file that defines skill `name` (or the file `<name>.py`); builtins and plugins refuse.

    `name` is a name, never a path: only a file directly in the user skills folder is ever deleted.
    """
    if not _REMOVABLE_NAME.fullmatch(name):
        raise SkillNotFound(
            f"{name!r} is not a skill name: give a skill name or a file name from `autoqwen skills list` "
            "(letters, digits, '_' and '-'; no folders)",
            skill=name,
        )
    folder = user_dir if user_dir is not None else user_skills_dir()
    registry = load_skills(user_dir=folder, warn=False)
    if name not in registry:
        candidate = folder / f"{name.removesuffix('.py')}.py"
        if candidate.is_file():  # a broken file defines no skill, but the user must still be able to remove it
            candidate.unlink()
            return SkillFileChange(path=candidate, skills=[])
        registry.get(name)  # raises SkillNotFound with suggestions
        raise SkillNotFound(f"no skill named {name!r}", skill=name)
    source = registry.registration(name).source
    if source.kind == "builtin":
        raise SkillNotRemovable(f"{name!r} is a builtin skill; builtins cannot be removed", skill=name)
    if source.kind == "plugin" or source.path is None:
        raise SkillNotRemovable(
            f"{name!r} comes from the installed package {source.package!r}: run `pip uninstall {source.package}`, "
            "or leave it out with AUTOQWEN_LOAD_PLUGINS",
            skill=name,
        )
    if source.path.parent.resolve() != folder.resolve():
        raise SkillNotRemovable(
            f"{name!r} comes from {source.path}, outside the user skills folder {folder}", skill=name
        )
    names = [r.skill.name for r in registry if r.source.path == source.path]
    source.path.unlink()
    return SkillFileChange(path=source.path, skills=names)


def _check_tools(found: list[Skill], source: Path) -> None:
    """Build each AutoGen tool once, so a file that AutoGen would reject never lands in the folder."""
    from autoqwen.skills._tool import as_tool

    for item in found:
        try:
            as_tool(item).schema  # noqa: B018
        except Exception as exc:
            message = f"{source}: skill {item.name!r} is not a valid AutoGen tool: {exc}"
            raise SkillLoadError(message, path=source) from exc
