"""The Skills pages: /skills (every skill, loading problems, add a file) and /skills/{name} (its parameters, its
JSON schema, a form to try it), both from templates/skills.html, which holds the parameters table once.
static/skills.js sends the forms to the skills API (skills_api) and shows its answers.

How a skill is shown lives here, for the pages and the API alike: `skill_info` (its source labelled as
`autoqwen skills list` labels it), `problem_info`, and the parameters table (`parameter_rows`, `type_label`).
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from autoqwen.skills import (
    Registration,
    Skill,
    SkillNotFound,
    SkillProblem,
    SkillRegistry,
    load_skills,
)
from autoqwen.ui.pages import Pages

__all__ = [
    "MAX_UPLOAD_BYTES",
    "ParameterRow",
    "ProblemInfo",
    "SkillInfo",
    "SkillList",
    "load_registry",
    "parameter_rows",
    "problem_info",
    "router",
    "skill_info",
    "type_label",
]

MAX_UPLOAD_BYTES = 512 * 1024  # a skill file is a page of Python; anything this large is a mistake (the API's cap)


class SkillInfo(BaseModel):
    """One skill as the UI shows it."""

    name: str
    description: str
    summary: str = Field(description="the description's first line")
    source: str = Field(description="where it comes from, as `autoqwen skills list` says: builtin, plugin P, user F")
    source_kind: str = Field(description="builtin, plugin or user")
    removable: bool = Field(description="a user skill: DELETE removes its file")
    parameters: dict[str, Any] = Field(description="the tool's JSON schema for its arguments")
    secrets: list[str] = Field(description="environment variables it needs")
    problem: str | None = Field(default=None, description="why it cannot run now (a secret is not set)")


class ProblemInfo(BaseModel):
    """A skill file or module that did not load, or a skill whose name was taken."""

    kind: str
    source: str
    message: str
    skill: str | None = None
    file: str | None = Field(default=None, description="a user file's name: DELETE /v1/skills/{file} removes it")


class SkillList(BaseModel):
    """GET /api/v1/skills: every skill, and the problems met loading them."""

    object: str = "list"
    data: list[SkillInfo]
    problems: list[ProblemInfo]


def skill_info(entry: Registration) -> SkillInfo:
    """A registered skill as the API and the pages show it."""
    item = entry.skill
    missing = [name for name in item.secrets if not os.environ.get(name)]
    return SkillInfo(
        name=item.name,
        description=item.description,
        summary=item.summary,
        source=entry.source.label,
        source_kind=entry.source.kind,
        removable=entry.source.kind == "user",
        parameters=item.parameters,
        secrets=list(item.secrets),
        problem=f"set {', '.join(missing)} first (environment variables it needs)" if missing else None,
    )


def problem_info(problem: SkillProblem) -> ProblemInfo:
    """A loading problem as the API and the pages show it."""
    path = problem.source.path if problem.source.kind == "user" else None  # a broken or clashing user file
    return ProblemInfo(
        kind=problem.kind,
        source=problem.source.label,
        message=problem.message,
        skill=problem.skill,
        file=path.name if path is not None else None,
    )


async def load_registry() -> SkillRegistry:
    """Every skill, loaded afresh (importing the user's skill files: off the event loop)."""
    return await asyncio.to_thread(load_skills, warn=False)


@dataclass(frozen=True)
class ParameterRow:
    """One parameter of a skill as the page shows it, and the form field that asks for it.

    `widget` is `text` (kept as typed), `number`, `boolean`, `choice` (one of `choices`) or `json` (read as JSON
    when it parses, as `autoqwen skills run --arg` does).
    """

    name: str
    type: str
    required: bool
    default: str
    description: str
    widget: str
    choices: list[str] = field(default_factory=list)


def type_label(schema: dict[str, Any]) -> str:
    """A JSON schema node in words: `integer (1-20)`, `list of number`, `one of line, bar`, `string or null`."""
    if "enum" in schema:
        return "one of " + ", ".join(json.dumps(v) if not isinstance(v, str) else v for v in schema["enum"])
    if "const" in schema:
        return json.dumps(schema["const"])
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            return " or ".join(type_label(member) for member in schema[key])
    kind = schema.get("type")
    if isinstance(kind, list):
        return " or ".join(str(k) for k in kind)
    if kind == "array":
        items = schema.get("items")
        return f"list of {type_label(items)}" if isinstance(items, dict) and items else "list"
    if kind == "object":
        values = schema.get("additionalProperties")
        return f"object of {type_label(values)}" if isinstance(values, dict) and values else "object"
    if kind is None:
        return "any"
    bounds = [schema.get(k) for k in ("minimum", "maximum")]
    if kind in ("integer", "number") and any(b is not None for b in bounds):
        low, high = ("" if b is None else f"{b:g}" for b in bounds)
        return f"{kind} ({low}-{high})" if low and high else f"{kind} ({'≥ ' + low if low else '≤ ' + high})"
    return str(kind)


def parameter_rows(parameters: dict[str, Any]) -> list[ParameterRow]:
    """The rows of a skill's parameters table, in the schema's order."""
    required = set(parameters.get("required", []))
    rows = []
    for name, schema in parameters.get("properties", {}).items():
        kind = schema.get("type")
        choices = schema.get("enum", [])
        if choices and all(isinstance(c, str) for c in choices):
            widget = "choice"
        elif kind == "boolean":
            widget = "boolean"
        elif kind in ("integer", "number"):
            widget = "number"
        elif kind == "string":
            widget = "text"
        else:
            widget = "json"
        rows.append(
            ParameterRow(
                name=name,
                type=type_label(schema),
                required=name in required,
                default=json.dumps(schema["default"]) if "default" in schema else "",
                description=str(schema.get("description", "")),
                widget=widget,
                choices=[str(c) for c in choices] if widget == "choice" else [],
            )
        )
    return rows


def router(pages: Pages) -> APIRouter:
    """The skills pages' routes."""
    routes = APIRouter(include_in_schema=False)

    @routes.get("/skills")
    async def skills_page(request: Request) -> HTMLResponse:
        found = await load_registry()
        skills = [(skill_info(e), parameter_rows(e.skill.parameters), _schema(e.skill)) for e in found]
        problems = [problem_info(p) for p in found.problems]
        return pages.page(
            request,
            "skills.html",
            title="Skills",
            nav="skills",
            skills=skills,
            problems=problems,
            max_upload_kib=MAX_UPLOAD_BYTES // 1024,
        )

    @routes.get("/skills/{name}")
    async def skill_page(request: Request, name: str) -> HTMLResponse:
        try:
            entry = (await load_registry()).registration(name)
        except SkillNotFound as exc:
            return pages.missing(request, str(exc))
        info = skill_info(entry)
        return pages.page(
            request,
            "skills.html",
            title=info.name,
            nav="skills",
            skill=info,
            rows=parameter_rows(info.parameters),
            schema=_schema(entry.skill),
        )

    return routes


def _schema(item: Skill) -> str:
    """The tool's JSON schema as the model sees it, indented for reading."""
    return json.dumps(item.tool_schema(), indent=2, ensure_ascii=False)
