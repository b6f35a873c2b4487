"""Skill discovery: builtins, then installed packages (entry points), then the user skills folder."""

from __future__ import annotations

import difflib
import functools
import importlib
import importlib.util
import logging
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from types import ModuleType
from typing import Literal

from pydantic import BaseModel, ConfigDict

from autoqwen.paths import user_skills_dir
from autoqwen.skills._skill import Skill
from autoqwen.skills.errors import SkillLoadError, SkillNotFound

__all__ = [
    "BUILTIN_MODULES",
    "ENTRY_POINT_GROUP",
    "Registration",
    "SkillProblem",
    "SkillRegistry",
    "SkillSource",
    "collect_skills",
    "import_skill_file",
    "load_skills",
]

logger = logging.getLogger("autoqwen.skills")

ENTRY_POINT_GROUP = "autoqwen.skills"
# Builtins load through the same loader as plugins, first, so no plugin or user file can shadow them.
BUILTIN_MODULES = (
    "autoqwen.skills.builtins.web",
    "autoqwen.skills.builtins.arxiv",
    "autoqwen.skills.builtins.chart",
    "autoqwen.skills.builtins.image",
)
_USER_MODULE_PREFIX = "autoqwen_user_skills"


class SkillSource(BaseModel):
    """Where a skill came from: a builtin module, an installed package's entry point, or a user skill file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["builtin", "plugin", "user"]
    origin: str
    package: str | None = None
    path: Path | None = None

    @property
    def label(self) -> str:
        """A short label for lists: builtin, plugin PACKAGE, or user FILE.py."""
        if self.kind == "plugin":
            return f"plugin {self.package}"
        if self.kind == "user" and self.path is not None:
            return f"user {self.path.name}"
        return self.kind

    def __str__(self) -> str:
        if self.kind == "builtin":
            return f"builtin module {self.origin}"
        if self.kind == "plugin":
            return f"package {self.package} (entry point {self.origin})"
        return f"user file {self.origin}"


class SkillProblem(BaseModel):
    """Something discovery skipped: a module that failed to import, or a skill whose name was already taken."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["import", "clash"]
    source: SkillSource
    message: str
    skill: str | None = None


@dataclass(frozen=True)
class Registration:
    """A loaded skill and its source."""

    skill: Skill
    source: SkillSource


class SkillRegistry:
    """Skills by name, in discovery order, plus the problems met while loading them."""

    def __init__(self) -> None:
        self._entries: dict[str, Registration] = {}
        self.problems: list[SkillProblem] = []

    def register(self, skill: Skill, source: SkillSource) -> bool:
        """Add a skill; a name already taken by another skill is recorded as a clash and the first one is kept."""
        existing = self._entries.get(skill.name)
        if existing is None:
            self._entries[skill.name] = Registration(skill, source)
            return True
        if existing.skill is skill:  # the same object re-exported by another module: not a clash
            return False
        message = (
            f"skill {skill.name!r} from {source} clashes with the one from {existing.source}; "
            f"the first one is kept; rename one of them"
        )
        self.problems.append(SkillProblem(kind="clash", source=source, message=message, skill=skill.name))
        return False

    def get(self, name: str) -> Skill:
        """The skill called `name`; `SkillNotFound` suggests close names."""
        return self.registration(name).skill

    def registration(self, name: str) -> Registration:
        """The skill called `name` with its source."""
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._entries), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else "; `autoqwen skills list` shows them"
            raise SkillNotFound(f"no skill named {name!r}{hint}", skill=name) from None

    def names(self) -> list[str]:
        """Skill names in discovery order."""
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Registration]:
        return iter(list(self._entries.values()))

    def __len__(self) -> int:
        return len(self._entries)


def collect_skills(obj: object) -> list[Skill]:
    """The skills an entry point or module offers: a module's `Skill` attributes, one `Skill`, or a list of them."""
    if isinstance(obj, Skill):
        return [obj]
    if isinstance(obj, ModuleType):
        return [value for value in vars(obj).values() if isinstance(value, Skill)]
    if isinstance(obj, list | tuple) and all(isinstance(item, Skill) for item in obj):
        return list(obj)
    raise TypeError(f"expected a module, a skill or a list of skills, got {type(obj).__name__}")


