"""A tool call made twice with the same result is not made a third time: the model answers from the results
(microsoft/autogen#2924: local models loop on one call until the run's limit)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.messages import TextMessage, ToolCallRequestEvent
from autogen_core import FunctionCall
from autogen_core.models import (
    AssistantMessage,
    CreateResult,
    FunctionExecutionResult,
    FunctionExecutionResultMessage,
    RequestUsage,
    UserMessage,
)
from autogen_core.tools import FunctionTool
from autogen_ext.models.openai import OpenAIChatCompletionClient

from autoqwen.agents.build import Endpoint, model_client
from autoqwen.agents.repeats import repeated_calls
from autoqwen.agents.window import ContextWindow


def call(call_id: str, arguments: str = '{"city": "Oslo"}') -> FunctionCall:
    return FunctionCall(id=call_id, name="weather", arguments=arguments)


def exchange(call_id: str, result: str, arguments: str = '{"city": "Oslo"}') -> list[Any]:
    return [
        AssistantMessage(content=[call(call_id, arguments)], source="a"),
        FunctionExecutionResultMessage(
            content=[FunctionExecutionResult(call_id=call_id, content=result, name="weather", is_error=False)]
        ),
    ]


def test_a_call_made_twice_with_one_result_is_a_repeat() -> None:
    history = [UserMessage(content="Weather in Oslo?", source="user"), *exchange("1", "8 C"), *exchange("2", "8 C")]
    assert repeated_calls(history, [call("3", '{ "city":"Oslo" }')]) == [call("3", '{ "city":"Oslo" }')]
    assert repeated_calls(history, [call("3", '{"city": "Cairo"}')]) == []  # other arguments
    assert repeated_calls(history[:3], [call("3")]) == []  # made once
    changing = [*exchange("1", "8 C"), *exchange("2", "9 C")]
    assert repeated_calls(changing, [call("3")]) == []  # the result changed: asking again may be right


def test_an_agent_stops_calling_after_two_identical_results(monkeypatch: pytest.MonkeyPatch) -> None:
    """A model that always asks for the same call: before, the tool ran on every iteration (6 times here)."""
    asked: list[str] = []

    async def model(self: Any, messages: Any, *, tools: Any = (), tool_choice: Any = "auto", **kw: Any) -> Any:
        asked.append(tool_choice)
        usage = RequestUsage(prompt_tokens=10, completion_tokens=5)
        if tool_choice == "none":
            return CreateResult(finish_reason="stop", content="It is 8 C in Oslo.", usage=usage, cached=False)
        content = [FunctionCall(id=f"c{len(asked)}", name="weather", arguments='{"city": "Oslo"}')]
        return CreateResult(finish_reason="function_calls", content=content, usage=usage, cached=False)

    monkeypatch.setattr(OpenAIChatCompletionClient, "create", model)
    runs: list[str] = []

    def weather(city: str) -> str:
        runs.append(city)
        return "8 C"

    notes: list[tuple[str, str]] = []
    window = ContextWindow(4096, on_trim=lambda agent, note: notes.append((agent, note)))
    client = model_client(Endpoint("http://127.0.0.1:9/v1", "m"), window=window, agent="helper")
    agent = AssistantAgent(
        "helper",
        client,
        tools=[FunctionTool(weather, description="Weather in a city.")],
        max_tool_iterations=6,
        reflect_on_tool_use=False,
    )
    result = asyncio.run(agent.run(task="Weather in Oslo?"))
    assert runs == ["Oslo", "Oslo"]
    assert asked[-1] == "none"
    assert isinstance(result.messages[-1], TextMessage) and "8 C" in result.messages[-1].content
    assert sum(isinstance(m, ToolCallRequestEvent) for m in result.messages) == 2
    assert notes and "weather already called 2 times" in notes[0][1]
