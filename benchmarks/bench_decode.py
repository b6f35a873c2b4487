"""Single-stream decode on the bundled model: the one-call decode step (`local_llm/decode_step.cpp`) against the lean
forward's Python loop, in one process, taking turns round after round (issue 22, part 5).

Each round streams the same greedy completion (EOS banned) once with each path, in process (no HTTP), and checks
that both give the same text; it prints tokens/s after the first token per path (median of the rounds), the
ratio, and a 4-row batch's tokens/s likewise.

    python benchmarks/bench_decode.py [--tokens 256] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
from datetime import date

os.environ.setdefault("TQDM_DISABLE", "1")

PROMPTS = [
    [{"role": "user", "content": f"Write a long story about {topic}."}]
    for topic in ("a lighthouse", "a robot painter", "a lost key", "a river town")
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    import torch

    from autoqwen.local_llm import Engine, SamplingParams, resolve_model
    from autoqwen.local_llm.llama import Lean

    engine = Engine(resolve_model("bundled")).start().wait_ready()
    lean = Lean.of(engine.model)
    if lean is None or lean.decode_step is None:
        raise SystemExit("the one-call decode step does not run here (our kernels need AVX-512 BF16)")
    ours = lean.decode_step
    params = SamplingParams(max_tokens=args.tokens, temperature=0, ignore_eos=True)
    prompts = [engine.encode_chat(p) for p in PROMPTS]

    def streams(rows: int) -> tuple[float, list[str]]:
        """Aggregate tokens/s after the first token of `rows` concurrent streams, and their texts."""
        done = [engine.submit(prompts[i], params) for i in range(rows)]
        texts = [""] * rows

        def read(i: int) -> None:
            texts[i] = done[i].text()

        threads = [threading.Thread(target=read, args=(i,)) for i in range(rows)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        start = max(c.first_token_at or 0.0 for c in done)
        end = max(c.finished_at or 0.0 for c in done)
        tokens = sum(c.completion_tokens - 1 for c in done)
        return tokens / (end - start), texts

    paths = {"one call a step": ours, "Python loop": None}
    rates: dict[tuple[str, int], list[float]] = {(name, rows): [] for name in paths for rows in (1, 4)}
    for step in paths.values():  # warm-up
        lean.decode_step = step
        streams(1)
    for _ in range(args.runs):
        for rows in (1, 4):
            outputs = []
            for name, step in paths.items():
                lean.decode_step = step
                rate, tokens = streams(rows)
                rates[name, rows].append(rate)
                outputs.append(tokens)
            assert outputs[0] == outputs[1], "the two paths decoded different text"
    lean.decode_step = ours
    engine.close()

    print(
        f"{date.today()}  {engine.model_id}  {args.tokens} greedy tokens a stream  rounds {args.runs} (medians)  "
        f"threads {torch.get_num_threads()}"
    )
    for rows in (1, 4):
        fused, loop = (statistics.median(rates[name, rows]) for name in paths)
        print(f"{rows} stream(s): one call a step {fused:.1f} tokens/s, Python loop {loop:.1f}: {fused / loop:.2f}x")


if __name__ == "__main__":
    main()