# Top-level names older versions installed; a skill file importing one gets a hint instead of a bare error.
_OLD_PACKAGES = {"skills", "agents", "workflows", "local_llm"}


def import_skill_file(path: Path, *, module_name: str | None = None) -> ModuleType:
    """Import a skill file as a fresh module; `SkillLoadError` names the file and the error."""
    name = module_name or f"{_USER_MODULE_PREFIX}.{re.sub(r'[^0-9A-Za-z_]', '_', path.stem)}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SkillLoadError(f"{path}: not a Python file", path=path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # pydantic and dataclasses look their module up while the file runs
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        sys.modules.pop(name, None)
        lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename) == path]
        where = f"{path}, line {lines[-1]}" if lines and not isinstance(exc, SyntaxError) else str(path)
        hint = ""
        if isinstance(exc, ModuleNotFoundError) and exc.name in _OLD_PACKAGES:
            hint = " (autoqwen's packages live under `autoqwen`: write `from autoqwen.skills import skill`)"
        raise SkillLoadError(f"{where}: {type(exc).__name__}: {exc}{hint}", path=path) from exc
    return module


def load_skills(
    *, plugins: Iterable[str] | None = None, user_dir: Path | None = None, warn: bool = True
) -> SkillRegistry:
    """Discover every skill: builtins, installed `autoqwen.skills` entry points, then `<data dir>/skills/*.py`.

    `plugins` limits which entry points load (entry point or distribution names); by default it comes from
    `AUTOQWEN_LOAD_PLUGINS` (comma-separated; set it empty to load none), and unset means all. Import failures and
    name clashes never stop discovery: they are kept in `registry.problems` and logged as warnings when `warn`.
    """
    registry = SkillRegistry()
    for module in BUILTIN_MODULES:
        _add(registry, SkillSource(kind="builtin", origin=module), functools.partial(importlib.import_module, module))
    for ep in _entry_points(plugins):
        package = ep.dist.name if ep.dist is not None else "unknown"
        source = SkillSource(kind="plugin", origin=f"{ep.name} = {ep.value}", package=package)
        _add(registry, source, ep.load)
    folder = user_dir if user_dir is not None else user_skills_dir()
    for path in sorted(folder.glob("*.py")) if folder.is_dir() else []:
        if not path.name.startswith(("_", ".")):
            source = SkillSource(kind="user", origin=str(path), path=path)
            _add(registry, source, functools.partial(import_skill_file, path))
    if warn:
        for problem in registry.problems:
            logger.warning("%s", problem.message)
    return registry


def _add(registry: SkillRegistry, source: SkillSource, load: Callable[[], object]) -> None:
    try:
        found = collect_skills(load())
    except SkillLoadError as exc:
        registry.problems.append(SkillProblem(kind="import", source=source, message=str(exc)))
        return
    except (Exception, SystemExit) as exc:
        message = f"could not load skills from {source}: {type(exc).__name__}: {exc}"
        registry.problems.append(SkillProblem(kind="import", source=source, message=message))
        return
    for item in found:
        registry.register(item, source)


def _entry_points(plugins: Iterable[str] | None) -> list[EntryPoint]:
    if plugins is None:
        env = os.environ.get("AUTOQWEN_LOAD_PLUGINS")
        plugins = None if env is None else [p for p in env.split(",") if p.strip()]
    found = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: (_dist_name(ep), ep.name))
    if plugins is None:
        return found
    wanted = {_normalize(p) for p in plugins}
    return [ep for ep in found if _normalize(ep.name) in wanted or _normalize(_dist_name(ep)) in wanted]


def _dist_name(ep: EntryPoint) -> str:
    return ep.dist.name if ep.dist is not None else ""


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name.strip()).lower()
