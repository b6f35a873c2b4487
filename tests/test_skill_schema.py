"""@skill: signatures become tool schemas, AutoGen gets the same schema, arguments are validated, secrets checked."""

from __future__ import annotations

import asyncio
import enum
from pathlib import Path
from typing import Annotated, Literal

import pytest
from autogen_core import CancellationToken
from autogen_core.tools import FunctionTool
from pydantic import BaseModel, Field

from autoqwen.skills import (
    Injected,
    MissingSecret,
    SkillArgumentError,
    SkillDefinitionError,
    as_tool,
    check_secrets,
    current_work_dir,
    parse_arguments,
    skill,
    use_work_dir,
)


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Point(BaseModel):
    x: float
    y: float = 0.0


@skill
def everything(
    city: Annotated[str, "City name"],
    days: Annotated[int, Field(ge=1, le=7, description="How many days")] = 3,
    units: Literal["metric", "imperial"] = "metric",
    tags: list[str] | None = None,
    color: Color = Color.RED,
    where: Point | None = None,
    verbose: bool = Field(default=False, description="Say more"),
    *,
    secret_handle: Injected[object | None] = None,
) -> str:
    """Describe a weather query.

    The rest of the docstring is for people reading the code.
    """
    return f"{city}/{days}/{units}/{tags}/{color.value}/{where}/{verbose}/{secret_handle}"


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_signature_becomes_the_parameters_schema() -> None:
    props = everything.parameters["properties"]
    assert everything.parameters["required"] == ["city"]
    assert everything.parameters["additionalProperties"] is False
    assert props["city"] == {"type": "string", "description": "City name"}
    assert props["days"] == {
        "type": "integer",
        "description": "How many days",
        "default": 3,
        "minimum": 1,
        "maximum": 7,
    }
    assert props["units"] == {"type": "string", "enum": ["metric", "imperial"], "default": "metric"}
    assert props["tags"]["anyOf"] == [{"type": "array", "items": {"type": "string"}}, {"type": "null"}]
    assert props["color"]["enum"] == ["red", "blue"] and props["color"]["default"] == "red"
    point = props["where"]["anyOf"][0]  # the $ref is inlined: small models and OpenAI servers need no $defs
    assert point == {
        "type": "object",
        "properties": {"x": {"type": "number"}, "y": {"type": "number", "default": 0.0}},
        "required": ["x"],
    }
    assert props["verbose"] == {"type": "boolean", "description": "Say more", "default": False}
    assert "secret_handle" not in props  # Injected parameters are for callers, not for the model
    assert "title" not in str(everything.parameters)  # pydantic's generated titles are dropped
    assert everything.summary == "Describe a weather query."
    assert everything.tool_schema()["function"]["name"] == "everything"


def test_a_parameter_named_title_survives_title_stripping() -> None:
    @skill
    def note(title: Annotated[str, "Heading"], body: str = "") -> str:
        """Write a note."""
        return title + body

    assert note.parameters["properties"]["title"] == {"type": "string", "description": "Heading"}


def test_autogen_sees_the_same_schema_and_validates_with_it() -> None:
    tool = as_tool(everything)
    assert isinstance(tool, FunctionTool)
    assert tool.name == "everything" and tool.description == everything.description
    assert tool.schema["parameters"] == everything.parameters
    token = CancellationToken()
    result = run(tool.run_json({"city": "Paris", "days": 2, "color": "blue", "where": {"x": 1}}, token))
    assert result == "Paris/2/metric/None/blue/x=1.0 y=0.0/False/None"
    with pytest.raises(Exception, match="less than or equal to 7"):
        run(tool.run_json({"city": "Paris", "days": 9}, token))
    with pytest.raises(Exception, match="Extra inputs are not permitted"):
        run(tool.run_json({"city": "Paris", "secret_handle": "x"}, token))


def test_plain_annotated_skills_match_what_autogen_builds_itself() -> None:
    @skill
    def add(a: Annotated[int, "first"], b: Annotated[int, "second"] = 2) -> int:
        """Add two numbers."""
        return a + b

    autogen = FunctionTool(add.func, description=add.description).schema["parameters"]
    strip = {"title"}
    autogen_props = {k: {f: v for f, v in p.items() if f not in strip} for k, p in autogen["properties"].items()}
    assert autogen_props == add.parameters["properties"]
    assert autogen["required"] == add.parameters["required"]


