"""Sample BFCL cases into benchmarks/tool_eval/bfcl_cases.jsonl, converted to OpenAI tools (run once, by hand).

BFCL (the Berkeley Function Calling Leaderboard, Apache-2.0, https://github.com/ShishirPatil/gorilla, folder
berkeley-function-call-leaderboard) ships its data in the `bfcl-eval` wheel on PyPI:

    pip download bfcl-eval==2026.3.23 --no-deps --only-binary :all: -d /tmp/bfcl
    python benchmarks/bfcl_convert.py /tmp/bfcl/bfcl_eval-2026.3.23-py3-none-any.whl

Its types are Python's ("dict", "float", "tuple", "any"); they become JSON Schema's. Function names with dots
(`math.factorial`) become `math_factorial`, as BFCL itself does for OpenAI models. Only cases that suit a small
model with an 8k context are kept: one short user turn, few and short tool descriptions, at most 3 calls (the
server's cap on calls in one reply), answers that are plain values. The sample is fixed (a seeded draw over the
kept cases, sorted by id), so a re-run writes the same file.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import zipfile
from pathlib import Path
from typing import Any

OUT = Path(__file__).parent / "tool_eval" / "bfcl_cases.jsonl"
VERSION = "BFCL_v4"
# category -> (BFCL file stem, how many cases to draw)
SAMPLE = {
    "simple": ("simple_python", 25),
    "multiple": ("multiple", 25),
    "parallel": ("parallel", 15),
    "parallel-multiple": ("parallel_multiple", 10),
    "irrelevance": ("irrelevance", 20),
}
TYPES = {"dict": "object", "float": "number", "tuple": "array", "integer": "integer", "string": "string"}
TYPES |= {"boolean": "boolean", "array": "array", "object": "object"}
KEPT_KEYS = ("description", "enum", "default", "minimum", "maximum", "minItems", "maxItems")
MAX_QUESTION = 240
MAX_TOOLS_JSON = 2400
SEED = 18


class Skip(Exception):
    """This BFCL case is not kept (the reason is the message)."""


def schema(bfcl: dict[str, Any]) -> dict[str, Any]:
    """A BFCL parameter schema as JSON Schema."""
    kind = bfcl.get("type", "any")
    out: dict[str, Any] = {}
    if kind != "any":
        if kind not in TYPES:
            raise Skip(f"type {kind}")
        out["type"] = TYPES[kind]
    out |= {key: bfcl[key] for key in KEPT_KEYS if key in bfcl}
    if out.get("type") == "object":
        if not bfcl.get("properties"):
            raise Skip("free-form object")
        out["properties"] = {name: schema(sub) for name, sub in bfcl["properties"].items()}
        if bfcl.get("required"):
            out["required"] = list(bfcl["required"])
    if out.get("type") == "array" and isinstance(bfcl.get("items"), dict):
        out["items"] = schema(bfcl["items"])
    return out


def tool(function: dict[str, Any]) -> dict[str, Any]:
    """A BFCL function as an OpenAI tool."""
    description = function.get("description", "")
    if len(description) > 1024:
        raise Skip("description over 1024 characters")
    parameters = schema(function["parameters"])
    return {
        "type": "function",
        "function": {"name": openai_name(function["name"]), "description": description, "parameters": parameters},
    }


def openai_name(name: str) -> str:
    """BFCL's dotted names are not valid OpenAI function names."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)


def plain(value: Any) -> None:
    """Refuse answers that are not plain values (code in a string, say)."""
    if isinstance(value, dict):
        for sub in value.values():
            plain(sub)
    elif isinstance(value, list):
        for sub in value:
            plain(sub)
    elif isinstance(value, str) and re.search(r"[()\[\]{}]|\bmath\.|lambda", value):
        raise Skip(f"answer {value!r} is code")


def answer(ground_truth: list[dict[str, dict[str, list[Any]]]]) -> list[dict[str, Any]]:
    """BFCL's possible answer: a list of {name: {param: [accepted values]}} as our list of calls."""
    calls = []
    for call in ground_truth:
        ((name, args),) = call.items()
        for values in args.values():
            if not values:
                raise Skip("parameter with no accepted value")
            plain(values)
        calls.append({"name": openai_name(name), "arguments": args})
    return calls


def convert(category: str, case: dict[str, Any], truth: dict[str, Any] | None, stem: str) -> dict[str, Any]:
    """One BFCL case in this suite's format (see benchmarks/eval_cases.py)."""
    turns = case["question"]
    if len(turns) != 1 or len(turns[0]) != 1 or turns[0][0]["role"] != "user":
        raise Skip("not one user turn")
    question = turns[0][0]["content"]
    if len(question) > MAX_QUESTION:
        raise Skip("long question")
    tools = [tool(f) for f in case["function"]]
    if len(json.dumps(tools)) > MAX_TOOLS_JSON:
        raise Skip("long tool list")
    calls = answer(truth["ground_truth"]) if truth is not None else []
    if len(calls) > 3:
        raise Skip("more than 3 calls")
    return {
        "id": f"bfcl_{case['id']}",
        "category": category,
        "source": f"BFCL {VERSION}_{stem}.json#{case['id']} (Apache-2.0)",
        "question": question,
        "tools": tools,
        "answer": calls,
    }


def read_jsonl(wheel: zipfile.ZipFile, name: str) -> list[dict[str, Any]]:
    """One BFCL data file (JSON lines) from the wheel."""
    return [json.loads(line) for line in wheel.read(f"bfcl_eval/data/{name}").decode().splitlines() if line]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path, help="the downloaded bfcl_eval-*.whl")
    args = parser.parse_args()
    rng = random.Random(SEED)
    out = []
    with zipfile.ZipFile(args.wheel) as wheel:
        for category, (stem, count) in SAMPLE.items():
            cases = read_jsonl(wheel, f"{VERSION}_{stem}.json")
            truths = {} if category == "irrelevance" else {
                t["id"]: t for t in read_jsonl(wheel, f"possible_answer/{VERSION}_{stem}.json")
            }  # fmt: skip
            kept = []
            for case in cases:
                try:
                    kept.append(convert(category, case, truths.get(case["id"]), stem))
                except Skip:
                    continue
            chosen = sorted(rng.sample(kept, count), key=lambda c: int(c["id"].rsplit("_", 1)[1]))
            print(f"{category}: {len(kept)} of {len(cases)} kept, {count} drawn")
            out.extend(chosen)
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text("".join(json.dumps(case) + "\n" for case in out), encoding="utf-8")
    print(f"wrote {len(out)} cases to {OUT}")


if __name__ == "__main__":
    main()
