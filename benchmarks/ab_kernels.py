"""Our kernels at another git revision against the working tree's, in one process, on the bundled model (issue 22).

Kernel changes gain a few per cent, less than this machine's drift from minute to minute, so the two are measured
side by side: the revision's sources (`local_llm/*.cpp`, `kernels.h`) are built beside ours under another name
(operator namespace `autoqwen_ab`), and one engine switches its decode step and head between the two, round after
round, in alternating order, checking that both give the same text. Prints single-stream tokens/s after the first
token (medians of the rounds) and the ratio.

    python benchmarks/ab_kernels.py HEAD~1 [--tokens 256] [--runs 8]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

NAMESPACE = "autoqwen_ab"


@contextmanager
def sources_at(revision: str) -> Iterator[list[Path]]:
    """The kernels' sources as `revision` has them, renamed to NAMESPACE (operators and C++ symbols alike, so that
    neither library's symbols stand in for the other's), in a temporary folder."""
    from autoqwen.local_llm import kernels

    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as folder:
        copies = []
        for source in [*kernels.SOURCES, *kernels.HEADERS]:
            shown = subprocess.run(
                ["git", "show", f"{revision}:local_llm/{source.name}"], cwd=root, capture_output=True, text=True
            )
            if shown.returncode:
                continue  # a file the revision does not have yet
            copy = Path(folder) / source.name
            copy.write_text(re.sub(r"\bautoqwen\b", NAMESPACE, shown.stdout))
            copies.append(copy)
        yield copies


def build(revision: str) -> Path:
    """The revision's kernels built (into the kernel cache, keyed by their text as ours are)."""
    from autoqwen.local_llm import kernels

    with sources_at(revision) as copies:
        return kernels.build([c for c in copies if c.suffix == ".cpp"], [c for c in copies if c.suffix == ".h"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("revision", help="a git revision, e.g. HEAD~1")
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--runs", type=int, default=8)
    args = parser.parse_args()

    import torch

    from autoqwen.local_llm import Engine, SamplingParams, resolve_model
    from autoqwen.local_llm.llama import Lean

    torch.ops.load_library(str(build(args.revision)))
    theirs = getattr(torch.ops, NAMESPACE)
    engine = Engine(resolve_model("bundled")).start().wait_ready()
    lean = Lean.of(engine.model)
    if lean is None or lean.decode_step is None:
        raise SystemExit("the one-call decode step does not run here (our kernels need AVX-512 BF16)")
    head = lean.head
    paths = {
        "working tree": (lean.decode_step, head.q8mm),
        args.revision: (theirs.decode_step.default, theirs.q8mm.default),
    }
    prompt = engine.encode_chat([{"role": "user", "content": "Write a long story about a lighthouse."}])
    params = SamplingParams(max_tokens=args.tokens, temperature=0, ignore_eos=True)

    def stream(name: str) -> tuple[float, str]:
        lean.decode_step, head.q8mm = paths[name]
        done = engine.submit(prompt, params)
        text = done.text()
        return (done.completion_tokens - 1) / ((done.finished_at or 0.0) - (done.first_token_at or 0.0)), text

    rates: dict[str, list[float]] = {name: [] for name in paths}
    for name in paths:  # warm-up
        stream(name)
    for round_ in range(args.runs):
        order = list(paths) if round_ % 2 == 0 else list(paths)[::-1]
        texts = []
        for name in order:
            rate, text = stream(name)
            rates[name].append(rate)
            texts.append(text)
        assert texts[0] == texts[1], "the two revisions decoded different text"
    engine.close()

    print(f"{date.today()}  {args.tokens} greedy tokens, one stream, rounds {args.runs} (medians), alternating")
    ours, base = (statistics.median(rates[name]) for name in paths)
    for name in paths:
        print(f"{name:>14}: {statistics.median(rates[name]):.1f} tokens/s  rounds {[round(r) for r in rates[name]]}")
    print(f"working tree / {args.revision}: {ours / base:.3f}x")


if __name__ == "__main__":
    main()
