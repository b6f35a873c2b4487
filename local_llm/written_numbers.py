"""Numbers as a reader reads them: "50 million" is 50000000, "2,000,000" 2000000, "5 %" a percentage, "14th" 14;
the numbers a user writes before a word of a parameter's name ("for 3 nights" gives `nights` 3); and the clock
times a user writes ("7:30 pm" is 19:30), for parameters of hours and minutes.

    list(numbers("A city of 50 million grows 5 % a year"))   # [(50000000.0, False), (5.0, True)]
    counted_numbers("for 3 nights for 2 guests", "nights")    # [(3.0, False)]
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from autoqwen.local_llm.name_words import identifier_words, stems

__all__ = ["CLOCK_TIME", "clock_time", "counted_numbers", "number_at", "numbers"]

_NUMBER = re.compile(
    r"(?<![\w.])(-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?)(?:st|nd|rd|th)?"
    r"(?:\s*(thousand|million|billion|trillion|bn)\b)?\s*(%|percent)?",
    re.IGNORECASE,
)
_SCALE = {"thousand": 1e3, "million": 1e6, "billion": 1e9, "bn": 1e9, "trillion": 1e12}
_FOLLOWING_WORD = re.compile(r"\s*([^\W\d_]+)")
# A time of day as written: "7:15", "22:00", "9 o'clock" (its minutes 0), "7:30 pm" (19:30).
CLOCK_TIME = re.compile(
    r"(?<![\w:.])([01]?\d|2[0-3])(?::([0-5]\d)(?![\d:])|\s*o['\u2019]clock\b)(?:\s*([ap])\.?m\b\.?)?",
    re.IGNORECASE | re.ASCII,
)


def numbers(text: str) -> Iterator[tuple[float, bool]]:
    """Each number `text` holds, as a reader reads it, with whether it is written as a percentage."""
    for match in _NUMBER.finditer(text):
        yield _reading(match)


def number_at(text: str, at: int) -> tuple[float, bool, int] | None:
    """The number written at `at` in `text` as a reader reads it ("1.267 billion"), whether written as a percentage,
    and where it ends; None when no number starts there."""
    match = _NUMBER.match(text, at)
    return None if match is None else (*_reading(match), match.end())


def _reading(match: re.Match[str]) -> tuple[float, bool]:
    number, scale, percent = match.groups()
    return float(number.replace(",", "")) * _SCALE.get((scale or "").lower(), 1), percent is not None


def counted_numbers(text: str, name: str) -> list[tuple[float, bool]]:
    """The numbers `text` writes right before the last word of a parameter's `name`, the thing it counts ("3
    nights" for `nights`, "30 years" for `loan_years`), but not a word after "per" (`periods_per_year` counts
    periods, not years), and in the same number ("5 years" is no `year`). SmolLM2-135M gave "3 nights for 2
    guests" 2 nights. A parameter named `hour` or `minute` takes those of the clock times the text writes ("22:00":
    the hour 22, the minute 0; it wrote the minute 22); `hours` and `minutes` count ("for 2 hours") first."""
    parts = identifier_words(name)
    if not parts or (len(parts) > 1 and parts[-2].lower() == "per") or len(last := parts[-1].lower()) < 3:
        return []
    found = []
    for match in _NUMBER.finditer(text):
        following = _FOLLOWING_WORD.match(text, match.end())
        if following is None or len(word := following.group(1).lower()) < 3 or not stems(word, last):
            continue
        if word.endswith("s") == last.endswith("s") or _reading(match)[0] == 1:  # "1 night" counts nights too
            found.append(_reading(match))
    if not found and (last in ("hour", "minute") or (len(parts) == 1 and last in ("hours", "minutes"))):
        clock = [clock_time(m) for m in CLOCK_TIME.finditer(text)]  # "7:15" gives the hour 7, the minute 15
        return [(float(hour if last.startswith("hour") else minute), False) for hour, minute in clock]
    return found


def clock_time(match: re.Match[str]) -> tuple[int, int]:
    """The hour (0 to 23) and minute of a `CLOCK_TIME` match."""
    hour, minute, half = int(match.group(1)), int(match.group(2) or 0), (match.group(3) or "").lower()
    if half == "p" and hour < 12:
        hour += 12
    elif half == "a" and hour == 12:
        hour = 0
    return hour, minute
