"""Tool arguments are decoded under closed, bounded schemas: no invented keys, no runaway values, and a call cut off
by max_tokens never reaches the content as markup."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from autoqwen.local_llm import Engine, ServerConfig, create_app
from autoqwen.local_llm.argument_schema import (
    MAX_ITEMS,
    MAX_OBJECT_ITEMS,
    MAX_STRING_CHARS,
    MAX_STRING_ITEMS,
    Values,
    argument_schema,
    closed,
    conversation_values,
    for_tool,
)
from autoqwen.local_llm.grammars import json_grammar
from autoqwen.local_llm.protocol import ChatCompletionRequest, ResponseFormat
from autoqwen.local_llm.spans import MAX_SPAN_WORDS
from autoqwen.local_llm.spans import spans as spans_of
from autoqwen.local_llm.written_numbers import CLOCK_TIME

URL = "/v1/chat/completions"
# Most clients' schemas say nothing of additionalProperties; JSON Schema's default is open.
OPEN = {
    "type": "object",
    "properties": {
        "query": {"type": "string"},
        "filters": {"type": "object", "properties": {"year": {"type": "integer"}}},
        "tags": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
    },
    "required": ["query"],
}


def test_objects_that_list_properties_are_closed_at_every_depth() -> None:
    schema = argument_schema(OPEN)
    assert schema["additionalProperties"] is False
    assert schema["properties"]["filters"]["additionalProperties"] is False
    assert schema["properties"]["tags"]["items"]["additionalProperties"] is False
    assert "additionalProperties" not in OPEN  # the request's schema is not modified


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": True},
        {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "integer"}},
        {"type": "object"},  # a free-form object: nothing to close it to
    ],
)
def test_what_a_schema_says_of_other_keys_is_kept(schema: dict[str, Any]) -> None:
    assert closed(schema).get("additionalProperties") == schema.get("additionalProperties")


def test_all_of_parts_are_not_closed_one_by_one() -> None:
    schema = {"allOf": [{"properties": {"a": {}}}, {"properties": {"b": {}}}]}
    assert closed(schema) == schema


def test_refs_and_unions_are_closed_too() -> None:
    schema = closed(
        {
            "$defs": {"Point": {"type": "object", "properties": {"x": {"type": "number"}}}},
            "anyOf": [{"$ref": "#/$defs/Point"}, {"type": "object", "properties": {"r": {"type": "number"}}}],
        }
    )
    assert schema["$defs"]["Point"]["additionalProperties"] is False
    assert schema["anyOf"][1]["additionalProperties"] is False


def test_unbounded_values_get_bounds_and_given_bounds_are_kept() -> None:
    schema = argument_schema(
        {
            "type": "object",
            "properties": {
                "free": {"type": "string"},
                "short": {"type": "string", "maxLength": 5},
                "shaped": {"type": "string", "pattern": "^[a-z]+$"},
                "choice": {"type": "string", "enum": ["a", "b"]},
                "n": {"type": "integer"},
                "positive": {"type": "integer", "minimum": 1},
                "list": {"type": "array", "items": {"type": "string"}},
                "numbers": {"type": "array", "items": {"type": "number"}},
                "many": {"type": "array", "minItems": 40},
                "rows": {"type": "array", "items": {"type": "object", "properties": {"a": {"type": "string"}}}},
                "odd": {"type": "array", "minItems": True, "items": {"$ref": "#/$defs/Row"}},
            },
        }
    )
    props = schema["properties"]
    assert props["free"]["maxLength"] == MAX_STRING_CHARS and props["short"]["maxLength"] == 5
    assert "maxLength" not in props["shaped"] and "maxLength" not in props["choice"]
    assert props["n"]["minimum"] == -(10**15 - 1) and props["n"]["maximum"] == 10**15 - 1
    assert props["positive"]["minimum"] == 1 and props["positive"]["maximum"] == 10**15 - 1
    assert props["list"]["maxItems"] == MAX_STRING_ITEMS and props["list"]["items"]["maxLength"] == MAX_STRING_CHARS
    assert props["numbers"]["maxItems"] == MAX_ITEMS  # strings cost more tokens each: "criminal law near" x 16
    odd = argument_schema({"type": "object", "properties": {"a": {"type": "array", "items": {"enum": 5}}}})
    assert odd["properties"]["a"]["maxItems"] == MAX_ITEMS  # an enum that is no list: no error (found by review)
    assert props["many"]["maxItems"] == 40
    assert props["rows"]["maxItems"] == MAX_OBJECT_ITEMS  # each costs tens of tokens: 16 cut a call off
    assert props["odd"]["maxItems"] == MAX_OBJECT_ITEMS  # a $ref is no scalar; a flag is no minimum


def test_uri_strings_take_the_conversations_urls() -> None:
    schema = {"type": "object", "properties": {"url": {"type": "string", "format": "uri"}}}
    urls = ("https://example.com/a",)
    assert argument_schema(schema, Values(urls=urls))["properties"]["url"] == {"enum": list(urls)}
    assert argument_schema(schema)["properties"]["url"] == {"type": "string", "format": "uri"}


def values_of(text: str) -> Values:
    return conversation_values(
        ChatCompletionRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": text}]})
    )


def test_free_strings_take_spans_of_the_users_words() -> None:
    """Before: `"query": "search_papers"`, `protein_folding_protein_protein...`, "New York" for "New York, NY"."""
    schema = {"type": "object", "properties": {"city": {"type": "string", "description": "City"}}}
    city = argument_schema(schema, values_of("Weather in New York, NY tomorrow?"))["properties"]["city"]
    assert "New York, NY" in city["enum"] and "tomorrow" in city["enum"] and city["description"] == "City"
    assert all(not span.endswith(("?", ",")) for span in city["enum"])
    assert all(len(span.split()) <= MAX_SPAN_WORDS for span in city["enum"])
    shaped = {"type": "object", "properties": {"date": {"type": "string", "pattern": "^[0-9-]+$"}}}
    assert "enum" not in argument_schema(shaped, values_of("on 2025-01-06"))["properties"]["date"]


def test_a_span_does_not_cut_a_name_short() -> None:
    """Before, SmolLM2-135M wrote "New York" for "New York, NY", "Lakers" for "Los Angeles Lakers", "345 678" for a
    phone number, "Central Park" for "Central Park, NY"."""
    spans = values_of("Restaurants in New York, NY near Central Park, NY? Ask Maria Lopez on +34 612 345 678.").spans
    assert {"New York, NY", "Central Park, NY", "Maria Lopez", "+34 612 345 678", "York, NY", "Lopez"} <= set(spans)
    assert not {"New York", "Central Park", "Maria", "345 678", "+34 612"} & set(spans)
    spans = values_of("Play Yesterday by The Beatles. Check building Id B1004 with sides 3, 4, and 5.").spans
    assert {"Yesterday", "The Beatles", "B1004", "3", "4"} <= set(spans)  # a sentence's first word starts no name
    assert not {"The", "Id"} & set(spans)
    # Found by review: no name of "I", of codes in a list, of Title Case throughout, nor a number of two integers.
    spans = values_of("On Monday I go. Convert 100 USD, EUR and GBP. Flights to Paris, LA and NY. Add 15 20.").spans
    assert {"Monday", "USD", "Paris", "15"} <= set(spans)
    assert "Book" in values_of("Please Book A Table For Two Near Soho Now").spans


def test_an_optional_property_the_user_gives_a_value_is_required() -> None:
    """Before, "Set the thermostat to 21.5 degrees in heat mode" got no mode, "IMAX movie releases" no format."""
    mode = {"type": "string", "enum": ["heat", "cool", "auto"]}
    thermostat = {
        "type": "object",
        "properties": {"degrees": {"type": "number"}, "mode": mode},
        "required": ["degrees"],
    }
    schema = argument_schema(thermostat, values_of("Set the thermostat to 21.5 degrees in heat mode."))
    assert schema["required"] == ["degrees", "mode"] and schema["properties"]["mode"]["enum"] == ["heat"]
    assert argument_schema(thermostat, values_of("Set it to 21.5 degrees."))["required"] == ["degrees"]
    described = {"type": "string", "description": "Format of movies - could be 'IMAX', '2D' or '3D'."}
    schema = argument_schema({"type": "object", "properties": {"format": described}}, values_of("IMAX films in LA"))
    assert schema["required"] == ["format"] and schema["properties"]["format"]["enum"] == ["IMAX"]
    languages = {"type": "string", "enum": ["en", "de"]}
    translate = {"type": "object", "properties": {"target": languages, "source": languages}, "required": ["target"]}
    assert argument_schema(translate, values_of("Translate it into German"))["required"] == ["target"]  # shared
    # Found by review: not by short values, prefixes, short or quoted-in-words examples; required ones keep spans.
    sort = {"type": "string", "enum": ["new", "hot", "desc", "asc"]}
    grade = {"type": "string", "description": "The grade, 'A' or 'B'; the user's city, e.g. 'Paris'"}
    query = {"type": "string", "description": "Search query, e.g. 'python'"}
    schema = {"type": "object", "properties": {"sort": sort, "grade": grade, "query": query}, "required": ["query"]}
    got = argument_schema(schema, values_of("Describe hotels in New York, a school in Paris, python tutorials"))
    assert got["required"] == ["query", "grade"] and got["properties"]["grade"]["enum"] == ["Paris"]
    assert "python tutorials" in got["properties"]["query"]["enum"]


def test_a_number_written_before_a_word_of_a_parameters_name_is_its_value() -> None:
    """Before, "Find a hotel in Vienna from 2026-03-10 for 3 nights for 2 guests" got 2 nights."""
    hotel = {
        "type": "object",
        "properties": {
            "nights": {"type": "integer"},
            "guests": {"type": "integer"},
            "periods_per_year": {"type": "integer"},
            "rate": {"type": "number", "description": "as a fraction"},
        },
    }
    props = argument_schema(hotel, values_of("From 2026-03-10 for 3 nights for 2 guests, 12 per year"))["properties"]
    assert (props["nights"]["enum"], props["guests"]["enum"]) == ([3], [2])
    assert 2 in props["periods_per_year"]["enum"] and 3 in props["periods_per_year"]["enum"]  # "per year": no
    props = argument_schema(hotel, values_of("2 nights in Rome and 4 nights in Oslo"))["properties"]
    assert props["nights"]["enum"] == [2, 4]  # parallel items each keep theirs
    rate = {"type": "object", "properties": {"growth_rate": {"type": "number", "description": "a fraction"}}}
    assert argument_schema(rate, values_of("a 5 % rate"))["properties"]["growth_rate"]["enum"] == [0.05]


def test_a_clock_time_fills_hour_and_minute_and_is_no_text_for_them() -> None:
    """Before, "Set an alarm reminder at 22:00 to lock the door" got `{"text": "22:00", "time": {"hour": 22,
    "minute": 22}}`."""
    time = {"type": "object", "properties": {"hour": {"type": "integer"}, "minutes": {"type": "integer"}}}
    reminder = {"type": "object", "properties": {"text": {"type": "string"}, "time": time}}
    for said, hour, minute in (("at 22:00 to lock the door", 22, 0), ("at 9 o'clock to water the plants", 9, 0)):
        values = values_of(f"Remind me {said}.")
        props = argument_schema(reminder, for_tool(values, "set_reminder", reminder))["properties"]
        assert props["time"]["properties"]["hour"]["enum"] == [hour]
        assert props["time"]["properties"]["minutes"]["enum"] == [minute]
        assert not [span for span in props["text"]["enum"] if CLOCK_TIME.search(span)]  # then "7:15 to ..."
        assert {"to lock the door", "to water the plants"} & set(props["text"]["enum"])
        assert not {"Remind me", "9", "o'clock"} & set(props["text"]["enum"])  # the tool's word, the time's words
    comma = for_tool(values_of("Remind me at 7:15, take my pills"), "set_reminder", reminder).spans
    assert "take my pills" in comma and not [span for span in comma if "7:15" in span]  # found by review
    # Found by review: a duration counts ("for 2 hours"), "pm" adds 12, a count is no point ("5 years" is no
    # `year`), an hourly rate or a meeting's minutes take no clock times.
    room = {"type": "object", "properties": {"hours": {"type": "integer"}, "hour": {"type": "integer"}}}
    props = argument_schema(room, values_of("Book the room at 7:30 pm for 2 hours"))["properties"]
    assert (props["hours"]["enum"], props["hour"]["enum"]) == ([2], [19])
    census = {"type": "object", "properties": {"year": {"type": "integer"}}}
    assert 2020 in argument_schema(census, values_of("In 2020, 5 years after"))["properties"]["year"]["enum"]
    alarm = {"type": "object", "properties": {"text": {"type": "string"}, "HOUR": {}, "MINUTE": {}, "minutes": {}}}
    assert "at 7:15" not in for_tool(values_of("Wake me at 7:15"), "alarm", alarm).spans  # names in capitals
    timer = {"type": "object", "properties": {"timeout_minutes": {"type": "integer"}}}
    assert 7 in argument_schema(timer, values_of("Remind me at 7:45 pm"))["properties"]["timeout_minutes"]["enum"]
    rate = {"type": "object", "properties": {"query": {"type": "string"}, "hourly_rate": {"type": "number"}}}
    assert "talks at 10:30" in for_tool(values_of("Find talks at 10:30"), "find", rate).spans
    event = {"type": "object", "properties": {"title": {"type": "string"}, "date": {"type": "string"}}}
    spans = set(for_tool(values_of("Create an event called Team lunch on 2025-03-14."), "create_event", event).spans)
    assert {"Team lunch", "2025-03-14"} <= spans and "Team lunch on 2025-03-14" not in spans  # a date, alone
    stamped = for_tool(values_of("Log it at 2025-03-14T10:00"), "create_event", event).spans
    assert "2025-03-14T10:00" in stamped  # a date and time in one word is still a value
    plain = {"type": "object", "properties": {"at": {"type": "string"}}}  # a tool that takes the time as text
    assert (
        "3:15"
        in argument_schema(plain, for_tool(values_of("Wake me at 3:15"), "alarm", plain))["properties"]["at"]["enum"]
    )


def test_a_call_takes_no_span_made_only_of_its_tools_name() -> None:
    """Before, "What does the file notes.txt say?" got `read_file({"path": "file"})`."""
    values = values_of("What does the file notes.txt say? Search papers.")
    spans = set(for_tool(values, "read_file").spans)
    assert "notes.txt" in spans and not {"file", "the file"} & spans and "file" in values.spans
    assert not {"Search papers", "papers", "Search"} & set(for_tool(values, "searchPapers").spans)
    # Nor a span that holds one of its words: "Set a reminder" and "Remind me to call mom" were reminder texts.
    spans = set(for_tool(values_of("Remind me to call mom. Set a reminder for pills"), "set_reminder").spans)
    assert {"to call mom", "call mom", "pills"} <= spans and not [s for s in spans if "emind" in s]
    museum = set(for_tool(values_of("Hours of the Louvre Museum"), "museum_get_hours").spans)
    assert "Louvre Museum" in museum and "Museum" not in museum  # a name's capitalised word is the name's
    # Found by review: a quoted phrase or an address is the user's value as written.
    kept = for_tool(values_of("Show /var/log/file.log and 'my file list' and https://x.org/fetch-api"), "fetch_file")
    assert {"/var/log/file.log", "my file list", "https://x.org/fetch-api"} <= set(kept.spans)


def test_no_span_is_made_only_of_function_words() -> None:
    """Before, "What is" and "me" were spans a symbol or a text could take."""
    spans = set(values_of("What is Tesla's share price? Ticker TSLA, in the US. Say 'it is'").spans)
    assert {"Tesla's share price", "TSLA", "US", "it is"} <= spans
    assert not {"What", "What is", "is", "in the", "the"} & spans
    assert "What's" not in set(values_of("What's up?").spans)  # found by review: not a title word


def test_no_span_stops_before_an_object_or_holds_me() -> None:
    """Before, reminders' texts were "lock" (of "to lock the door") and "Remind me to call mom"."""
    spans = set(values_of("Remind me to lock the door. Send Bob the report, and mail ann@x.org a note").spans)
    assert {"to lock the door", "lock the door", "Bob", "Send Bob", "ann@x.org", "the report"} <= spans
    assert not {"lock", "to lock", "Remind me", "me to lock the door"} & spans
    assert "let me in" in set(values_of("Sing 'let me in'").spans)  # quoted: as written
    assert "please send me the report" in set(values_of("Text Ann: please send me the report").spans)  # a body
    assert not {"to call my", "call"} & set(values_of("I want to call my mom").spans)  # a possessive's object


