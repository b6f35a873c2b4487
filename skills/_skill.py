"""The `@skill` decorator and `Skill`, a typed function described to the model as a tool."""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, overload

from pydantic import BaseModel, ValidationError

from autoqwen.skills._schema import build_args_model, parameters_schema
from autoqwen.skills.errors import MissingSecret, SkillArgumentError, SkillDefinitionError

__all__ = ["Skill", "check_secrets", "skill"]

# OpenAI's rule for function names.
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Skill:
    """A plain typed function plus what the model needs to call it: name, description and parameters schema.

    Calling a `Skill` calls the function unchanged; `call` / `acall` validate a JSON-style argument mapping first.
    """

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        secrets: Iterable[str] = (),
    ) -> None:
        self.func = func
        self.name = name or func.__name__
        if not _NAME.match(self.name):
            raise SkillDefinitionError(
                f"skill name {self.name!r} must be 1-64 letters, digits, '_' or '-'", skill=self.name
            )
        doc = description if description is not None else inspect.getdoc(func)
        if not doc or not doc.strip():
            raise SkillDefinitionError(
                f"skill {self.name!r} needs a docstring: it tells the model what the skill does", skill=self.name
            )
        self.description = doc.strip()
        self.secrets = tuple(secrets)
        for secret in self.secrets:
            if not _ENV_NAME.match(secret):
                raise SkillDefinitionError(f"skill {self.name!r}: bad secret name {secret!r}", skill=self.name)
        self.is_async = inspect.iscoroutinefunction(func)
        self.args_model: type[BaseModel] = build_args_model(func, self.name)
        self.parameters: dict[str, Any] = parameters_schema(self.args_model, self.name)
        functools.update_wrapper(self, func)

    @property
    def summary(self) -> str:
        """The first line of the description, for listings."""
        return self.description.splitlines()[0].strip()

    @property
    def module(self) -> str:
        """The module that defines the function."""
        return str(getattr(self.func, "__module__", ""))

    def tool_schema(self) -> dict[str, Any]:
        """The OpenAI `tools[]` entry: `{"type": "function", "function": {name, description, parameters}}`."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.func(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<Skill {self.name}>"

    def validate(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """Check JSON-style arguments against the schema and return the keyword arguments to call with."""
        try:
            parsed = self.args_model.model_validate(dict(arguments))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'arguments'}: {err['msg']}" for err in exc.errors()
            )
            raise SkillArgumentError(f"bad arguments for skill {self.name!r}: {problems}", skill=self.name) from exc
        return {field: getattr(parsed, field) for field in type(parsed).model_fields}

    def call(self, arguments: Mapping[str, Any]) -> Any:
        """Validate the arguments, check the secrets, and run the skill to completion (async ones too)."""
        kwargs = self.validate(arguments)
        check_secrets([self])
        if self.is_async:
            return asyncio.run(self.func(**kwargs))
        return self.func(**kwargs)

    async def acall(self, arguments: Mapping[str, Any]) -> Any:
        """Like `call`, from async code; a sync skill runs in a worker thread that sees the caller's context."""
        kwargs = self.validate(arguments)
        check_secrets([self])
        if self.is_async:
            return await self.func(**kwargs)
        return await asyncio.to_thread(self.func, **kwargs)


@overload
def skill(func: Callable[..., Any], /) -> Skill: ...


@overload
def skill(
    *, name: str | None = None, description: str | None = None, secrets: Iterable[str] = ()
) -> Callable[[Callable[..., Any]], Skill]: ...


def skill(
    func: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    secrets: Iterable[str] = (),
) -> Skill | Callable[[Callable[..., Any]], Skill]:
    """Mark a typed function with a docstring as a skill: `@skill` or `@skill(secrets=["SERPAPI_KEY"])`."""
    if func is not None:
        return Skill(func)

    def decorate(f: Callable[..., Any]) -> Skill:
        return Skill(f, name=name, description=description, secrets=secrets)

    return decorate


def check_secrets(skills: Iterable[Skill]) -> None:
    """Raise `MissingSecret` naming every unset environment variable the given skills need (call at run start)."""
    missing: dict[str, list[str]] = {}
    for item in skills:
        for secret in item.secrets:
            if not os.environ.get(secret):
                missing.setdefault(secret, []).append(item.name)
    if missing:
        lines = ", ".join(f"{var} (needed by {', '.join(names)})" for var, names in sorted(missing.items()))
        raise MissingSecret(f"set these environment variables first: {lines}", names=tuple(sorted(missing)))