def test_an_autogen_assistant_calls_a_skill_and_gets_schema_errors_back() -> None:
    from autogen_agentchat.agents import AssistantAgent
    from autogen_core import FunctionCall
    from autogen_core.models import CreateResult, RequestUsage
    from autogen_ext.models.replay import ReplayChatCompletionClient

    def calls(arguments: str) -> CreateResult:
        call = FunctionCall(id="c1", name="everything", arguments=arguments)
        return CreateResult(finish_reason="function_calls", content=[call], usage=RequestUsage(0, 0), cached=False)

    info = {"vision": False, "function_calling": True, "json_output": False, "family": "unknown"}
    replies = [calls('{"city": "Rome"}'), calls('{"city": "Rome", "days": 0}')]
    client = ReplayChatCompletionClient(replies, model_info={**info, "structured_output": False})  # type: ignore[typeddict-item]
    agent = AssistantAgent("assistant", model_client=client, tools=[as_tool(everything)])
    first = asyncio.run(agent.run(task="weather in Rome?")).messages[-1]
    assert first.to_text() == "Rome/3/metric/None/red/None/False/None"
    second = asyncio.run(agent.run(task="and for zero days?")).messages[-2]
    (result,) = second.content  # type: ignore[attr-defined]
    assert result.is_error and "greater than or equal to 1" in result.content


def test_async_skills_run_directly_through_call_and_through_autogen() -> None:
    @skill
    async def shout(text: Annotated[str, "What to shout"]) -> str:
        """Shout the text."""
        await asyncio.sleep(0)
        return text.upper()

    assert shout.is_async
    assert run(shout("hi")) == "HI"
    assert shout.call({"text": "hey"}) == "HEY"
    assert run(shout.acall({"text": "yo"})) == "YO"
    assert run(as_tool(shout).run_json({"text": "tool"}, CancellationToken())) == "TOOL"


def test_sync_skills_run_by_autogen_see_the_session_folder(tmp_path: Path) -> None:
    @skill
    def where() -> str:
        """Say where files go."""
        return str(current_work_dir())

    async def main() -> object:
        with use_work_dir(tmp_path / "session-7"):
            return await as_tool(where).run_json({}, CancellationToken())

    assert run(main()) == str(tmp_path / "session-7")


def test_call_validates_arguments_with_clear_messages() -> None:
    with pytest.raises(SkillArgumentError, match=r"days: Input should be less than or equal to 7"):
        everything.call({"city": "Oslo", "days": 8})
    with pytest.raises(SkillArgumentError, match=r"city: Field required"):
        everything.call({})
    assert everything.call({"city": "Oslo", "tags": ["a"]}).startswith("Oslo/3/metric/['a']")


def test_parse_arguments_coerces_command_line_text_through_the_schema() -> None:
    args = parse_arguments(everything, ["city=42", "days=5", 'tags=["x","y"]', "verbose=true", 'where={"x": 2}'])
    assert args == {"city": "42", "days": 5, "tags": ["x", "y"], "verbose": True, "where": {"x": 2}}
    assert parse_arguments(everything, ["tags=a", "tags=b"])["tags"] == ["a", "b"]
    with pytest.raises(SkillArgumentError, match="has no parameter 'town'"):
        parse_arguments(everything, ["town=Oslo"])
    with pytest.raises(SkillArgumentError, match="expected KEY=VALUE"):
        parse_arguments(everything, ["Oslo"])


def test_secrets_are_checked_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    @skill(secrets=["AUTOQWEN_TEST_KEY", "AUTOQWEN_OTHER_KEY"])
    def search(query: str) -> str:
        """Search a paid API."""
        return query

    monkeypatch.delenv("AUTOQWEN_TEST_KEY", raising=False)
    monkeypatch.setenv("AUTOQWEN_OTHER_KEY", "set")
    with pytest.raises(MissingSecret, match=r"AUTOQWEN_TEST_KEY \(needed by search\)") as caught:
        check_secrets([search, everything])
    assert caught.value.names == ("AUTOQWEN_TEST_KEY",)
    with pytest.raises(MissingSecret):
        search.call({"query": "x"})
    monkeypatch.setenv("AUTOQWEN_TEST_KEY", "k")
    check_secrets([search])
    assert search.call({"query": "x"}) == "x"


def _no_doc(x: int) -> int:
    return x


def _untyped(x) -> int:  # type: ignore[no-untyped-def]
    """Untyped."""
    return 1


def _star(*args: int) -> int:
    """Star args."""
    return 1


def _injected_without_default(*, client: Injected[object]) -> int:
    """Bad injection."""
    return 1


@pytest.mark.parametrize(
    ("func", "message"),
    [
        (_no_doc, "needs a docstring"),
        (_untyped, "add a type hint"),
        (_star, r"\*args and \*\*kwargs"),
        (_injected_without_default, "an Injected parameter needs a default"),
    ],
)
def test_functions_that_cannot_be_described_are_rejected(func: object, message: str) -> None:
    with pytest.raises(SkillDefinitionError, match=message):
        skill(func)  # type: ignore[call-overload]


def test_bad_names_are_rejected() -> None:
    with pytest.raises(SkillDefinitionError, match="1-64 letters"):
        skill(name="has space")(_no_doc)