def test_a_string_with_an_example_unlike_a_word_takes_spans_of_its_shape() -> None:
    """Before, "What is Tesla's share price? Ticker TSLA." got `{"symbol": "Tesla's share price"}`."""
    from autoqwen.local_llm.examples import examples, shaped

    symbol = {"type": "string", "description": "Ticker symbol, e.g. AAPL"}
    assert examples(symbol) == ["AAPL"]
    assert shaped(symbol, ["Tesla's", "Tesla's share price", "TSLA", "A"]) == ["TSLA"]
    zone = {"type": "string", "description": "IANA time zone, e.g. Europe/Paris"}
    assert shaped(zone, ["Tokyo", "Asia/Tokyo", "America/New_York"]) == ["Asia/Tokyo", "America/New_York"]
    assert shaped(zone, ["Tokyo", "in Tokyo"]) == ["Tokyo", "in Tokyo"]  # none has the shape: all
    city = {"type": "string", "description": "City name, e.g. Paris, or 'New York'"}  # words like most
    assert shaped(city, ["Oslo", "OSL"]) == ["Oslo", "OSL"]
    # Found by review: a lone quoted word, or a word after "e.g." that more words follow, is no example.
    for description in ('Terms joined with "OR"', "e.g. Hi Bob, see you", "e.g. 3pm meeting"):
        assert examples({"description": description}) == []
    assert examples({"description": "Format: 'IMAX', '2D' or '3D'"}) == ["IMAX", "2D", "3D"]
    schema = {"type": "object", "properties": {"symbol": symbol}}
    assert argument_schema(schema, values_of("Tesla's share price? Ticker TSLA."))["properties"]["symbol"] == {
        "description": "Ticker symbol, e.g. AAPL",
        "enum": ["TSLA"],
    }


