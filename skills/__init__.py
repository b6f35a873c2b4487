"""Pluggable Python skills: typed functions that agents call as tools.

A skill is a plain typed function with a docstring, marked with `@skill`; its signature is the tool's JSON schema.
`load_skills()` discovers builtins, installed packages exposing the `autoqwen.skills` entry-point group, and the
user skills folder (`<data dir>/skills/*.py`); `as_tool(skill)` hands one to AutoGen as a `FunctionTool`.
"""

from __future__ import annotations

import typing as _typing

from autoqwen.paths import current_work_dir, use_work_dir, user_skills_dir
from autoqwen.skills._arguments import parse_arguments, split_pairs
from autoqwen.skills._folder import SkillFileChange, add_skill_file, remove_skill
from autoqwen.skills._registry import (
    BUILTIN_MODULES,
    ENTRY_POINT_GROUP,
    Registration,
    SkillProblem,
    SkillRegistry,
    SkillSource,
    collect_skills,
    import_skill_file,
    load_skills,
)
from autoqwen.skills._schema import Injected
from autoqwen.skills._skill import Skill, check_secrets, skill
from autoqwen.skills.errors import (
    MissingSecret,
    SkillArgumentError,
    SkillClash,
    SkillDefinitionError,
    SkillError,
    SkillExists,
    SkillLoadError,
    SkillNotFound,
    SkillNotRemovable,
)

if _typing.TYPE_CHECKING:
    from autoqwen.skills._tool import SkillTool, as_tool

__all__ = [
    "BUILTIN_MODULES",
    "ENTRY_POINT_GROUP",
    "Injected",
    "MissingSecret",
    "Registration",
    "Skill",
    "SkillArgumentError",
    "SkillClash",
    "SkillDefinitionError",
    "SkillError",
    "SkillExists",
    "SkillFileChange",
    "SkillLoadError",
    "SkillNotFound",
    "SkillNotRemovable",
    "SkillProblem",
    "SkillRegistry",
    "SkillSource",
    "SkillTool",
    "add_skill_file",
    "as_tool",
    "check_secrets",
    "collect_skills",
    "current_work_dir",
    "import_skill_file",
    "load_skills",
    "parse_arguments",
    "remove_skill",
    "skill",
    "split_pairs",
    "use_work_dir",
    "user_skills_dir",
]


def __getattr__(name: str) -> _typing.Any:
    # autogen_core takes a fifth of a second to import: load it only when a tool is asked for, so the CLI starts fast.
    if name in ("SkillTool", "as_tool"):
        from autoqwen.skills import _tool

        return getattr(_tool, name)
    raise AttributeError(f"module 'autoqwen.skills' has no attribute {name!r}")
