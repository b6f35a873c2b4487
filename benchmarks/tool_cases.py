"""The fixed cases of benchmarks/eval_tools.py: seven tools, single-turn prompts, multi-step tasks, fake tools.

Every tool has a deterministic fake implementation, so a multi-step task's expected answer is known in advance:
it is a value that appears only in the tool's result (a temperature, a product, a converted amount, an id).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["PROMPTS", "TASKS", "TOOLS", "Prompt", "Task", "run_tool"]

CURRENCIES = ["USD", "EUR", "GBP", "JPY", "CHF"]


def _tool(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    parameters = {"type": "object", "properties": properties, "required": required, "additionalProperties": False}
    return {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}


TOOLS: list[dict[str, Any]] = [
    _tool(
        "get_weather",
        "Get the current weather in a city.",
        {
            "city": {"type": "string", "description": "City name, e.g. Paris"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        ["city", "unit"],
    ),
    _tool(
        "calculator",
        "Do arithmetic on two numbers.",
        {
            "operation": {"type": "string", "enum": ["add", "subtract", "multiply", "divide"]},
            "a": {"type": "number"},
            "b": {"type": "number"},
        },
        ["operation", "a", "b"],
    ),
    _tool(
        "search_papers",
        "Search scientific papers by topic.",
        {
            "query": {"type": "string", "description": "What to search for"},
            "max_results": {"type": "integer", "minimum": 1, "maximum": 10},
        },
        ["query", "max_results"],
    ),
    _tool(
        "send_email",
        "Send an email.",
        {
            "to": {"type": "string", "description": "Recipient email address"},
            "subject": {"type": "string"},
            "body": {"type": "string"},
        },
        ["to", "subject", "body"],
    ),
    _tool(
        "create_event",
        "Create a calendar event.",
        {
            "title": {"type": "string"},
            "date": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$", "description": "YYYY-MM-DD"},
            "attendees": {"type": "array", "items": {"type": "string"}, "maxItems": 5},
        },
        ["title", "date", "attendees"],
    ),
    _tool(
        "convert_currency",
        "Convert an amount of money from one currency to another.",
        {
            "amount": {"type": "number"},
            "from_currency": {"type": "string", "enum": CURRENCIES},
            "to_currency": {"type": "string", "enum": CURRENCIES},
        },
        ["amount", "from_currency", "to_currency"],
    ),
    _tool(
        "set_reminder",
        "Set a reminder at a time of day.",
        {
            "text": {"type": "string", "description": "What to be reminded of"},
            "time": {
                "type": "object",
                "properties": {
                    "hour": {"type": "integer", "minimum": 0, "maximum": 23},
                    "minute": {"type": "integer", "minimum": 0, "maximum": 59},
                },
                "required": ["hour", "minute"],
                "additionalProperties": False,
            },
        },
        ["text", "time"],
    ),
]


@dataclass(frozen=True)
class Prompt:
    """One single-turn prompt: the tool it needs and, optionally, one key argument (dotted path) and its value."""

    text: str
    tool: str
    key: str | None = None
    value: Any = None


PROMPTS: list[Prompt] = [
    Prompt("What is the weather in Paris?", "get_weather", "city", "Paris"),
    Prompt("How hot is it in Tokyo right now, in fahrenheit?", "get_weather", "city", "Tokyo"),
    Prompt("Is it raining in London today?", "get_weather", "city", "London"),
    Prompt("Tell me the current temperature in Berlin in celsius.", "get_weather", "unit", "celsius"),
    Prompt("I'm flying to Madrid tomorrow. What's the weather like there?", "get_weather", "city", "Madrid"),
    Prompt("What is 12 times 7?", "calculator", "operation", "multiply"),
    Prompt("Add 1543 and 2981.", "calculator", "a", 1543),
    Prompt("Divide 144 by 12.", "calculator", "operation", "divide"),
    Prompt("How much is 90 minus 37?", "calculator", "operation", "subtract"),
    Prompt("Compute 2.5 multiplied by 4.", "calculator", "b", 4),
    Prompt("Find papers about quantum computing.", "search_papers", "query", "quantum computing"),
    Prompt("Search for 3 research papers on protein folding.", "search_papers", "max_results", 3),
    Prompt("Look up recent scientific papers about large language models.", "search_papers", "query", "language model"),
    Prompt("I need 5 papers on graph neural networks.", "search_papers", "max_results", 5),
    Prompt("Are there any studies on coral reef bleaching?", "search_papers", "query", "coral"),
    Prompt(
        "Send an email to bob@example.com saying the meeting is moved to Friday.", "send_email", "to", "bob@example.com"
    ),
    Prompt(
        "Email alice@example.org with the subject 'Invoice' and tell her it is paid.",
        "send_email",
        "subject",
        "Invoice",
    ),
    Prompt("Write to team@example.com that the release is done.", "send_email", "to", "team@example.com"),
    Prompt("Please send carol@example.com a thank-you note for the flowers.", "send_email", "to", "carol@example.com"),
    Prompt("Create an event called Team lunch on 2025-03-14 with Ann and Ben.", "create_event", "date", "2025-03-14"),
    Prompt("Schedule a meeting titled Budget review on 2025-06-02.", "create_event", "title", "Budget review"),
    Prompt("Put a dentist appointment in my calendar for 2025-11-20.", "create_event", "date", "2025-11-20"),
    Prompt(
        "Add a calendar event 'Sprint planning' on 2025-01-06 with dev@example.com.",
        "create_event",
        "title",
        "Sprint planning",
    ),
    Prompt(
        "Book a birthday party event on 2025-08-09 and invite Tom, Sue and Max.", "create_event", "date", "2025-08-09"
    ),
    Prompt("Convert 100 USD to EUR.", "convert_currency", "amount", 100),
    Prompt("How many Japanese yen is 50 British pounds?", "convert_currency", "to_currency", "JPY"),
    Prompt("Change 2500 EUR into Swiss francs.", "convert_currency", "from_currency", "EUR"),
    Prompt("What is 75 GBP in US dollars?", "convert_currency", "amount", 75),
    Prompt("Exchange 1000 CHF to USD.", "convert_currency", "from_currency", "CHF"),
    Prompt("Remind me to call mom at 18:30.", "set_reminder", "time.hour", 18),
    Prompt("Set a reminder for 7:15 to take my pills.", "set_reminder", "time.minute", 15),
    Prompt("Remind me at 9 o'clock to water the plants.", "set_reminder", "time.hour", 9),
    Prompt("Set an alarm reminder at 22:00 to lock the door.", "set_reminder", "time.hour", 22),
    Prompt("Don't let me forget the standup meeting at 10:45.", "set_reminder", "time.minute", 45),
    Prompt("Remind me to buy milk.", "set_reminder"),
]


@dataclass(frozen=True)
class Task:
    """A multi-step task: the reply after the tool's result must contain `expected`, which only the result holds."""

    text: str
    tool: str
    expected: str