def test_no_span_ends_with_a_word_a_phrase_goes_on_after() -> None:
    """Before, SmolLM2-135M titled an event "Team lunch on" and a reminder "Set a reminder for"."""
    spans = set(values_of("Create an event called Team lunch on Friday. Say 'on and on'").spans)
    assert {"Team lunch", "Team lunch on Friday", "on and on"} <= spans
    assert not {"Team lunch on", "Create an", "called Team lunch on", "Say 'on and"} & spans
    # Found by review: capitals end names ("Portland, OR", "Vitamin A"); a mark after the word hides nothing.
    assert {"Portland, OR", "rich in Vitamin A"} <= set(values_of("Weather in Portland, OR; rich in Vitamin A").spans)
    assert "Call me at" not in values_of("Call me at , .").spans


def test_an_address_is_a_span_only_alone() -> None:
    """Before, SmolLM2-135M read "What does the file notes.txt say?" as the path "file notes.txt"."""
    spans = set(
        values_of("What does the file notes.txt say? Mail bob@example.com, see https://x.org/a or /etc/hosts").spans
    )
    assert {"notes.txt", "bob@example.com", "https://x.org/a", "/etc/hosts", "What does the file"} <= spans
    assert not {s for s in spans if ("notes.txt" in s or "bob@" in s or "/etc" in s) and " " in s}
    blob = "x" * 3000 + ".txt"  # a pasted blob is not read as an address (the pattern would take long on it)
    assert f"read {blob}" in spans_of(["read", blob]) and "read notes.txt" not in spans_of(["read", "notes.txt"])
    kept = set(values_of("Pay 10.50 for lunch, e.g. soup, and/or salad; 'open notes.txt now'").spans)
    assert {"Pay 10.50 for lunch", "e.g. soup", "and/or salad", "open notes.txt now"} <= kept


