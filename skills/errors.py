"""Errors raised by the skills package; the CLI prints their message, the runner shows it to the user.

* SkillError                    root: catch this
  + SkillDefinitionError        a function cannot be a skill (no docstring, untyped or unsupported parameter)
  + SkillNotFound               no skill has that name
  + SkillLoadError              a skill module or file failed to import (`skills add`; discovery only reports it)
  + SkillClash                  two sources define a skill of the same name
  + SkillExists                 `skills add` would overwrite a user skill file (use --force)
  + SkillNotRemovable           `skills remove` of a builtin or installed-package skill
  + SkillArgumentError          arguments that do not match the skill's schema
  + MissingSecret               an environment variable a skill declares is not set
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "MissingSecret",
    "SkillArgumentError",
    "SkillClash",
    "SkillDefinitionError",
    "SkillError",
    "SkillExists",
    "SkillLoadError",
    "SkillNotFound",
    "SkillNotRemovable",
]


class SkillError(Exception):
    """Base class of every error the skills package raises on purpose; its message is meant for the user."""


class SkillDefinitionError(SkillError):
    """A usage mistake by a skill's author: the function cannot be described to the model as a tool."""

    def __init__(self, message: str, *, skill: str) -> None:
        super().__init__(message)
        self.skill = skill


class SkillNotFound(SkillError):
    """No loaded skill has the name asked for."""

    def __init__(self, message: str, *, skill: str) -> None:
        super().__init__(message)
        self.skill = skill


class SkillLoadError(SkillError):
    """A skill module or file could not be imported; the message names the file and the error."""

    def __init__(self, message: str, *, path: Path | None = None) -> None:
        super().__init__(message)
        self.path = path


class SkillClash(SkillError):
    """Two sources define a skill of the same name; neither is silently preferred."""

    def __init__(self, message: str, *, skill: str) -> None:
        super().__init__(message)
        self.skill = skill


class SkillExists(SkillError):
    """A user skill file of that name is already installed; `--force` replaces it."""

    def __init__(self, message: str, *, path: Path) -> None:
        super().__init__(message)
        self.path = path


class SkillNotRemovable(SkillError):
    """The skill is a builtin or comes from an installed package, so `skills remove` cannot delete it."""

    def __init__(self, message: str, *, skill: str) -> None:
        super().__init__(message)
        self.skill = skill


class SkillArgumentError(SkillError):
    """Arguments for a skill that its schema rejects (unknown, missing or mistyped)."""

    def __init__(self, message: str, *, skill: str) -> None:
        super().__init__(message)
        self.skill = skill


class MissingSecret(SkillError):
    """An environment variable that a skill needs (its `secrets`) is not set."""

    def __init__(self, message: str, *, names: tuple[str, ...]) -> None:
        super().__init__(message)
        self.names = names
