"""Tool-use evaluation on the bundled model, through the OpenAI HTTP API, with and without constrained decoding.

Runs the fixed cases of benchmarks/tool_cases.py (35 single-turn prompts over 7 tools with enum, integer-range,
pattern, array and nested-object arguments; 10 multi-step tasks) against one Engine served under four server
configurations, all measured in the same run:

    a  unconstrained + auto_tool_choice "model"             (the raw baseline)
    b  unconstrained + auto_tool_choice "call-then-answer"
    c  constrained   + auto_tool_choice "call-then-answer"  (the server's defaults)
    d  constrained   + auto_tool_choice "model"
    e  as c, but the model writes the tool's name (tool_selection "model" instead of the default "channel")

Per configuration it prints: % of replies with a tool call that parses, % whose call validates against the tool's
JSON schema, % that pick the right tool, % with the right key argument, completion tokens/s (completion tokens /
wall time of the requests), and how many multi-step tasks (call a tool, get its fake result back as a `tool`
message, answer in text) end within 6 steps with a text answer holding the value from the result (an answer that
echoes the `<tool_response>` block back does not count).
Temperature 0 and a fixed seed: a run is reproducible.

    python benchmarks/eval_tools.py [--quick] [--configs abcde] [--model bundled] [--quantize auto] [--verbose]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")

from tool_cases import PROMPTS, TASKS, TOOLS, Prompt, Task, run_tool

CONFIGS = {
    "a": ("unconstrained, model", False, "model", "model"),
    "b": ("unconstrained, call-then-answer", False, "call-then-answer", "model"),
    "c": ("constrained, call-then-answer", True, "call-then-answer", "channel"),
    "d": ("constrained, model", True, "model", "channel"),
    "e": ("constrained, c-t-a, model names", True, "call-then-answer", "model"),
}
MAX_STEPS = 6
MAX_TOKENS = 96
SEED = 0
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}


@dataclass
class Result:
    """Counts for one configuration."""

    prompts: int = 0
    with_key: int = 0
    parsed: int = 0
    valid: int = 0
    right_tool: int = 0
    right_arg: int = 0
    tokens: int = 0
    prompt_tokens: int = 0
    seconds: float = 0.0
    tasks: int = 0
    answered: int = 0
    task_called: int = 0
    task_steps: list[int] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Completion tokens per second of wall time, single-turn prompts."""
        return self.tokens / self.seconds if self.seconds else 0.0


def _arg(args: dict[str, Any], path: str) -> Any:
    value: Any = args
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _matches(actual: Any, expected: Any) -> bool:
    if isinstance(expected, str):
        return isinstance(actual, str) and expected.lower() in actual.lower()
    return isinstance(actual, int | float) and not isinstance(actual, bool) and float(actual) == float(expected)


def _check_call(call: Any) -> tuple[bool, dict[str, Any] | None]:
    """Whether the call validates against its tool's schema, and its parsed arguments."""
    import jsonschema

    try:
        args = json.loads(call.function.arguments)
    except json.JSONDecodeError:
        return False, None
    schema = SCHEMAS.get(call.function.name)
    if schema is None or not isinstance(args, dict):
        return False, args if isinstance(args, dict) else None
    return jsonschema.Draft202012Validator(schema).is_valid(args), args


class Evaluator:
    """Sends the cases to one server configuration and counts the outcomes."""

    def __init__(self, client: Any, model: str, verbose: bool) -> None:
        self.client, self.model, self.verbose = client, model, verbose

    def _ask(self, messages: list[dict[str, Any]], result: Result | None = None) -> Any:
        started = time.perf_counter()
        reply = self.client.chat.completions.create(
            model=self.model, messages=messages, tools=TOOLS, temperature=0, seed=SEED, max_tokens=MAX_TOKENS
        )
        if result is not None:
            result.seconds += time.perf_counter() - started
            result.tokens += reply.usage.completion_tokens
            result.prompt_tokens += reply.usage.prompt_tokens
        return reply.choices[0].message

    def prompt(self, case: Prompt, result: Result) -> None:
        """One single-turn prompt."""
        message = self._ask([{"role": "user", "content": case.text}], result)
        result.prompts += 1
        result.with_key += case.key is not None
        calls = message.tool_calls or []
        if self.verbose:
            shown = [(c.function.name, c.function.arguments) for c in calls] or repr((message.content or "")[:100])
            print(f"    {case.text[:50]:<52}{shown}")
        if not calls:
            return
        result.parsed += 1
        valid, args = _check_call(calls[0])
        result.valid += valid
        if calls[0].function.name == case.tool:
            result.right_tool += 1
            if case.key is not None and args is not None and _matches(_arg(args, case.key), case.value):
                result.right_arg += 1

    def task(self, case: Task, result: Result) -> None:
        """One multi-step task: tool calls are executed until the model answers in text, for at most 6 steps."""
        messages: list[dict[str, Any]] = [{"role": "user", "content": case.text}]
        called = False
        for step in range(1, MAX_STEPS + 1):
            message = self._ask(messages)
            if not message.tool_calls:
                answer = message.content or ""
                ok = called and case.expected.lower() in answer.lower() and "<tool_" not in answer
                result.answered += ok
                result.task_steps.append(step)
                if self.verbose:
                    print(f"    {case.text[:40]:<42}{'ok ' if ok else 'NO '}{step} steps: {answer[:90]!r}")
                break
            messages.append(message.model_dump(include={"role", "content", "tool_calls"}))
            for call in message.tool_calls:
                called = called or call.function.name == case.tool
                _, args = _check_call(call)
                output = run_tool(call.function.name, args) if args is not None else "Error: arguments are not JSON"
                messages.append({"role": "tool", "tool_call_id": call.id, "content": output})
        else:
            result.task_steps.append(MAX_STEPS + 1)
            if self.verbose:
                print(f"    {case.text[:40]:<42}NO  no text answer within {MAX_STEPS} steps")
        result.tasks += 1
        result.task_called += called


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:5.1f} %" if whole else "    n/a"