def test_numbers_are_read_as_a_reader_reads_them() -> None:
    """Before: 50 million became 50, 2,000,000 became 200000, "5 %" 5.0 where a fraction was asked."""
    schema = {
        "type": "object",
        "properties": {
            "population": {"type": "integer"},
            "rate": {"type": "number", "description": "Growth rate as a fraction"},
            "count": {"type": "integer", "minimum": 1, "maximum": 100},
        },
    }
    props = argument_schema(schema, values_of("A city of 50 million grows 5 % a year; 2,000,000 left."))["properties"]
    assert 50_000_000 in props["population"]["enum"] and 2_000_000 in props["population"]["enum"]
    assert 0.05 in props["rate"]["enum"] and 5 not in props["rate"]["enum"]
    assert set(props["count"]["enum"]) <= set(range(1, 101))  # the schema's own bounds still hold
    assert "enum" not in argument_schema(schema, values_of("no numbers here"))["properties"]["population"]


def test_a_spare_number_is_not_how_a_written_one_begins() -> None:
    """Before: offered 10, 45, 0 and 1 for "10:45", SmolLM2-135M wrote 1 (and 1 for "1.267 billion"): the grammar let
    it stop after the first digit. 0, 1 and the default are offered only when no number the user wrote begins so."""
    schema = {"type": "object", "properties": {"start": {"type": "integer"}, "n": {"type": "number", "default": 4}}}
    props = argument_schema(schema, values_of("the standup meeting at 10:45"))["properties"]
    assert props["start"]["enum"] == [10, 45, 0] and props["n"]["enum"] == [10, 45, 0]  # 4 begins 45
    props = argument_schema(schema, values_of("1 or 12 apples, 0.5 kg, 40 pears"))["properties"]
    assert props["start"]["enum"] == [1, 12, 40, 0] and props["n"]["enum"] == [1, 12, 0.5, 40]