TASKS: list[Task] = [
    Task("What is the weather in Paris?", "get_weather", "18"),
    Task("How warm is it in Tokyo, in celsius?", "get_weather", "24"),
    Task("What is 12 times 7?", "calculator", "84"),
    Task("What is 1543 plus 2981?", "calculator", "4524"),
    Task("Convert 100 USD to EUR.", "convert_currency", "92"),
    Task("How many yen is 50 GBP?", "convert_currency", "9500"),
    Task("Find one paper about protein folding.", "search_papers", "Deep Folding"),
    Task("Create an event called Team lunch on 2025-03-14.", "create_event", "EVT-4471"),
    Task("Send an email to bob@example.com saying the meeting moved to Friday.", "send_email", "MSG-2093"),
    Task("Remind me to call mom at 18:30.", "set_reminder", "R-318"),
]

_TEMPERATURES = {"paris": 18, "tokyo": 24, "london": 12, "berlin": 9, "madrid": 27}
_PER_USD = {"USD": 1.0, "EUR": 0.92, "GBP": 0.8, "JPY": 152.0, "CHF": 0.9}


def _number(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def run_tool(name: str, args: dict[str, Any]) -> str:
    """The fake tool's result for these arguments (deterministic); bad input comes back as an error text."""
    try:
        if name == "get_weather":
            city = str(args["city"])
            celsius = _TEMPERATURES.get(city.strip().lower(), 15)
            if args.get("unit") == "fahrenheit":
                return f"{city}: {round(celsius * 9 / 5 + 32)} degrees fahrenheit, sunny"
            return f"{city}: {celsius} degrees celsius, sunny"
        if name == "calculator":
            a, b, op = float(args["a"]), float(args["b"]), args["operation"]
            ops = {"add": a + b, "subtract": a - b, "multiply": a * b, "divide": a / b if b else float("nan")}
            return f"The result is {_number(ops[op])}."
        if name == "convert_currency":
            amount = float(args["amount"])
            src, dst = args["from_currency"], args["to_currency"]
            return f"{_number(amount)} {src} = {_number(amount / _PER_USD[src] * _PER_USD[dst])} {dst}"
        if name == "search_papers":
            topic = str(args["query"]).strip().title()
            return f'1. "Deep Folding: {topic} at Scale" (2024), by L. Moreau and K. Tanaka'
        if name == "create_event":
            return f"Created event EVT-4471 '{args['title']}' on {args['date']}."
        if name == "send_email":
            return f"Email sent to {args['to']} (message id MSG-2093)."
        if name == "set_reminder":
            time = args["time"]
            return f"Reminder R-318 set for {int(time['hour']):02d}:{int(time['minute']):02d}: {args['text']}"
    except (KeyError, TypeError, ValueError) as exc:
        return f"Error: bad arguments for {name}: {exc!r}"
    return f"Error: there is no tool named {name!r}"
