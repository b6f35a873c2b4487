"""Deterministic fake implementations of the suite's own tools, for the multi-step tasks.

Each result holds values the model cannot know beforehand (a temperature, a price, an id), so a task's expected
answer shows whether the model read the result. Unknown inputs get a stable made-up value (from a CRC of the
input), bad arguments an error text, as a real tool would answer.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

__all__ = ["run_tool"]

Args = dict[str, Any]

_CELSIUS = {"paris": 18, "tokyo": 24, "london": 12, "berlin": 9, "madrid": 27, "oslo": 4, "cairo": 31, "rome": 21}
_CELSIUS |= {"sydney": 23, "new york": 15, "lisbon": 19, "chicago": 7}
_PER_USD = {"USD": 1.0, "EUR": 0.92, "GBP": 0.8, "JPY": 152.0, "CHF": 0.9}
_STOCKS = {"AAPL": 187.42, "MSFT": 412.6, "NVDA": 903.15, "TSLA": 251.3}
_UNITS = {("km", "mi"): 0.621371, ("mi", "km"): 1.609344, ("kg", "lb"): 2.20462, ("lb", "kg"): 0.453592}
_UNITS |= {("m", "ft"): 3.28084, ("ft", "m"): 0.3048, ("l", "gal"): 0.264172, ("gal", "l"): 3.78541}
_UTC_OFFSET = {"asia/tokyo": 9, "europe/paris": 1, "europe/london": 0, "america/new_york": -5, "australia/sydney": 11}
_PACKAGES = {
    "1Z999AA10123456784": "In transit in Leipzig, arriving 2026-12-09",
    "940011189922385": "Out for delivery tomorrow, arriving 2026-12-11",
}
_FILES = {"notes.txt": "Meeting with Dana moved to 15:30 on Thursday.", "/tmp/todo.txt": "1. call the bank"}
_FOLDERS = {"/home/ann/reports": ["q1.pdf", "q2.pdf", "q3.pdf", "q4.pdf", "summary.docx", "budget.xlsx", "notes.txt"]}
_DISTANCES = {frozenset({"paris", "berlin"}): 1054, frozenset({"boston", "new york"}): 346}
_POPULATION = {"iceland": 387758, "norway": 5550593, "canada": 40097761, "japan": 124516650, "brazil": 216422446}
_WORDS = {"petrichor": "the pleasant smell of the first rain on dry ground", "serendipity": "a happy accident"}


def _number(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _made_up(text: str, low: int, high: int) -> int:
    return low + zlib.crc32(text.strip().lower().encode()) % (high - low)


def _weather(a: Args) -> str:
    city = str(a["city"])
    celsius = _CELSIUS.get(city.split(",")[0].strip().lower(), _made_up(city, 0, 30))
    if a.get("unit") == "fahrenheit":
        return f"{city}: {round(celsius * 9 / 5 + 32)} degrees fahrenheit, sunny"
    return f"{city}: {celsius} degrees celsius, sunny"


def _forecast(a: Args) -> str:
    base = _CELSIUS.get(str(a["city"]).lower(), _made_up(str(a["city"]), 0, 30))
    return "; ".join(f"day {d + 1}: {base + d % 3 - 1} C" for d in range(int(a["days"])))


def _calculator(a: Args) -> str:
    x, y, op = float(a["a"]), float(a["b"]), a["operation"]
    ops = {"add": x + y, "subtract": x - y, "multiply": x * y, "divide": x / y if y else float("nan")}
    return f"The result is {_number(ops[op])}."


def _convert_currency(a: Args) -> str:
    amount, src, dst = float(a["amount"]), a["from_currency"], a["to_currency"]
    return f"{_number(amount)} {src} = {_number(amount / _PER_USD[src] * _PER_USD[dst])} {dst}"


def _exchange_rate(a: Args) -> str:
    return f"1 {a['base']} = {_number(_PER_USD[a['target']] / _PER_USD[a['base']])} {a['target']}"


def _stock(a: Args) -> str:
    symbol = str(a["symbol"]).upper()
    price = _STOCKS.get(symbol, _made_up(symbol, 10, 500) + 0.25)
    return f"{symbol}: {price:.2f} USD"


def _units(a: Args) -> str:
    value, src, dst = float(a["value"]), a["from_unit"], a["to_unit"]
    if (src, dst) == ("celsius", "fahrenheit"):
        out = value * 9 / 5 + 32
    elif (src, dst) == ("fahrenheit", "celsius"):
        out = (value - 32) * 5 / 9
    elif (src, dst) in _UNITS:
        out = value * _UNITS[src, dst]
    else:
        return f"Error: cannot convert {src} to {dst}"
    return f"{_number(value)} {src} = {_number(out)} {dst}"


def _time(a: Args) -> str:
    zone = str(a["timezone"])
    offset = _UTC_OFFSET.get(zone.lower())
    if offset is None:
        return f"Error: unknown time zone {zone!r}"
    return f"{zone}: {(14 + offset) % 24:02d}:05"


def _directions(a: Args) -> str:
    if "louvre" in str(a["origin"]).lower() and a.get("mode") == "walking":
        return "1.6 km, 22 minutes on foot via Rue de Rivoli"
    km = _made_up(f"{a['origin']}|{a['destination']}", 2, 90)
    return f"{km} km, {km * 2} minutes by {a.get('mode', 'driving')}"


def _distance(a: Args) -> str:
    pair = frozenset({str(a["origin"]).lower(), str(a["destination"]).lower()})
    return f"{_DISTANCES.get(pair, _made_up('|'.join(sorted(pair)), 50, 2000))} km by road"


def _population(a: Args) -> str:
    country = str(a["country"])
    return f"{country}: {_POPULATION.get(country.lower(), _made_up(country, 10**5, 10**8)):,} people (2024)"


def _loan(a: Args) -> str:
    principal, rate, years = float(a["principal"]), float(a["annual_rate"]), int(a["years"])
    monthly, n = rate / 12, years * 12
    payment = principal / n if monthly == 0 else principal * monthly / (1 - (1 + monthly) ** -n)
    return f"Monthly payment: {payment:.2f}"


def _list_directory(a: Args) -> str:
    files = _FOLDERS.get(str(a["path"]).rstrip("/"), ["readme.txt"])
    return f"{len(files)} files: {', '.join(files)}"


_TOOLS: dict[str, Callable[[Args], str]] = {
    "get_weather": _weather,
    "get_forecast": _forecast,
    "calculator": _calculator,
    "add": lambda a: f"{_number(float(a['a']) + float(a['b']))}",
    "multiply": lambda a: f"{_number(float(a['a']) * float(a['b']))}",
    "convert_currency": _convert_currency,
    "get_exchange_rate": _exchange_rate,
    "get_stock_price": _stock,
    "convert_units": _units,
    "get_time": _time,
    "get_directions": _directions,
    "get_distance": _distance,
    "get_population": _population,
    "calculate_loan_payment": _loan,
    "calculate_tip": lambda a: f"Tip: {_number(float(a['bill_amount']) * float(a['tip_percent']) / 100)}",
    "search_papers": lambda a: f'1. "Deep Folding: {str(a["query"]).strip().title()} at Scale" (2024), by L. Moreau',
    "create_event": lambda a: f"Created event EVT-4471 '{a['title']}' on {a['date']}.",
    "send_email": lambda a: f"Email sent to {a['to']} (message id MSG-2093).",
    "set_reminder": lambda a: f"Reminder R-318 set for {int(a['time']['hour']):02d}:{int(a['time']['minute']):02d}",
    "track_package": lambda a: _PACKAGES.get(str(a["tracking_number"]), "Label created, not yet shipped"),
    "read_file": lambda a: _FILES.get(str(a["path"]), f"Error: no such file: {a['path']}"),
    "write_file": lambda a: f"Wrote {len(str(a['content']))} characters to {a['path']}",
    "list_directory": _list_directory,
    "add_todo": lambda a: f"Added task T-5521: {a['task']}",
    "list_todos": lambda a: "1 open task: T-5521 file my taxes",
    "search_flights": lambda a: f"SK 4711 {a['origin']}-{a['destination']} on {a['date']} at 08:15, 189 EUR",
    "search_hotels": lambda a: f"Hotel Aurora, {a['city']}: 95 EUR a night, {int(a['nights']) * 95} EUR in all",
    "define_word": lambda a: _WORDS.get(str(a["word"]).lower(), f"{a['word']}: no definition found"),
    "web_search": lambda a: f"1. {a['query']} - Wikipedia (en.wikipedia.org)",
    "count_words": lambda a: str(len(str(a["text"]).split())),
}


def run_tool(name: str, args: Args | None) -> str:
    """The fake tool's result for these arguments (deterministic); bad input comes back as an error text."""
    if args is None:
        return "Error: the arguments are not a JSON object"
    tool = _TOOLS.get(name)
    if tool is None:
        return f"Done: {name} succeeded."
    try:
        return tool(args)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return f"Error: bad arguments for {name}: {exc!r}"