UNITS = ["km", "mi", "kg", "lb", "celsius", "fahrenheit", "m", "ft"]
CONVERT = {
    "type": "object",
    "properties": {
        "value": {"type": "number"},
        "from_unit": {"type": "string", "enum": UNITS},
        "to_unit": {"type": "string", "enum": UNITS},
    },
}


@pytest.mark.parametrize(
    ("request_text", "first", "second"),
    [
        ("Convert 26.2 miles to kilometers.", "mi", "km"),  # codes the user's words abbreviate
        ("What is 100 degrees Fahrenheit in Celsius?", "fahrenheit", "celsius"),  # not "ft" from "Fahrenheit"
        ("5 ft in m please", "ft", "m"),  # the codes themselves
        ("How many kilometers is 26.2 miles?", "mi", "km"),  # the value after the number is what it counts
        ("Is 12 celsius warm in fahrenheit?", "celsius", "fahrenheit"),
    ],
)
def test_enums_shared_by_several_parameters_take_the_named_values_in_order(
    request_text: str, first: str, second: str
) -> None:
    """Before: "miles to kilometers" gave from_unit km and to_unit km (SmolLM2-135M, all ten units offered)."""
    props = argument_schema(CONVERT, values_of(request_text))["properties"]
    assert (props["from_unit"]["enum"], props["to_unit"]["enum"]) == ([first], [second])


