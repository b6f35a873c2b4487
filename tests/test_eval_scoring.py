"""The tool-use suite's scoring (benchmarks/eval_scoring.py) and data, without a model."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from eval_cases import ANY, CATEGORIES, OPTIONAL, Case, load_cases, load_tasks, quick, tool_library
from eval_fake_tools import run_tool
from eval_scoring import (
    ParsedCall,
    answer_holds,
    closed,
    has_markup,
    parse_call,
    score_case,
    standardize,
    validates,
)


def _case(category: str, tools: list[str], answer: list[tuple[str, dict[str, list[Any]]]]) -> Case:
    library = tool_library()
    calls = [{"name": n, "arguments": a} for n, a in answer]
    return Case("t", category, "test", "q", [library[t] for t in tools], calls)


def _call(name: str, **args: Any) -> ParsedCall:
    import json

    return parse_call(name, json.dumps(args))


def _kinds(case: Case, calls: list[ParsedCall]) -> list[str]:
    return [e.kind for e in score_case(case, calls)]


PAPERS = _case("simple", ["search_papers"], [("search_papers", {"query": ["diffusion models"], "max_results": [5]})])


def test_right_call_scores_no_error() -> None:
    assert _kinds(PAPERS, [_call("search_papers", query="Diffusion Models", max_results=5.0)]) == []


@pytest.mark.parametrize(
    ("call", "kind"),
    [
        (_call("search_papers", query="diffusion models", max_results=5, maxResults=10), "extra key"),
        (_call("search_papers", query="diffusion models"), "missing required"),
        (_call("search_papers", query="search_papers", max_results=5), "wrong value"),
        (_call("search_papers", query="diffusion models", max_results="5"), "wrong value"),
        (_call("get_weather", city="Paris"), "wrong tool"),
        (ParsedCall("search_papers", None, '{"query": "diff'), "arguments not JSON"),
    ],
)
def test_failures_the_issue_lists_are_detected(call: ParsedCall, kind: str) -> None:
    assert _kinds(PAPERS, [call]) == [kind]


def test_values_copied_unfaithfully_are_wrong() -> None:
    budget = _case("simple", ["set_budget"], [("set_budget", {"department": ["marketing"], "amount": [50000000]})])
    assert _kinds(budget, [_call("set_budget", department="marketing", amount=50)]) == ["wrong value"]
    loan = _case("simple", ["calculate_loan_payment"], [("calculate_loan_payment", {"annual_rate": [0.05]})])
    assert _kinds(loan, [_call("calculate_loan_payment", annual_rate=5)]) == ["wrong value"]
    assert _kinds(loan, [_call("calculate_loan_payment", annual_rate="5 %")]) == ["wrong value"]
    food = _case("simple", ["find_restaurants"], [("find_restaurants", {"location": ["New York, NY"]})])
    assert _kinds(food, [_call("find_restaurants", location="New York")]) == ["wrong value"]
    assert _kinds(food, [_call("find_restaurants", location="new york, ny ")]) == []


def test_parallel_calls_match_in_any_order_and_count() -> None:
    case = _case(
        "parallel",
        ["get_weather"],
        [("get_weather", {"city": ["Oslo"], "unit": [OPTIONAL, ANY]}), ("get_weather", {"city": ["Cairo"]})],
    )
    assert _kinds(case, [_call("get_weather", city="Cairo"), _call("get_weather", city="Oslo", unit="celsius")]) == []
    assert _kinds(case, [_call("get_weather", city="Oslo")]) == ["wrong number of calls"]
    assert _kinds(case, []) == ["no call"]


def test_irrelevance_is_right_without_a_call() -> None:
    case = _case("irrelevance", ["get_weather"], [])
    assert _kinds(case, []) == []
    assert _kinds(case, [_call("get_weather", city="Paris")]) == ["called when none fit"]


def test_closed_schema_refuses_invented_keys_unless_open() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "object", "properties": {"b": {"type": "integer"}}}, "c": {"type": "object"}},
        "additionalProperties": True,
    }
    shut = closed(schema)
    assert shut["additionalProperties"] is True  # the schema said so
    assert shut["properties"]["a"]["additionalProperties"] is False
    assert "additionalProperties" not in shut["properties"]["c"]  # free-form: no properties listed
    schemas = {"t": {"type": "object", "properties": {"url": {"type": "string"}}}}
    assert validates(_call("t", url="https://example.com"), schemas)
    assert not validates(_call("t", url="x", maxResults=3), schemas)
    assert not validates(_call("other", url="x"), schemas)


def test_markup_and_final_answers() -> None:
    assert has_markup('<tool_call>\n{"name": "add", "argu')
    assert not has_markup(None) and not has_markup("It is 18 degrees.")
    assert answer_holds("The sum is 5,555.", ["5555"])
    assert not answer_holds("The answer is 123483.", ["5555"])
    assert answer_holds("42 km is about 26.0976 miles", ["26.1"])
    assert not answer_holds("about 26 miles", ["26.1"])
    assert answer_holds("Sydney, at 23 degrees.", ["Sydney", "23"]) and not answer_holds("Oslo: 4", ["Sydney", "23"])
    assert answer_holds('Found "Deep folding: ..."', ["Deep Folding"])
    assert standardize("New York, NY") == "newyorkny"


def _example(schema: dict[str, Any]) -> Any:
    """Some value that validates against a schema (for an `<any>` argument)."""
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        return {k: _example(s) for k, s in schema.get("properties", {}).items() if k in schema.get("required", [])}
    if kind == "array":
        return []
    if kind in ("integer", "number"):
        return schema.get("minimum", 1)
    if kind == "boolean":
        return True
    return "2026-01-01" if "pattern" in schema else "x"


def _ideal(values: Any, schema: dict[str, Any]) -> Any:
    """The first accepted value of an argument, nested objects included."""
    value = next(v for v in values if v != OPTIONAL)
    if value == ANY:
        return _example(schema)
    return _plain(value, schema)


def _plain(value: Any, schema: dict[str, Any]) -> Any:
    if isinstance(value, dict):  # BFCL's nested objects: each key with its accepted values
        props = schema.get("properties", {})
        return {k: _ideal(v, props.get(k, {})) for k, v in value.items() if v != [OPTIONAL]}
    if isinstance(value, list):
        return [_plain(item, schema.get("items", {})) for item in value]
    return value


def test_the_suite_has_its_cases_and_every_answer_is_reachable() -> None:
    cases = load_cases()
    counts = {c: sum(case.category == c for case in cases) for c in CATEGORIES}
    assert len(cases) >= 200 and all(n >= 20 for n in counts.values()), counts
    assert len(load_tasks()) >= 30
    assert len({case.id for case in cases}) == len(cases)
    for case in cases:
        calls = []
        for want in case.answer:
            schema = case.schemas[want["name"]]
            props = schema.get("properties", {})
            args = {k: _ideal(v, props.get(k, {})) for k, v in want["arguments"].items() if v != [OPTIONAL]}
            calls.append(ParsedCall(want["name"], args, ""))
        assert score_case(case, calls) == [], case.id
        assert all(validates(call, case.schemas) for call in calls), case.id
    small, tasks = quick(cases, load_tasks())
    assert {c.category for c in small} == set(CATEGORIES) and len(small) < 40 and tasks


def test_fake_tools_are_deterministic_and_refuse_bad_arguments() -> None:
    assert run_tool("add", {"a": 1234, "b": 4321}) == "5555"
    assert "4 degrees" in run_tool("get_weather", {"city": "Oslo", "unit": "celsius"})
    assert run_tool("get_weather", {"city": "Nowhere"}) == run_tool("get_weather", {"city": "Nowhere"})
    assert run_tool("calculator", {"a": 1}).startswith("Error")
    assert run_tool("add", None).startswith("Error")
