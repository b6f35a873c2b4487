"""Hand a skill to AutoGen 0.7 as a `FunctionTool` whose schema and validation are the skill's own."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

from autogen_core import CancellationToken
from autogen_core.tools import BaseTool, FunctionTool, ToolSchema
from autogen_core.tools._function_tool import FunctionToolConfig

from autoqwen.skills._portable import WRAPPER_IMPORTS, portable_source
from autoqwen.skills._skill import Skill

__all__ = ["SkillTool", "as_tool"]


class SkillTool(FunctionTool):
    """An AutoGen `FunctionTool` for a skill: same schema as `Skill.parameters`, same argument validation."""

    def __init__(self, skill: Skill) -> None:
        self.skill = skill
        super().__init__(_call_through(skill), description=skill.description, name=skill.name)
        # FunctionTool rebuilds an argument model from the signature with its own rules: it drops pydantic Field
        # metadata (constraints, descriptions) and names undocumented parameters after themselves. Re-initialise
        # the base with the skill's model so the model sees, and AutoGen validates, exactly `skill.parameters`.
        BaseTool.__init__(self, skill.args_model, self.return_type(), skill.name, skill.description)

    @property
    def schema(self) -> ToolSchema:
        return ToolSchema(
            name=self.skill.name,
            description=self.skill.description,
            parameters=self.skill.parameters,  # type: ignore[typeddict-item]
            strict=False,
        )

    def _to_config(self) -> FunctionToolConfig:
        """A `FunctionTool` component (`dump_component()`) whose code calls the installed skill by name (see
        _portable.py), since the function this tool wraps is a closure that means nothing outside this process."""
        return FunctionToolConfig(
            source_code=portable_source(self.skill),
            global_imports=list(WRAPPER_IMPORTS),
            name=self.skill.name,
            description=self.skill.description,
            has_cancellation_support=False,
        )


def as_tool(skill: Skill) -> SkillTool:
    """The AutoGen tool for a skill, ready for `AssistantAgent(tools=[...])`."""
    return SkillTool(skill)


def _call_through(skill: Skill) -> Any:
    """An async function with the skill's parameter names that FunctionTool can call with validated arguments.

    Sync skills run in a worker thread through `asyncio.to_thread`, which (unlike the executor FunctionTool uses)
    carries context variables such as the session files folder; the cancellation token cancels the call.
    """
    names = list(skill.args_model.model_fields)

    async def call(cancellation_token: CancellationToken, **kwargs: Any) -> Any:
        if skill.is_async:
            task = asyncio.ensure_future(skill.func(**kwargs))
        else:
            task = asyncio.ensure_future(asyncio.to_thread(skill.func, **kwargs))
        cancellation_token.link_future(task)
        return await task

    params = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, annotation=Any) for n in names]
    params.append(inspect.Parameter("cancellation_token", inspect.Parameter.KEYWORD_ONLY, annotation=CancellationToken))
    call.__signature__ = inspect.Signature(params, return_annotation=Any)  # type: ignore[attr-defined]
    call.__annotations__ = {**dict.fromkeys(names, Any), "cancellation_token": CancellationToken, "return": Any}
    call.__name__ = skill.name
    call.__doc__ = skill.description
    return call