def test_enum_values_are_named_by_the_words_they_stem_or_abbreviate() -> None:
    def offered(text: str, enum: list[str]) -> list[str]:
        return argument_schema({"type": "string", "enum": enum}, values_of(text)).get("enum", enum)

    operations = ["add", "subtract", "multiply", "divide"]
    assert offered("Compute 2.5 multiplied by 4.", operations) == ["multiply"]
    assert offered("Subtracting 3 from 9", operations) == ["subtract"]
    # Other words for the same operation: "What is 12 times 7?" got `add`.
    assert offered("What is 12 times 7?", operations) == ["multiply"]
    assert offered("The sum of 3 and 4, divided by 2", ["sum", "div", "mul"]) == ["sum", "div"]
    assert offered("Take it 3 times a day", ["daily", "weekly"]) == ["daily", "weekly"]
    assert offered("How many Japanese yen is 50 US dollars?", ["USD", "EUR", "JPY"]) == ["USD", "JPY"]
    assert offered("Say 'thank you' in Japanese", ["en", "de", "ja"]) == ["ja"]
    assert offered("Translate 'hello' into French", ["en", "fr", "it"]) == ["fr"]  # "into" does not abbreviate "it"
    assert offered("What's 7 and 8?", operations) == operations  # none named: all stay
    assert offered("Use the add mode", ["add", {"mode": "x"}, [1], None]) == ["add"]  # values of any JSON type
    # One value named for two parameters sharing the enum: both keep it (the order cannot be told).
    props = argument_schema(CONVERT, values_of("How many pounds is 70 kg?"))["properties"]
    assert props["from_unit"]["enum"] == props["to_unit"]["enum"] == ["kg"]


