"""Spans of the user's words: what a free string argument may take (`argument_schema` limits it to them).

    spans("Weather in New York, NY?".split())   # "Weather", "Weather in", ..., "New York, NY", "York, NY", ...

A span is a run of up to `MAX_SPAN_WORDS` words, its edges stripped of punctuation. A quoted phrase is a span of
its own, however long, and part of no other, and so is an address (a URL, an e-mail address, a path, a file
name); a span does not cut a name short ("New York" of "New York, NY"), start inside a number written in groups
("345 678" of "+34 612 345 678"), end with a word a phrase goes on after ("Team lunch on") or before its object
("lock" of "lock the door"), start with the user's request ("Remind me"), nor consist of function words only
("What is").
"""

from __future__ import annotations

import re
from collections.abc import Iterator

__all__ = ["EDGE", "MAX_SPAN_WORDS", "is_address", "spans"]

MAX_SPAN_WORDS = 8  # the longest span of the user's words a string argument may take
EDGE = "\"'`.,;:!?()[]{}<>\u2018\u2019\u201c\u201d"  # stripped from a span's ends
_QUOTES = {"'": "'", '"': '"', "\u2018": "\u2019", "\u201c": "\u201d"}  # opening quote marks and their closing ones


def spans(words: list[str]) -> Iterator[str]:
    """Runs of up to `MAX_SPAN_WORDS` words; a quoted phrase is a span of its own, however long, and in no other:
    asked to "add 'renew passport' to my todo list", SmolLM2-135M wrote "renew", and to translate "'Where is the
    train station?' into German", it ran on past the closing quote."""
    quoted, names = _quoted(words), _names(words)
    alone = [*quoted, *((i, i + 1) for i, w in enumerate(words) if is_address(w) and not _inside(i, quoted))]
    runs = [(a, b) for a in range(len(words)) for b in range(a + 1, min(a + MAX_SPAN_WORDS, len(words)) + 1)]
    seen: set[str] = set()
    for start, end in [*runs, *quoted]:
        if any(a < end and start < b and (a, b) != (start, end) for a, b in alone):
            continue  # a quoted phrase or an address with other words, or a part of a quoted phrase
        if any(a < end < b or (number and a < start < b) for a, b, number in names) and (start, end) not in quoted:
            continue  # a name cut short ("New York" of "New York, NY"), or a part of a number in groups
        span = " ".join(words[start:end]).replace("\\", "").strip(EDGE).strip()
        if span.rpartition(" ")[2] in _OPEN_ENDS and (start, end) not in quoted:
            continue  # "Team lunch on", "Set a reminder for"; not "Portland, OR" nor "Vitamin A" (capitals)
        if all(_is_function_word(w) for w in span.split()) and (start, end) not in quoted:
            continue  # "What is", "me", "my": words no value is made of alone
        if (start, end) not in quoted and (_cut_before_object(words, end) or _asks_me(span)):
            continue  # "lock" of "lock the door"; "Remind me to call mom", "let me forget the standup"
        if span and span not in seen:
            seen.add(span)
            yield span


# A web or e-mail address, a path or a file name: "https://x.org/a", "bob@example.com", "/etc/hosts", "notes.txt".
_ADDRESS = re.compile(r"\S*://\S+|[^@\s]+@[^@\s]+\.\w+|[/~][\w.~/-]{2,}|[\w./-]*[\w-]{2}\.[A-Za-z][A-Za-z0-9]{1,3}")
_POSSESSIVES = frozenset({"my", "your", "our", "his", "her", "their", "its"})
_OPEN_ENDS = _POSSESSIVES | frozenset(
    {"a", "an", "the", "and", "or", "at", "on", "in", "for", "to", "of", "by", "from", "with", "about", "into"}
)  # words a phrase goes on after
_FUNCTION_WORDS = _OPEN_ENDS | frozenset(
    {"i", "me", "my", "you", "your", "we", "us", "our", "it", "its", "he", "him", "his", "she", "her", "they"}
    | {"them", "their", "this", "that", "these", "those", "is", "are", "was", "were", "be", "am", "do", "does"}
    | {"did", "can", "could", "will", "would", "should", "what", "what's", "which", "who", "when", "where", "why"}
    | {"how", "please", "there", "here", "some", "any", "all", "much", "many", "not", "no", "so", "if", "then"}
)  # pronouns, auxiliaries, question words and the like
_DETERMINERS = frozenset({"the", "a", "an"}) | _POSSESSIVES
_LONGEST_ADDRESS = 2048  # longer words are not read as addresses (a pasted blob)


