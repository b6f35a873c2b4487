"""End to end: an AutoGen 0.7 AssistantAgent calls a Python function tool through the server on the bundled model."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from autoqwen.local_llm import EmbeddedServer, Engine, ModelSource

pytestmark = pytest.mark.model

FORECAST = "Paris: 17 degrees celsius, light rain, wind 12 km/h"


def get_weather(city: str) -> str:
    """Get the current weather in a city."""
    return FORECAST if city.strip().lower() == "paris" else f"{city}: no data"


@pytest.fixture(scope="module")
def server(bundled_source: ModelSource) -> Iterator[EmbeddedServer]:
    with EmbeddedServer(Engine(bundled_source)) as s:  # the defaults: constrained, tool_choice auto = call-then-answer
        s.engine.wait_ready(300)
        yield s


def test_assistant_agent_calls_a_function_tool_and_answers(server: EmbeddedServer) -> None:
    from autogen_agentchat.agents import AssistantAgent
    from autogen_agentchat.messages import TextMessage, ToolCallExecutionEvent, ToolCallRequestEvent
    from autogen_ext.models.openai import OpenAIChatCompletionClient

    async def run() -> list[object]:
        model_client = OpenAIChatCompletionClient(
            model=server.engine.model_id,
            base_url=server.base_url,
            api_key="unused",
            temperature=0,
            seed=0,
            max_tokens=96,
            model_info={
                "vision": False,
                "function_calling": True,
                "json_output": True,
                "family": "unknown",
                "structured_output": True,
            },
        )
        agent = AssistantAgent("assistant", model_client=model_client, tools=[get_weather], reflect_on_tool_use=True)
        try:
            result = await agent.run(task="What is the weather in Paris?")
        finally:
            await model_client.close()
        return list(result.messages)

    messages = asyncio.run(run())
    requests = [m for m in messages if isinstance(m, ToolCallRequestEvent)]
    executions = [m for m in messages if isinstance(m, ToolCallExecutionEvent)]
    assert len(requests) == 1 and len(requests[0].content) == 1, messages
    call = requests[0].content[0]
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
    assert len(executions) == 1 and executions[0].content[0].content == FORECAST
    assert executions[0].content[0].is_error is False
    final = messages[-1]
    assert isinstance(final, TextMessage) and final.source == "assistant"
    assert final.content.strip() and "<tool_" not in final.content
    assert "17 degrees" in final.content  # the answer uses the result (deterministic at temperature 0)


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather in a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "search_papers",
            "description": "Search scientific papers by topic.",
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string"}, "max_results": {"type": "integer"}},
                "required": ["query"],
            },
        },
    },
]


def ask(
    server: EmbeddedServer, question: str, tools: list[dict[str, Any]] = TOOLS
) -> tuple[str | None, list[tuple[str, dict[str, object]]]]:
    """The bundled model's reply to one question with `tools` offered, as the unchanged openai SDK gets it."""
    import openai

    client = openai.OpenAI(base_url=server.base_url, api_key="unused")
    reply = client.chat.completions.create(
        model=server.engine.model_id,
        messages=[{"role": "user", "content": question}],
        tools=tools,  # type: ignore[arg-type]
        temperature=0,
        max_tokens=128,
    )
    message = reply.choices[0].message
    calls = [(c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls or []]
    return message.content, calls


def test_a_request_no_tool_fits_is_answered_in_text(server: EmbeddedServer) -> None:
    """Before, call-then-answer called a tool for every user turn (get_weather for a joke)."""
    content, calls = ask(server, "Tell me a joke.")
    assert calls == [] and content and "<tool" not in content


def test_a_request_a_tool_fits_gets_its_call(server: EmbeddedServer) -> None:
    """Before, with one "no tool" head at 4 nats, "What is 1543 plus 2981?" was answered in text ("4496")."""
    operations = {"type": "string", "enum": ["add", "subtract", "multiply", "divide"]}
    parameters = {
        "type": "object",
        "properties": {"operation": operations, "a": {"type": "number"}, "b": {"type": "number"}},
    }
    calculator = {"name": "calculator", "description": "Do arithmetic on two numbers.", "parameters": parameters}
    _, calls = ask(server, "What is 1543 plus 2981?", [*TOOLS, {"type": "function", "function": calculator}])
    assert [name for name, _ in calls] == ["calculator"] and {calls[0][1]["a"], calls[0][1]["b"]} == {1543, 2981}


def test_several_items_get_a_call_each(server: EmbeddedServer) -> None:
    """Before, "Oslo and Cairo" got one call."""
    _, calls = ask(server, "What's the weather in Oslo and in Cairo?")
    assert calls == [("get_weather", {"city": "Oslo"}), ("get_weather", {"city": "Cairo"})]


def test_listed_items_get_the_first_calls_other_values(server: EmbeddedServer) -> None:
    """Before, only the EUR call was made; made to write a second one, the model wrote `"from_currency": "EUR"`."""
    codes = {"type": "string", "enum": ["USD", "EUR", "GBP", "JPY"]}
    parameters = {
        "type": "object",
        "properties": {"amount": {"type": "number"}, "from_currency": codes, "to_currency": codes},
        "required": ["amount", "from_currency", "to_currency"],
    }
    convert = {"name": "convert_currency", "description": "Convert money between currencies.", "parameters": parameters}
    _, calls = ask(server, "Convert 100 USD to EUR and 100 USD to GBP.", [{"type": "function", "function": convert}])
    assert [(args["amount"], args["from_currency"], args["to_currency"]) for _, args in calls] == [
        (100, "USD", "EUR"),
        (100, "USD", "GBP"),
    ]


def test_argument_values_are_the_users_words(server: EmbeddedServer) -> None:
    """Before, the query was `protein_folding_protein_protein_...` (256 characters), with invented keys."""
    _, calls = ask(server, "Find papers on protein folding.")
    assert [(name, args["query"]) for name, args in calls] == [("search_papers", "protein folding")]
    assert all(set(args) <= {"query", "max_results"} for _, args in calls)


def test_a_grounded_answer_grammar_follows_the_models_own_tokens(server: EmbeddedServer) -> None:
    """The bundled model answered "AAPL: 187.42 USD\\n</" to a stock price; at "</" llguidance gave up on the
    grammar ("too many expressions constructed") when the value had to come within a counted prefix intersected
    with the no-tag rule."""
    from autoqwen.local_llm.grammars import answer_grammar
    from autoqwen.local_llm.protocol import ChatCompletionRequest

    call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
    body = ChatCompletionRequest.model_validate(
        {
            "model": "m",
            "tools": TOOLS,
            "tool_choice": "none",
            "messages": [
                {"role": "user", "content": "What is the stock price of AAPL?"},
                {"role": "assistant", "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "c1", "content": "AAPL: 187.42 USD"},
            ],
        }
    )
    grammar = answer_grammar(body)
    assert grammar is not None and server.engine.tokenizer is not None
    matcher = server.engine.tokenizer.matcher(grammar)
    reply = [49, 3872, 60, 42, 216, 33, 40, 39, 30, 36, 34, 25188, 198, 9617, 2]  # the model's tokens, then its end
    assert server.engine.tokenizer.decode(reply[:-1]) == "AAPL: 187.42 USD\n</"
    for token in reply:
        matcher.compute_bitmask()
        assert matcher.consume_token(token) and not matcher.is_error(), matcher.get_error()
    assert matcher.is_accepting()
