"""Long prompts on the bundled model through the OpenAI API (issue 22, parts 1 and 2), measured in one run.

1. Prefill: tokens/s of a fresh prompt of 500, 1000, 2000 and 4000 tokens (each with a first line of its own, so
   no prefix cache hits): prompt tokens / the time of a 1-token completion; median over the rounds.
2. Stall: while a stream runs, a 4000-token prompt arrives; the largest and median gap between the stream's pieces
   of text while that prompt is read, the prompt's time to its first token, the stream's pieces meanwhile (a piece
   is the text of one token or, every 20 ms at most, of several), and the time until both are done.

Each for the engine as it is ("chunked": prompts read in chunks between decode steps, our prompt attention) and as
it read prompts before issue 22 ("one pass": one forward pass, PyTorch's attention), taking turns in each round.
`--llamacpp PATH` adds llama.cpp's llama-server on the same GGUF (2 slots, its own process; each server idles while
the other is measured).

    python benchmarks/bench_long.py [--runs 3] [--sizes 500,1000,2000,4000] [--stall 4000]
                                    [--llamacpp .cache/llama.cpp/build/bin/llama-server]
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import statistics
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from datetime import date
from pathlib import Path

from bench_llamacpp import free_port, wait_for

os.environ.setdefault("TQDM_DISABLE", "1")

WORDS = [
    *["agent", "paper", "model", "tool", "search", "result", "page", "table", "figure", "method", "data", "report"],
    *["memory", "cache", "token", "prompt", "batch", "stream", "server", "client", "kernel", "layer", "weight"],
    *["value", "query", "answer", "question", "summary", "section", "source", "claim", "test", "reads", "writes"],
    *["finds", "compares", "checks", "measures", "explains", "shows", "keeps", "drops", "sends", "waits", "runs"],
    *["small", "large", "fast", "slow", "long", "short", "early", "late", "new", "old", "first", "last", "local"],
]


def prompt_text(tokens: int, count: Callable[[str], int], seed: int) -> str:
    """A user message of about `tokens` tokens: a line of its own (no prefix cache hits), then seeded word soup."""
    rng = random.Random(seed)
    head = f"Request {uuid.uuid4()}: summarise the notes below in one sentence.\n"
    words: list[str] = []
    while count(head + " ".join(words)) < tokens:
        words += [rng.choice(WORDS) for _ in range(max(8, (tokens - count(head + " ".join(words))) // 2))]
    while count(head + " ".join(words)) > tokens:
        words.pop()
    return head + " ".join(words)


def prefill(client: object, model: str, text: str) -> tuple[int, float]:
    """(prompt tokens, seconds) of a 1-token completion of `text`."""
    t0 = time.perf_counter()
    reply = client.chat.completions.create(  # type: ignore[attr-defined]
        model=model, messages=[{"role": "user", "content": text}], max_tokens=1, temperature=0
    )
    return reply.usage.prompt_tokens, time.perf_counter() - t0


def stall(client: object, model: str, text: str, stream_tokens: int = 400) -> dict[str, float]:
    """A stream runs; `text` arrives as its 20th piece does. The stream's gaps while `text` is read, and more."""
    arrivals: list[float] = []
    started, sent, answered = threading.Event(), [0.0], [0.0]

    def run_stream() -> None:
        stream = client.chat.completions.create(  # type: ignore[attr-defined]
            model=model,
            messages=[{"role": "user", "content": f"{uuid.uuid4()} Write a long story about a lighthouse."}],
            max_tokens=stream_tokens,
            temperature=0,
            stream=True,
            extra_body={"ignore_eos": True},
        )
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                arrivals.append(time.perf_counter())
                if len(arrivals) == 20:
                    started.set()

    reader = threading.Thread(target=run_stream)
    reader.start()
    started.wait(60)
    sent[0] = time.perf_counter()
    prefill(client, model, text)
    answered[0] = time.perf_counter()
    reader.join()
    # Gaps that overlap the prompt's reading: from the last piece before it arrived to the first after its answer.
    gaps = [b - a for a, b in itertools.pairwise(arrivals) if b > sent[0] and a < answered[0]]
    return {
        "max": max(gaps, default=0.0),
        "median": statistics.median(gaps) if gaps else 0.0,
        "ttft": answered[0] - sent[0],
        "during": sum(sent[0] < t <= answered[0] for t in arrivals),
        "both_done": max(arrivals[-1], answered[0]) - sent[0],
    }


