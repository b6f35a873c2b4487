"""The tool suite's channel choices replayed on the engine alone, on the bundled model (issue 18's cost).

Every case and task of `eval_tools.py` that makes the server choose a tool (276) becomes the scoring job the
server would run: the user's message after each offered tool's description and the "no tool" head. The jobs
run in order, first with an empty prefix cache (as the suite meets them: the descriptions read on first use),
then again with the descriptions cached. Then each pair is read alone in one pass of the model's own forward
(our 4-bit kernels, no bfloat16 copies), and the scores' drift from that reading, and the choices it changes, are
printed: what the fast reading costs in accuracy.

    python benchmarks/bench_scoring.py [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    import torch
    from eval_cases import CATEGORIES, load_cases, load_tasks

    from autoqwen.local_llm import Engine, resolve_model
    from autoqwen.local_llm.batch import all_logits
    from autoqwen.local_llm.protocol import ChatCompletionRequest
    from autoqwen.local_llm.tool_choice import CHANNEL_TOKENS, channel_pairs, pick

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="times to replay the jobs, cold then warm (default 2)")
    args = parser.parse_args()

    engine = Engine(resolve_model("bundled")).start().wait_ready()
    jobs, bodies = [], []
    for question, tools in [(c.question, c.tools) for c in load_cases(CATEGORIES)] + [
        (t.question, t.tools) for t in load_tasks()
    ]:
        body = ChatCompletionRequest(
            model="bundled", messages=[{"role": "user", "content": question}], tools=tools, tool_choice="required"
        )
        if (chosen := channel_pairs(body, may_answer=True)) is not None:
            texts = chosen[1]
            message = engine.encode(texts[0][1])[:CHANNEL_TOKENS]
            jobs.append([(engine.encode(head), message) for head, _ in texts])
            bodies.append((body, chosen[0]))
    rows = sum(len(job) for job in jobs)
    print(f"{date.today()}: {len(jobs)} channel choices, {rows} rows, bundled model", flush=True)
    scores: list[list[float]] = []
    for round_ in range(args.rounds):
        if round_ == 0:
            engine.prefix_cache.clear()
        started = time.perf_counter()
        scores = [engine.score(job, cache_scope="bench") for job in jobs]
        seconds = time.perf_counter() - started
        print(f"  {'cold' if round_ == 0 else 'warm'}: {seconds:.1f} s, {1000 * seconds / len(jobs):.1f} ms a choice")
    alone = []  # the worker idles meanwhile
    with torch.inference_mode():
        for job in jobs:
            row = []
            for prefix, message in job:
                logprobs = torch.log_softmax(all_logits(engine.model, torch.tensor([prefix + message]))[0], -1)
                row.append(sum(float(logprobs[len(prefix) + i - 1, t]) for i, t in enumerate(message)))
            alone.append(row)
    engine.close()
    pairs = [(a, b) for fast, slow in zip(scores, alone, strict=True) for a, b in zip(fast, slow, strict=True)]
    drift = sorted(abs(a - b) for a, b in pairs)
    changed = sum(
        _decision(pick(body, tools, fast)) != _decision(pick(body, tools, slow))
        for (body, tools), fast, slow in zip(bodies, scores, alone, strict=True)
    )
    print(
        f"  drift from reading each pair alone: median {statistics.median(drift):.3f} nats, 95th percentile "
        f"{drift[int(0.95 * len(drift))]:.3f}, at most {drift[-1]:.3f}; {changed} of {len(jobs)} choices changed"
    )


def _decision(body: Any) -> tuple[str, list[str]]:
    """What a narrowed request says: its tool_choice ("tool" for one named) and the tools left."""
    choice = body.tool_choice if isinstance(body.tool_choice, str) else "tool"
    return choice, [tool.function.name for tool in body.tools or []]


if __name__ == "__main__":
    main()
