"""The tool-use suite's cases, loaded from benchmarks/tool_eval/ (data, not code).

Files:

- `tools.json`: the library of our own tools (OpenAI tool objects), referred to by name from the cases;
- `own_cases.jsonl`: our single-turn cases (the 35 prompts of the first evaluation among them, as "multiple");
- `bfcl_cases.jsonl`: a sample of BFCL's (Apache-2.0), converted by `bfcl_convert.py`, tools inline;
- `tasks.jsonl`: multi-step tasks, run against the fake tools of `eval_fake_tools.py`.

A single-turn case is one JSON object a line: `id`, `category` (one of `CATEGORIES`), `source`, `question` (one
user message), `tools` (names from the library, or tool objects) and `answer`: the accepted calls, each
`{"name": ..., "arguments": {param: [accepted values]}}`, as BFCL writes them: `""` among the values means the
parameter may be left out, `"<any>"` that any value will do; an empty list means no call is right (irrelevance).
Our own cases list only what the question settles: a parameter of the tool they leave out may be left out or take
any value (`"<any>"` or `""` are filled in here, by whether the schema requires it). BFCL's list every parameter
that may appear.

A task: `id`, `source`, `question`, `tools`, `expected` (values the final answer must all hold), optional `note`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["ANY", "CATEGORIES", "DATA", "OPTIONAL", "Case", "Task", "load_cases", "load_tasks", "quick", "tool_library"]

DATA = Path(__file__).parent / "tool_eval"
CATEGORIES = ("simple", "multiple", "parallel", "parallel-multiple", "irrelevance")
ANY = "<any>"
OPTIONAL = ""
Tool = dict[str, Any]
Call = dict[str, Any]


@dataclass(frozen=True)
class Case:
    """One single-turn case: a question, the tools offered, and the calls accepted as right (none: text)."""

    id: str
    category: str
    source: str
    question: str
    tools: list[Tool]
    answer: list[Call]

    @property
    def schemas(self) -> dict[str, dict[str, Any]]:
        """Each offered tool's parameter schema, by name."""
        return {t["function"]["name"]: t["function"].get("parameters", {}) for t in self.tools}


@dataclass(frozen=True)
class Task:
    """A multi-step task: the final text answer must hold every `expected` value, which only tool results give."""

    id: str
    source: str
    question: str
    tools: list[Tool]
    expected: list[str]
    note: str = ""


@cache
def tool_library() -> dict[str, Tool]:
    """Our own tools, by name."""
    tools = json.loads((DATA / "tools.json").read_text(encoding="utf-8"))
    return {t["function"]["name"]: t for t in tools}


def _tools(refs: list[str | Tool]) -> list[Tool]:
    library = tool_library()
    return [library[ref] if isinstance(ref, str) else ref for ref in refs]


def _fill(call: Call, schema: dict[str, Any]) -> Call:
    """An own case's call with the parameters it leaves out made free: `<any>` if required, else optional too."""
    required = set(schema.get("required", []))
    args = dict(call["arguments"])
    for name in schema.get("properties", {}):
        if name not in args:
            args[name] = [ANY] if name in required else [OPTIONAL, ANY]
    return {"name": call["name"], "arguments": args}


def _read(name: str) -> list[dict[str, Any]]:
    lines = (DATA / name).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def load_cases(categories: tuple[str, ...] = CATEGORIES) -> list[Case]:
    """All single-turn cases of these categories, ours then BFCL's, in file order."""
    cases = []
    for row in _read("own_cases.jsonl") + _read("bfcl_cases.jsonl"):
        if row["category"] not in categories:
            continue
        tools = _tools(row["tools"])
        answer = row["answer"]
        if not row["id"].startswith("bfcl_"):
            schemas = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
            answer = [_fill(call, schemas[call["name"]]) for call in answer]
        cases.append(Case(row["id"], row["category"], row["source"], row["question"], tools, answer))
    return cases


def load_tasks() -> list[Task]:
    """All multi-step tasks, in file order."""
    return [
        Task(
            r["id"], r["source"], r["question"], _tools(r["tools"]), [str(v) for v in r["expected"]], r.get("note", "")
        )
        for r in _read("tasks.jsonl")
    ]


def quick(cases: list[Case], tasks: list[Task]) -> tuple[list[Case], list[Task]]:
    """A fixed small subset for a smoke run (about 2 minutes): every 8th case of each category, every 6th task."""
    kept = []
    for category in CATEGORIES:
        kept += [c for c in cases if c.category == category][::8]
    return kept, tasks[::6]