def is_address(word: str) -> bool:
    """Whether `word` is an address, a span only alone: SmolLM2-135M read "the file notes.txt" as "file notes.txt"."""
    return len(word) <= _LONGEST_ADDRESS and _ADDRESS.fullmatch(word.strip(EDGE)) is not None


def _cut_before_object(words: list[str], end: int) -> bool:
    """Whether a span ending before `words[end]` stops at a lower-case word whose object follows ("lock" of "lock
    the door"; not "Bob" of "Send Bob the report", nor "lock," of "lock, the door", nor an address)."""
    if end >= len(words) or words[end].lower() not in _DETERMINERS:
        return False
    last = words[end - 1]
    return last.isalpha() and last.islower()


def _is_function_word(word: str) -> bool:
    """Whether `word` is a function word as written in running text ("me", "What's"; not "US" nor "IT")."""
    stripped = word.strip(EDGE)
    return stripped.lower() in _FUNCTION_WORDS and not (stripped.isupper() and len(stripped) > 1)


def _asks_me(span: str) -> bool:
    """Whether "me" is among the span's first two words: the user's request, not a value ("Remind me to call mom",
    "let me forget the standup"; not "send me the report" of a message's body)."""
    return "me" in [w.strip(EDGE) for w in span.split()[:2]]


def _inside(i: int, ranges: list[tuple[int, int]]) -> bool:
    return any(a <= i < b for a, b in ranges)


def _names(words: list[str]) -> list[tuple[int, int, bool]]:
    """The (start, end, whether a number) word ranges of names of several words: capitalised words in a row ("Los
    Angeles Lakers", "Yamaha P125"), with a code of 2 or 3 capitals after a comma ("New York, NY"), and numbers
    in groups ("+34 612 345 678"). A sentence's first word starts no name of several words ("Play Yesterday").
    A span may not end inside a name (SmolLM2-135M wrote "New York" for "New York, NY"), nor start inside a number
    ("345 678"); it may start inside other names ("a Lawyer John Doe")."""
    found: list[tuple[int, int, bool]] = []
    i = 0
    while i < len(words):
        end = i + 1
        if _is_digits(words[i]):  # groups of three after the first, or a number that starts with "+"
            grouped = words[i].startswith("+")
            while end < len(words) and words[end - 1][-1:].isdigit() and _is_digits(words[end]):
                grouped = grouped or len(words[end].rstrip(EDGE)) == 3
                end += 1
            end = end if grouped else i + 1
        elif _is_capital(words[i]) and not _starts_sentence(words, i):
            while end < len(words) and _is_capital(words[end]) and words[end - 1][-1:].isalnum():
                end += 1
            if (
                words[end - 1].endswith(",")
                and not _is_code(words[end - 1])
                and end < len(words)
                and _is_code(words[end])
            ):
                following = words[end + 1].strip(EDGE).lower() if end + 1 < len(words) else ""
                end += not words[end].endswith(",") and following not in ("and", "or")  # not "Paris, LA and NY"
            if end - i > _LONGEST_NAME:  # Title Case Or Capitals Throughout: no name
                i = end
                continue
        if end - i > 1:
            found.append((i, end, _is_digits(words[i])))
        i = end
    return found


_LONGEST_NAME = 4  # capitalised words in a longer row are a title or shouting, not a name


def _is_capital(word: str) -> bool:
    core = word.strip(EDGE)
    return core[:1].isupper() and core != "I"


def _is_code(word: str) -> bool:
    """A code of 2 or 3 capitals: "NY", "USD"."""
    core = word.strip(EDGE)
    return 2 <= len(core) <= 3 and core.isalpha() and core.isupper()


def _is_digits(word: str) -> bool:
    return re.fullmatch(r"\+?\d+", word.rstrip(EDGE)) is not None


def _starts_sentence(words: list[str], i: int) -> bool:
    return i == 0 or words[i - 1].rstrip("\"')\u2019\u201d")[-1:] in (".", "!", "?", ":")


def _quoted(words: list[str]) -> list[tuple[int, int]]:
    """The (start, end) word ranges of the quoted phrases: from a word that opens a quote to the one that closes it
    (an apostrophe inside a word, "don't", opens nothing)."""
    found, opened = [], None
    for i, word in enumerate(words):
        if (mark := word.lstrip("(")[:1]) in _QUOTES and len(word.lstrip("(")) > 1:  # a new opener restarts
            opened = (i, _QUOTES[mark])
            word = word.lstrip("(")[1:]
        if opened is not None and word.rstrip(".,;:!?)").endswith(opened[1]):
            found.append((opened[0], i + 1))
            opened = None
    return found