def _table(results: dict[str, Result]) -> list[str]:
    head = f"{'config':<36}{'parse':>9}{'valid':>9}{'tool':>9}{'arg':>9}{'prompt':>8}{'tok/s':>8}{'multi-step':>12}"
    lines = [head, "-" * len(head)]
    for key, r in results.items():
        lines.append(
            f"({key}) {CONFIGS[key][0]:<32}{_pct(r.parsed, r.prompts):>9}{_pct(r.valid, r.prompts):>9}"
            f"{_pct(r.right_tool, r.prompts):>9}{_pct(r.right_arg, r.with_key):>9}"
            f"{r.prompt_tokens // max(r.prompts, 1):>8}{r.rate:>8.1f}"
            f"{f'{r.answered}/{r.tasks}':>12}"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--configs", default="abcde", help="which configurations to run, e.g. 'bc'")
    parser.add_argument("--quick", action="store_true", help="a smoke run: one prompt per tool and 3 tasks")
    parser.add_argument("--only", choices=["prompts", "tasks"], help="run only the single-turn prompts or the tasks")
    parser.add_argument("--verbose", action="store_true", help="print every reply")
    parser.add_argument("--quantize", default="auto", choices=["auto", "int4", "none"], help="the engine's weights")
    args = parser.parse_args()
    if unknown := set(args.configs) - set(CONFIGS):
        parser.error(f"unknown configurations: {''.join(sorted(unknown))} (choose from abcde)")

    import openai

    from autoqwen.local_llm import EmbeddedServer, Engine, ServerConfig, resolve_model

    prompts = list({p.tool: p for p in reversed(PROMPTS)}.values()) if args.quick else PROMPTS
    tasks = TASKS[::4] if args.quick else TASKS
    prompts, tasks = ([] if args.only == "tasks" else prompts), ([] if args.only == "prompts" else tasks)
    started = time.perf_counter()
    engine = Engine(resolve_model(args.model), quantize=args.quantize).start().wait_ready()
    print(
        f"model: {engine.model_id} (loaded in {engine.load_seconds or 0:.1f} s)  prompts: {len(prompts)}  "
        f"tasks: {len(tasks)}  tools: {len(TOOLS)}  temperature 0, seed {SEED}, max_tokens {MAX_TOKENS}"
    )
    results: dict[str, Result] = {}
    for key in args.configs:
        name, constrained, policy, selection = CONFIGS[key]
        config = ServerConfig(constrained_decoding=constrained, auto_tool_choice=policy, tool_selection=selection)
        server = EmbeddedServer(engine, config).start()  # servers share the engine; they stop when we exit
        evaluator = Evaluator(
            openai.OpenAI(base_url=server.base_url, api_key="none", max_retries=0), engine.model_id, args.verbose
        )
        result = results[key] = Result()
        t0 = time.perf_counter()
        print(f"({key}) {name}", flush=True)
        for case in prompts:
            evaluator.prompt(case, result)
        for task in tasks:
            evaluator.task(task, result)
        print(f"    {time.perf_counter() - t0:.0f} s", flush=True)
    engine.close()

    print("\n=== tool-use evaluation summary ===")
    print(
        f"model {engine.model_id}; {len(prompts)} single-turn prompts, {len(tasks)} multi-step tasks "
        f"(<= {MAX_STEPS} steps); total {time.perf_counter() - started:.0f} s"
    )
    print(
        "parse / valid / tool: % of prompts answered with a tool call that parses / validates against the tool's "
        "schema / names the right tool; arg: % of prompts with a key argument that got it right;\n"
        "prompt: mean prompt tokens; tok/s: completion tokens / wall time of the requests (prompt reading "
        "included);\nmulti-step: tasks ending in a text answer that holds the value of the tool's result "
        "(an echo of the <tool_response> block does not count)"
    )
    print("\n".join(_table(results)))
    if "b" in results and "c" in results and results["b"].rate:
        ratio = results["c"].rate / results["b"].rate
        print(f"constraint cost: (c) runs at {ratio:.2f}x the tokens/s of (b)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