def start_llamacpp(binary: Path, gguf: Path, threads: int) -> tuple[subprocess.Popen[bytes], str]:
    """llama-server on `gguf`, 2 slots of 8192 tokens, on a free port; returns it and its base URL."""
    port = free_port()
    cmd = [str(binary), "--model", str(gguf), "--host", "127.0.0.1", "--port", str(port), "--alias", "bundled"]
    cmd += ["--ctx-size", "16384", "--parallel", "2", "--threads", str(threads)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(f"http://127.0.0.1:{port}/health", proc)
    return proc, f"http://127.0.0.1:{port}/v1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="rounds; the modes take turns within each")
    parser.add_argument("--sizes", default="500,1000,2000,4000", help="prompt sizes in tokens for the prefill rate")
    parser.add_argument("--stall", type=int, default=4000, help="the prompt arriving beside a stream, in tokens")
    parser.add_argument("--llamacpp", type=Path, metavar="PATH", help="llama-server binary to compare with")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="llama.cpp's (ours uses all cores)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    import openai
    import torch

    from autoqwen.local_llm import EmbeddedServer, Engine, resolve_model
    from autoqwen.local_llm import prefill as chunking
    from autoqwen.local_llm.llama import Lean

    source = resolve_model("bundled")
    server = EmbeddedServer(Engine(source)).start()
    engine = server.engine.wait_ready(600)
    lean = Lean.of(engine.model)
    ours = (lean.prompt_attention, chunking.CHUNK_WORK) if lean is not None else (None, chunking.CHUNK_WORK)

    def as_before(before: bool) -> None:
        """One pass and PyTorch's attention (before issue 22), or the engine as it is."""
        if lean is not None:
            lean.prompt_attention = None if before else ours[0]
        chunking.CHUNK_WORK = float("inf") if before else ours[1]

    def count(text: str) -> int:
        return len(engine.encode_chat([{"role": "user", "content": text}]))

    clients = {"chunked": openai.OpenAI(base_url=server.base_url, api_key="none")}
    clients["one pass"] = clients["chunked"]
    proc = None
    if args.llamacpp:
        assert source.gguf_file is not None
        proc, url = start_llamacpp(args.llamacpp, Path(source.path) / source.gguf_file, args.threads)
        clients["llama.cpp"] = openai.OpenAI(base_url=url, api_key="none")
    rates: dict[str, dict[int, list[float]]] = {name: {n: [] for n in sizes} for name in clients}
    stalls: dict[str, list[dict[str, float]]] = {name: [] for name in clients}
    model = {"chunked": engine.model_id, "one pass": engine.model_id, "llama.cpp": "bundled"}
    try:
        for name, client in clients.items():  # warm-up
            as_before(name == "one pass")
            prefill(client, model[name], prompt_text(200, count, 0))
        for i in range(args.runs):
            order = list(clients) if i % 2 == 0 else list(clients)[::-1]
            for n in sizes:
                for name in order:
                    as_before(name == "one pass")
                    tokens, seconds = prefill(clients[name], model[name], prompt_text(n, count, i))
                    rates[name][n].append(tokens / seconds)
            for name in order:
                as_before(name == "one pass")
                stalls[name].append(stall(clients[name], model[name], prompt_text(args.stall, count, 100 + i)))
    finally:
        as_before(False)
        server.stop()
        if proc is not None:
            proc.terminate()
            proc.wait(30)

    print(f"{date.today()}  bundled GGUF {source.gguf_file}  torch threads {torch.get_num_threads()}  cores "
          f"{os.cpu_count()}  rounds {args.runs} (medians)")  # fmt: skip
    print("[1] prefill tokens/s by prompt size (a 1-token completion, prompt tokens / its time):")
    print(f"    {'':<10}" + "".join(f"{n:>10}" for n in sizes))
    for name in clients:
        print(f"    {name:<10}" + "".join(f"{statistics.median(rates[name][n]):>10.0f}" for n in sizes))
    for n in sizes:
        pairs = sorted(a / b for a, b in zip(rates["chunked"][n], rates["one pass"][n], strict=True))
        print(f"    chunked / one pass at {n}: median {statistics.median(pairs):.2f}x per round "
              f"(range {pairs[0]:.2f}-{pairs[-1]:.2f}x)")  # fmt: skip
    print(f"[2] a stream's gaps while a {args.stall}-token prompt is read (seconds):")
    print(f"    {'':<10}{'max gap':>10}{'median':>10}{'prompt TTFT':>13}{'stream pieces':>15}{'both done':>11}")
    for name in clients:
        s = {key: statistics.median(run[key] for run in stalls[name]) for key in stalls[name][0]}
        print(f"    {name:<10}{s['max']:>10.3f}{s['median']:>10.3f}{s['ttft']:>13.2f}{s['during']:>15.0f}"
              f"{s['both_done']:>11.2f}")  # fmt: skip
    worst = max(run["max"] for run in stalls["chunked"])
    print(f"    chunked: largest gap over all rounds {worst:.3f} s (target <= 0.150 s)")


if __name__ == "__main__":
    main()