def test_standard_codes_are_named_by_their_english_names() -> None:
    """Before: "Swiss francs", "British pounds", "yen" and "German" named no code (ISO 4217 currencies, ISO 639
    languages), and SmolLM2-135M converted EUR to EUR, translated into Italian."""

    def offered(text: str, enum: list[str]) -> list[str]:
        return argument_schema({"type": "string", "enum": enum}, values_of(text)).get("enum", enum)

    currencies = ["USD", "EUR", "GBP", "JPY", "CHF", "CAD"]
    assert offered("Change 2500 EUR into Swiss francs.", currencies) == ["EUR", "CHF"]
    assert offered("How many Japanese yen is 50 British pounds?", currencies) == ["GBP", "JPY"]
    assert offered("Convert 50 million yen to dollars.", currencies) == ["JPY"]  # dollars: USD or CAD?
    assert offered("Convert 50 million yen to dollars.", ["usd", "jpy"]) == ["usd", "jpy"]  # any case
    assert offered("Translate 'good night' into Spanish.", ["en", "es", "de"]) == ["es"]
    # Found by review: a whole name takes its last word from other values ("Canadian dollars" is not USD), common
    # words name no currency ("real time" is not BRL), accents need not be typed ("krona" is ISK's "króna"), and
    # names with a qualifier in parentheses name nothing.
    assert offered("Canadian dollars to euros", currencies) == ["EUR", "CAD"]
    assert offered("USD to EUR in real time", ["USD", "EUR", "BRL"]) == ["USD", "EUR"]
    assert offered("5000 Icelandic krona in euros", ["EUR", "ISK", "SEK"]) == ["EUR", "ISK"]
    assert offered("All languages, next day", ["mul", "usn", "add"]) == ["mul", "usn", "add"]
    exchange = {"type": "object", "properties": {"base": {"enum": currencies}, "target": {"enum": currencies}}}
    props = argument_schema(exchange, values_of("What's the exchange rate from Swiss francs to euros?"))
    assert (props["properties"]["base"]["enum"], props["properties"]["target"]["enum"]) == (["CHF"], ["EUR"])


def test_response_format_schemas_are_closed_but_not_bounded() -> None:
    fmt = ResponseFormat.model_validate(
        {
            "type": "json_schema",
            "json_schema": {"name": "x", "schema": {"type": "object", "properties": OPEN["properties"]}},
        }
    )
    grammar = json_grammar(fmt)
    assert grammar is not None
    schema = json.loads(grammar.split("%json ", 1)[1])
    assert schema["additionalProperties"] is False and "maxLength" not in schema["properties"]["query"]


# --- Through the server, from random weights (the worst a model can do) ---------------------------------------------


@pytest.fixture(scope="module")
def client(tiny_engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(tiny_engine, ServerConfig(aliases=("tiny",)))) as c:
        yield c


def ask(client: TestClient, parameters: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    tool = {"type": "function", "function": {"name": "search", "parameters": parameters}}
    payload = {
        "model": "tiny",
        "messages": [{"role": "user", "content": "Search for graph neural networks."}],
        "tools": [tool],
        "tool_choice": "required",
        "temperature": 1.0,
        **overrides,
    }
    r = client.post(URL, json=payload)
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]


@pytest.mark.parametrize("seed", range(8))
def test_calls_never_hold_keys_the_schema_does_not_name(client: TestClient, seed: int) -> None:
    """Before, an open schema let the model add keys of its own (`maxResults`, `resultsInSortedOrder`)."""
    schema = {"type": "object", "properties": {"query": {"type": "string", "maxLength": 12}}}
    choice = ask(client, schema, seed=seed, max_tokens=400)
    assert choice["finish_reason"] == "tool_calls"
    for call in choice["message"]["tool_calls"]:
        assert set(json.loads(call["function"]["arguments"])) <= {"query"}


