"""Further calls for the items a user lists, from a reply's first call (local_llm/listed_calls.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from autoqwen.local_llm.listed_calls import listed_calls
from autoqwen.local_llm.protocol import FunctionCall, ToolCall
from autoqwen.local_llm.tool_parse import ReplyStream, ToolCallStream, parse_reply, split_reply

CURRENCIES = ["USD", "EUR", "GBP", "JPY"]
TOOLS: dict[str, dict[str, Any]] = {
    "get_weather": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
    },
    "convert_currency": {
        "type": "object",
        "properties": {
            "amount": {"type": "number"},
            "from_currency": {"type": "string", "enum": CURRENCIES},
            "to_currency": {"type": "string", "enum": CURRENCIES},
        },
    },
    "mortgage": {
        "type": "object",
        "properties": {
            "loan": {"type": "integer"},
            "rate": {"type": "number", "maximum": 1},
            "years": {"type": "integer", "minimum": 1, "maximum": 40},
        },
    },
    "translate": {
        "type": "object",
        "properties": {"text": {"type": "string"}, "target": {"type": "string", "enum": ["de", "es", "fr"]}},
    },
    "add_todo": {"type": "object", "properties": {"task": {"type": "string"}, "tags": {"type": "array"}}},
    "fetch": {"type": "object", "properties": {"url": {"type": "string"}}},
    "add": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}},
    "timer": {
        "type": "object",
        "properties": {"amount": {"type": "integer"}, "unit": {"enum": ["seconds", "minutes", "hours"]}},
    },
    "odd": {
        "type": "object",
        "properties": {
            "n": {"type": "integer", "minimum": "1", "maximum": None, "enum": [15, 30]},
            "s": {"type": "string", "minLength": "x"},
        },
    },
    "savings": {
        "type": "object",
        "properties": {
            "energy": {"enum": ["solar", "wind", "hydro"]},
            "months": {"type": "integer"},
            "region": {"type": "string"},
        },
    },
}


def call(name: str, **arguments: Any) -> ToolCall:
    return ToolCall(id="call_1", function=FunctionCall(name=name, arguments=json.dumps(arguments)))


def more(text: str, first: ToolCall, limit: int = 3) -> list[dict[str, Any]]:
    return [json.loads(c.function.arguments) for c in listed_calls(text, [first], TOOLS, limit)]


@pytest.mark.parametrize(
    ("text", "first", "expected"),
    [
        ("Weather in Oslo and in Cairo?", call("get_weather", city="Oslo", unit="celsius"), [{"city": "Cairo"}]),
        ("Weather in Seattle and Los Angeles.", call("get_weather", city="Seattle"), [{"city": "Los Angeles"}]),
        (
            "Convert 100 USD to EUR and 100 USD to GBP.",
            call("convert_currency", amount=100, from_currency="USD", to_currency="EUR"),
            [{"to_currency": "GBP"}],
        ),
        (
            "Convert 20 USD into euros, then 30 USD into pounds",
            call("convert_currency", amount=20, from_currency="USD", to_currency="EUR"),
            [{"amount": 30, "to_currency": "GBP"}],
        ),
        (
            "A loan of $400,000 at 4% over 15, 20 and 30 years",
            call("mortgage", loan=400000, rate=0.04, years=15),
            [{"years": 20}, {"years": 30}],
        ),
        ("Translate 'hi' into French and into Spanish.", call("translate", text="hi", target="fr"), [{"target": "es"}]),
        (  # the pattern is the run of values the items repeat: the unit is named once, for both
            "Sum of the temperatures in Oslo and in Cairo, in celsius?",
            call("get_weather", city="Oslo", unit="celsius"),
            [{"city": "Cairo"}],
        ),
        (  # words after the values belong to the pattern ("months")
            "Savings with solar energy for 12 months and wind energy for 8 months in the Midwest",
            call("savings", energy="solar", months=12, region="Midwest"),
            [{"energy": "wind", "months": 8}],
        ),
        (
            "Add todos 'call the plumber' and 'book the dentist'.",
            call("add_todo", task="call the plumber"),
            [{"task": "book the dentist"}],
        ),
    ],
)
def test_each_further_item_gets_the_first_calls_arguments_with_its_values(
    text: str, first: ToolCall, expected: list[dict[str, Any]]
) -> None:
    arguments = json.loads(first.function.arguments)
    assert more(text, first) == [arguments | changed for changed in expected]


@pytest.mark.parametrize(
    ("text", "first"),
    [
        ("Weather in Paris and the stock price of AAPL.", call("get_weather", city="Paris")),  # "the ..." is no city
        ("Fetch https://example.com/a and summarize it.", call("fetch", url="https://example.com/a")),
        ("Art shows at the Museum of Modern Art, New York.", call("get_weather", city="Museum of Modern Art")),
        ("Weather in Oslo tomorrow and in the evening", call("get_weather", city="Oslo")),
        ("Weather in Oslo?", call("get_weather", city="Oslo")),
        ("Add 1543 and 2981.", call("add", a=1543, b=2981)),  # the second number is the call's own
        ("Thai food in New York, NY", call("get_weather", city="New York")),  # a comma alone lists nothing
        ("Restaurants in Chicago, IL and the weather there", call("get_weather", city="Chicago")),
        ("A timer for 5 minutes and 30 seconds", call("timer", amount=5, unit="minutes")),  # one duration
        ("The square root of 16 plus 9", call("add", a=16)),
        ("Add 'milk' to my list, tagged 'food' and 'home'.", call("add_todo", task="milk", tags=["food", "home"])),
    ],
)
def test_no_further_call_where_nothing_is_listed(text: str, first: ToolCall) -> None:
    assert more(text, first) == []


def test_items_the_reply_has_already_and_the_calls_limit() -> None:
    text = "Weather in Oslo, in Cairo, in Lima and in Rome?"
    oslo, cairo = call("get_weather", city="Oslo"), call("get_weather", city="Cairo")
    added = listed_calls(text, [oslo, cairo], TOOLS, 3)
    assert [json.loads(c.function.arguments) for c in added] == [{"city": "Lima"}]
    assert listed_calls(text, [oslo], TOOLS, 1) == []
    assert more(text, oslo, limit=2) == [{"city": "Cairo"}]


def test_a_value_written_as_a_percentage_stays_a_fraction() -> None:
    first = call("mortgage", loan=1000, rate=0.04)
    assert more("1000 at 4% and at 5%", first) == [{"loan": 1000, "rate": 0.05}]
    assert more("1000 at 4% and at 5", first) == []  # not a percentage: not a fraction either


def test_the_reply_stream_adds_the_further_calls_after_whole_calls_only() -> None:
    text = "Weather in Oslo and in Cairo?"

    def stream() -> ToolCallStream:
        return ToolCallStream(further=lambda calls: listed_calls(text, calls, TOOLS, 3))

    whole = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'
    _, calls = parse_reply(whole, stream())
    assert [json.loads(c.function.arguments)["city"] for c in calls] == ["Oslo", "Cairo"]
    assert calls[0].id != calls[1].id
    _, cut = parse_reply(whole[:-5], stream())  # cut off by max_tokens inside the call, or after it
    assert len(cut) == 1
    assert len(split_reply(whole + "\n", ReplyStream(calls=stream()), cut=True)[2]) == 1


def test_odd_schemas_and_numbers_make_no_call_and_no_error() -> None:
    assert more("Use 15 and 30", call("odd", n=15)) == [{"n": 30}]  # bounds that are not numbers are ignored
    assert more("Use 15 and 20", call("odd", n=15)) == []  # the enum holds
    assert more("Say 'a' and 'b'", call("odd", s="a")) == [{"s": "b"}]
    huge = "9" * 400
    assert more(f"Add {huge} and {huge}1", call("add", a=10**400)) == []
    assert more(f"Add 1 and {huge}", call("add", a=1)) == []  # not a finite number
    steps = {"step": {"type": "object", "properties": {"n": {"type": "number", "multipleOf": 0.5}}}}
    assert listed_calls(f"Use 5 and 9{'9' * 307}", [call("step", n=5)], steps, 3) == []  # no OverflowError
    draft4 = {
        "d4": {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0, "exclusiveMinimum": True}}}
    }
    assert listed_calls("Use 5 and 0", [call("d4", n=5)], draft4, 3) == []
