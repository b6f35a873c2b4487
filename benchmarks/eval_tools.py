"""Tool-use evaluation, the broad suite: single-turn cases in five categories and multi-step tasks, scored per
category, against the embedded server under several configurations or any OpenAI-compatible server.

Cases (benchmarks/tool_eval/, loaded by eval_cases.py): 240 single-turn cases, ours and a sample of BFCL's, in
the categories simple (one tool offered), multiple (pick one of several), parallel (several calls to one tool),
parallel-multiple (calls to several tools) and irrelevance (no tool fits: the right reply makes no call); 36
multi-step tasks run against deterministic fake tools (eval_fake_tools.py) until a text answer, at most 6
requests, right when the answer holds the value only the tool results give and no protocol markup.

Scoring (eval_scoring.py) follows BFCL's checker: names, keys and values against the accepted answers. Per
configuration it prints: parse (% of calls whose arguments are a JSON object), valid (% of calls that validate
against the tool's schema, closed: `additionalProperties: false` wherever the schema does not say), markup
(replies whose content holds `<tool_call>` or `<tool_response>` tags), accuracy per category, multi-step answers,
mean prompt tokens and completion tokens/s of the single-turn requests; then the kinds of errors, and for the
embedded server the share of each run's time its engine spent scoring tools and applying grammars (the cost of
constrained tool calling; `Engine.work_seconds`, also on /metrics).

    python benchmarks/eval_tools.py [--configs ce] [--quick] [--category simple,parallel] [--verbose]
    python benchmarks/eval_tools.py --base-url http://127.0.0.1:8080/v1 --model NAME   # any server

Temperature 0 and a fixed seed: a run is reproducible. The configurations of the embedded server are `CONFIGS`:
each is a label and the `ServerConfig` fields it sets (the rest keep the server's defaults), one line each.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")

from eval_cases import CATEGORIES, Case, Task, load_cases, load_tasks, quick
from eval_fake_tools import run_tool
from eval_report import Tally, error_table, summary_table
from eval_scoring import (
    FAILED,
    IN_CONTENT,
    Error,
    ParsedCall,
    answer_holds,
    has_markup,
    parse_call,
    score_case,
    validates,
)

CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "a": ("unconstrained, model decides", {"constrained_decoding": False, "auto_tool_choice": "model",
                                           "tool_selection": "model"}),
    "b": ("unconstrained, call-then-answer", {"constrained_decoding": False, "tool_selection": "model"}),
    "c": ("the defaults (constrained, c-t-a, channel)", {}),
    "d": ("constrained, model decides", {"auto_tool_choice": "model"}),
    "e": ("as c, model writes the name", {"tool_selection": "model"}),
    "g": ("as c, calls for a message's clauses", {"clause_calls": True}),
    "f": ("as c, issue-18 policies off", {"no_tool_option": False, "parallel_calls": False, "copy_values": False,
                                          "ground_answers": False}),
}  # fmt: skip
MAX_STEPS = 6
MAX_TOKENS = 128
SEED = 0


class Evaluator:
    """Sends the suite to one OpenAI-compatible server and tallies the outcomes."""

    def __init__(self, client: Any, model: str, parallel: bool | None, verbose: bool, forced: bool = False) -> None:
        self.client, self.model, self.parallel, self.verbose = client, model, parallel, verbose
        self.forced = forced  # call-then-answer done by the client: see --client-call-then-answer

    def _ask(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], tally: Tally, timed: bool) -> Any:
        extra: dict[str, Any] = {} if self.parallel is None else {"parallel_tool_calls": self.parallel}
        if self.forced:
            extra["tool_choice"] = "none" if messages[-1]["role"] == "tool" else "required"
        started = time.perf_counter()
        reply = self.client.chat.completions.create(
            model=self.model, messages=messages, tools=tools, temperature=0, seed=SEED, max_tokens=MAX_TOKENS, **extra
        )
        if timed and reply.usage is not None:
            tally.seconds += time.perf_counter() - started
            tally.tokens += reply.usage.completion_tokens
            tally.prompt_tokens += reply.usage.prompt_tokens
            tally.requests += 1
        message = reply.choices[0].message
        tally.replies += 1
        tally.markup += has_markup(message.content)
        return message

    def _calls(self, message: Any, tools: list[dict[str, Any]], tally: Tally) -> list[ParsedCall]:
        schemas = {t["function"]["name"]: t["function"].get("parameters", {}) for t in tools}
        calls = [parse_call(c.function.name, c.function.arguments) for c in message.tool_calls or []]
        tally.calls += len(calls)
        tally.parsed += sum(c.arguments is not None for c in calls)
        tally.valid += sum(validates(c, schemas) for c in calls)
        return calls

    def case(self, case: Case, tally: Tally) -> None:
        """One single-turn case."""
        import openai

        tally.cases[case.category] += 1
        try:
            message = self._ask([{"role": "user", "content": case.question}], case.tools, tally, timed=True)
        except openai.APIError as exc:
            tally.errors[FAILED] += 1
            self._record(tally, case.id, [FAILED], str(exc)[:200], case.question)
            return
        calls = self._calls(message, case.tools, tally)
        errors = score_case(case, calls)
        if has_markup(message.content):
            errors.append(Error(IN_CONTENT, repr(message.content[:80])))
        if not errors:
            tally.right[case.category] += 1
            return
        shown = [f"{c.name}({c.raw})" for c in calls] or [repr((message.content or "")[:100])]
        self._record(tally, case.id, [str(e) for e in errors], "; ".join(shown), case.question)
        tally.errors[errors[0].kind] += 1

    def task(self, task: Task, tally: Tally) -> None:
        """One multi-step task: tools run until the model answers in text, for at most `MAX_STEPS` requests."""
        import openai

        tally.tasks += 1
        offered = {t["function"]["name"] for t in task.tools}
        messages: list[dict[str, Any]] = [{"role": "user", "content": task.question}]
        trace: list[str] = []
        called = False
        try:
            for _ in range(MAX_STEPS):
                message = self._ask(messages, task.tools, tally, timed=False)
                calls = self._calls(message, task.tools, tally)
                if not calls:
                    answer = message.content or ""
                    trace.append(repr(answer[:160]))
                    if has_markup(answer):
                        kind = "task: markup"
                    elif not called:
                        kind = "task: no call"
                    elif not answer_holds(answer, task.expected):
                        kind = "task: wrong answer"
                    else:
                        tally.answered += 1
                        return
                    break
                called = True
                messages.append(message.model_dump(include={"role", "content", "tool_calls"}))
                for call, sent in zip(calls, message.tool_calls, strict=True):
                    output = (
                        run_tool(call.name, call.arguments)
                        if call.name in offered
                        else f"Error: there is no tool named {call.name!r}"
                    )
                    trace.append(f"{call.name}({call.raw}) -> {output[:60]}")
                    messages.append({"role": "tool", "tool_call_id": sent.id, "content": output})
            else:
                kind = "task: no text answer"
        except openai.APIError as exc:
            kind = FAILED
            trace.append(str(exc)[:200])
        tally.task_errors[kind] += 1
        self._record(
            tally, task.id, [f"{kind} (expected {', '.join(task.expected)})"], " | ".join(trace), task.question
        )

    def _record(self, tally: Tally, case_id: str, errors: list[str], reply: str, question: str = "") -> None:
        tally.records.append({"id": case_id, "errors": errors, "reply": reply})
        if self.verbose:
            print(f"  {case_id}: {question[:70]!r}\n      {'; '.join(errors)[:200]}\n      reply: {reply[:300]}")


def run(evaluator: Evaluator, cases: list[Case], tasks: list[Task]) -> Tally:
    """The whole suite against one server."""
    tally = Tally()
    for case in cases:
        evaluator.case(case, tally)
    for task in tasks:
        evaluator.task(task, tally)
    return tally


def _cost(before: Any, after: Any, seconds: float) -> str:
    """The share of a run's time the engine spent scoring tools and applying grammars (`Engine.work_seconds`)."""
    scoring, grammar = after.scoring - before.scoring, after.grammar - before.grammar
    share = (scoring + grammar) / seconds if seconds else 0.0
    return (
        f"constraint and scoring cost: {share:.1%} of the run's {seconds:.0f} s "
        f"(tool scoring {scoring:.1f} s, grammars {grammar:.1f} s)"
    )