@pytest.mark.parametrize("stream", [False, True])
def test_a_call_cut_off_by_max_tokens_is_a_call_with_finish_reason_length(client: TestClient, stream: bool) -> None:
    """Before, the `<tool_call>` block came back as the assistant's text, with no tool_calls."""
    schema = {"type": "object", "properties": {"query": {"type": "string", "minLength": 200}}, "required": ["query"]}
    if not stream:
        choice = ask(client, schema, seed=1, max_tokens=80)
        calls, content, finish = choice["message"]["tool_calls"], choice["message"]["content"], choice["finish_reason"]
    else:
        calls, content, finish = streamed(client, schema)
    assert finish == "length" and not content
    assert [c["function"]["name"] for c in calls] == ["search"]
    assert calls[0]["function"]["arguments"].startswith('{"query": "')


def streamed(client: TestClient, schema: dict[str, Any]) -> tuple[list[dict[str, Any]], str, str | None]:
    tool = {"type": "function", "function": {"name": "search", "parameters": schema}}
    payload = {
        "model": "tiny",
        "messages": [{"role": "user", "content": "Search for graph neural networks."}],
        "tools": [tool],
        "tool_choice": "required",
        "seed": 1,
        "max_tokens": 80,
        "stream": True,
    }
    calls, content, finish = [], "", None
    with client.stream("POST", URL, json=payload) as r:
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            choice = json.loads(line.removeprefix("data: "))["choices"][0]
            content += choice["delta"].get("content") or ""
            calls += choice["delta"].get("tool_calls") or []
            finish = choice["finish_reason"] or finish
    return calls, content, finish


def test_enums_are_dealt_only_one_mention_a_parameter() -> None:
    """Parallel calls ("5 km to mi and 7 km to ft") and lists keep every named value for each parameter."""
    for text in ("Convert 5 km to mi and 7 km to ft.", "Convert 10 km to mi, ft and m."):
        props = argument_schema(CONVERT, values_of(text))["properties"]
        assert props["from_unit"]["enum"] == props["to_unit"]["enum"] and "mi" in props["to_unit"]["enum"]


def test_words_that_name_nothing() -> None:
    """Found by review: "from" named fr, "English" both en and es, the m of "I'm" named m."""

    def offered(text: str, enum: list[str]) -> list[str]:
        return argument_schema({"type": "string", "enum": enum}, values_of(text)).get("enum", enum)

    languages = ["en", "fr", "de", "es"]
    assert offered("Translate 'hello' from Engl to Germ", languages) == languages  # none named for sure
    assert offered("Translate 'hello' from English to German", languages) == ["en", "de"]  # by their names
    assert offered("I'm converting 5 ft to km", UNITS) == ["km", "ft"]
    # Words in quotes are what to act on, not choices: "is the" abbreviated `it` (SmolLM2-135M took it).
    assert offered("Translate 'Where is the train station?' into German.", ["en", "de", "it"]) == ["de"]
    assert offered("Translate 'is the' to Italian", ["en", "de", "it"]) == ["it"]  # by its name, outside the quote


def test_quotes_curly_or_after_a_stray_apostrophe_and_backslashes() -> None:
    spans = values_of("I've been busy 'cause of work. Add 'renew passport' and \u201cbuy milk\u201d. \\ \\").spans
    assert "renew passport" in spans and "buy milk" in spans
    assert all(span.strip() and "\\" not in span for span in spans)


def test_free_strings_side_by_side_keep_every_span() -> None:
    """Only the schema's own enums are dealt out in order, not the spans two free strings are limited to."""
    flights = {"type": "object", "properties": {"origin": {"type": "string"}, "destination": {"type": "string"}}}
    props = argument_schema(flights, values_of("Find flights from Oslo to Rome."))["properties"]
    assert props["origin"]["enum"] == props["destination"]["enum"] and {"Oslo", "Rome"} <= set(props["origin"]["enum"])


def test_a_quoted_phrase_is_a_span_of_its_own_and_in_no_other() -> None:
    """Before: add_todo({"task": "renew"}) for 'renew passport'; "Where is the train station?' into German"."""
    spans = values_of(
        "Translate 'Where is the train station?' into German, and add 'renew passport'. Don't wait."
    ).spans
    assert "Where is the train station" in spans and "renew passport" in spans
    assert not [
        s
        for s in spans
        if ("station" in s or "renew" in s) and s not in ("Where is the train station", "renew passport")
    ]
    assert "Don't wait" in spans  # an apostrophe opens no quote
