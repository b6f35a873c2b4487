"""Counts of one configuration's run of the tool-use suite, and the tables printed from them."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from eval_cases import CATEGORIES
from eval_scoring import ERROR_KINDS

__all__ = ["TASK_ERRORS", "Tally", "error_table", "summary_table"]

# Why a multi-step task failed.
TASK_ERRORS = ("task: no call", "task: wrong answer", "task: no text answer", "task: markup", "request failed")
_SHORT = {"parallel-multiple": "par-mult", "irrelevance": "irrelev."}


@dataclass
class Tally:
    """What one configuration did: per-category right answers, calls that parse and validate, markup, speed."""

    cases: Counter[str] = field(default_factory=Counter)
    right: Counter[str] = field(default_factory=Counter)
    calls: int = 0
    parsed: int = 0
    valid: int = 0
    replies: int = 0
    markup: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    tokens: int = 0
    prompt_tokens: int = 0
    requests: int = 0
    seconds: float = 0.0
    tasks: int = 0
    answered: int = 0
    task_errors: Counter[str] = field(default_factory=Counter)
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Completion tokens per second of wall time, single-turn requests."""
        return self.tokens / self.seconds if self.seconds else 0.0

    def single_turn(self) -> tuple[int, int]:
        """(right, all) over the single-turn cases."""
        return sum(self.right.values()), sum(self.cases.values())


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "n/a"


def summary_table(results: dict[str, Tally], labels: dict[str, str]) -> list[str]:
    """The per-configuration table: parse, valid, markup, per-category accuracy, multi-step, tokens/s."""
    heads = ["config", "parse", "valid", "markup", *(_SHORT.get(c, c) for c in CATEGORIES), "all 1-turn"]
    heads += ["multi-step", "prompt", "tok/s"]
    rows = []
    for key, t in results.items():
        right, total = t.single_turn()
        rows.append(
            [
                f"({key}) {labels[key]}",
                _pct(t.parsed, t.calls),
                _pct(t.valid, t.calls),
                f"{t.markup}/{t.replies}",
                *(_pct(t.right[c], t.cases[c]) for c in CATEGORIES),
                _pct(right, total),
                f"{t.answered}/{t.tasks} {_pct(t.answered, t.tasks)}" if t.tasks else "n/a",
                str(t.prompt_tokens // max(t.requests, 1)),
                f"{t.rate:.1f}",
            ]
        )
    return _render(heads, rows)


def error_table(results: dict[str, Tally]) -> list[str]:
    """Why replies were wrong: the first error of each wrong single-turn reply, and why tasks failed."""
    every = dict.fromkeys((*ERROR_KINDS, *TASK_ERRORS))
    kinds = [k for k in every if any(t.errors[k] or t.task_errors[k] for t in results.values())]
    heads = ["config", *kinds]
    rows = [[f"({key})", *(str(t.errors[k] + t.task_errors[k]) for k in kinds)] for key, t in results.items()]
    return _render(heads, rows)


def _render(heads: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table, columns padded so it also reads as plain text."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(heads)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"  # noqa: E731
    return [line(heads), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *(line(r) for r in rows)]