def _client(base_url: str) -> Any:
    import openai

    return openai.OpenAI(base_url=base_url, api_key=os.environ.get("OPENAI_API_KEY", "none"), max_retries=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="ce", help=f"embedded server configurations, from {''.join(CONFIGS)}")
    parser.add_argument("--model", default="bundled", help="the embedded engine's model, or the remote model name")
    parser.add_argument("--base-url", help="evaluate this OpenAI-compatible server instead of the embedded one")
    parser.add_argument("--label", help="the remote server's name in the tables (default: its URL)")
    parser.add_argument("--quick", action="store_true", help="a fixed subset: every 8th case per category, 6 tasks")
    parser.add_argument("--category", help=f"comma-separated, from {','.join(CATEGORIES)},multi-step")
    parser.add_argument("--parallel-tool-calls", choices=["unset", "true", "false"], default="unset")
    parser.add_argument(
        "--client-call-then-answer",
        action="store_true",
        help='send tool_choice "required" on a user turn and "none" after tool results (the embedded server\'s '
        "call-then-answer, done by the client: for servers without it; irrelevance cases then cannot be right)",
    )
    parser.add_argument("--quantize", default="auto", choices=["auto", "int4", "none"], help="the engine's weights")
    parser.add_argument("--save", help="write every failure, per configuration, to this JSON file")
    parser.add_argument("--verbose", action="store_true", help="print each failing case with the reply")
    args = parser.parse_args()
    if unknown := set(args.configs) - set(CONFIGS):
        parser.error(f"unknown configurations: {''.join(sorted(unknown))} (choose from {''.join(CONFIGS)})")
    wanted = tuple(args.category.split(",")) if args.category else (*CATEGORIES, "multi-step")
    if unknown_categories := set(wanted) - {*CATEGORIES, "multi-step"}:
        parser.error(f"unknown categories: {', '.join(sorted(unknown_categories))}")
    cases = load_cases(tuple(c for c in wanted if c in CATEGORIES))
    tasks = load_tasks() if "multi-step" in wanted else []
    if args.quick:
        cases, tasks = quick(cases, tasks)
    parallel = {"unset": None, "true": True, "false": False}[args.parallel_tool_calls]
    print(f"{len(cases)} single-turn cases, {len(tasks)} multi-step tasks; temperature 0, seed {SEED}, "
          f"max_tokens {MAX_TOKENS}, parallel_tool_calls {args.parallel_tool_calls}", flush=True)  # fmt: skip

    started = time.perf_counter()
    results: dict[str, Tally] = {}
    labels: dict[str, str] = {}
    costs: dict[str, str] = {}
    if args.base_url:
        key = "remote"
        labels[key] = (args.label or args.base_url) + (
            ", client call-then-answer" if args.client_call_then_answer else ""
        )
        evaluator = Evaluator(_client(args.base_url), args.model, parallel, args.verbose, args.client_call_then_answer)
        results[key] = run(evaluator, cases, tasks)
    else:
        from autoqwen.local_llm import EmbeddedServer, Engine, ServerConfig, resolve_model

        engine = Engine(resolve_model(args.model), quantize=args.quantize).start().wait_ready()
        print(f"model: {engine.model_id} (loaded in {engine.load_seconds or 0:.1f} s)", flush=True)
        for key in args.configs:
            label, fields = CONFIGS[key]
            if missing := set(fields) - set(ServerConfig.model_fields):
                print(f"({key}) skipped: this server has no ServerConfig field {', '.join(sorted(missing))}")
                continue
            server = EmbeddedServer(engine, ServerConfig(**fields)).start()  # they share the engine; stop at exit
            print(f"({key}) {label}", flush=True)
            t0, before = time.perf_counter(), engine.work_seconds.copy()
            labels[key] = label
            evaluator = Evaluator(_client(server.base_url), engine.model_id, parallel, args.verbose)
            results[key] = run(evaluator, cases, tasks)
            costs[key] = _cost(before, engine.work_seconds, time.perf_counter() - t0)
            print(f"    {time.perf_counter() - t0:.0f} s; {costs[key]}", flush=True)
        engine.close()

    print(f"\n=== tool-use evaluation: {len(cases)} single-turn cases, {len(tasks)} tasks, "
          f"{time.perf_counter() - started:.0f} s ===")  # fmt: skip
    print("\n".join(summary_table(results, labels)))
    print("\nerrors (first error of each wrong single-turn reply; why each failed task failed):")
    print("\n".join(error_table(results)))
    for key, cost in costs.items():
        print(f"({key}) {cost}")
    if args.save:
        with open(args.save, "w", encoding="utf-8") as f:
            json.dump({key: t.records for key, t in results.items()}, f, indent=1)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
