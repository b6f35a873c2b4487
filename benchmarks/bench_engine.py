"""Engine benchmarks on the bundled model, each a ratio measured in one run (issue 8's benchmarks 1, 2, 5 and 6).

1. Multi-turn agent chat (6 turns, growing context): time to first token on turns >= 3 with the prefix cache vs
   without (the cache is emptied before each turn for "without"). Target <= 0.3x.
2. 4 concurrent streaming clients: aggregate tokens/s vs one client, in rounds of 1 then 4. Target >= 2.5x.
5. Memory: peak RSS of the server process with the model loaded, idle and under 4 clients.
6. Model ready time: first start (empty converted-model cache) and a later start, each in a fresh process.

    python benchmarks/bench_engine.py [--model bundled] [--only chat,concurrent,memory,startup]
                                      [--tokens 128] [--pairs 11]

Benchmark 3 (server vs in-process) is bench_server.py; 4 (llama.cpp side by side) is bench_llamacpp.py.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from bench_server import stream  # one streamed story request, timed

os.environ.setdefault("TQDM_DISABLE", "1")

SYSTEM = (
    "You are the planner agent of a small research team. You break the user's task into steps, say which "
    "teammate should take each step (the searcher finds papers, the reader fetches and reads web pages, the "
    "writer drafts the final answer), and you keep track of what has been done. Be concise, number the steps, "
    "and finish with NEXT: followed by the teammate who should speak next. Never invent results; when a tool "
    "result is missing, ask for it. Reply in English."
)
TURNS = [
    "Find recent work on small language models that call tools, and summarise the three most useful papers.",
    "The searcher found: 'Toolformer', 'Gorilla', and 'TinyAgent'. What should the reader do next?",
    "The reader says Toolformer teaches a model to insert API calls during pre-training. Next step?",
    "The reader says Gorilla fine-tunes LLaMA on API documentation and reduces hallucinated calls. Next?",
    "The reader says TinyAgent runs function calling on a laptop with a 1.1B model. What remains?",
    "Ask the writer for the final summary, with one sentence per paper.",
]


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def multi_turn(client: object, model: str, clear: object | None) -> list[float]:
    """Time to first token of each turn of a 6-turn chat (greedy, 48-token replies)."""
    messages = [{"role": "system", "content": SYSTEM}]
    ttfts = []
    for turn in TURNS:
        messages.append({"role": "user", "content": turn})
        if clear is not None:
            clear()  # type: ignore[operator]
        t0 = time.perf_counter()
        first, parts = 0.0, []
        stream = client.chat.completions.create(  # type: ignore[attr-defined]
            model=model, messages=messages, max_tokens=48, temperature=0, stream=True
        )
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                first = first or time.perf_counter()
                parts.append(chunk.choices[0].delta.content)
        ttfts.append(first - t0)
        messages.append({"role": "assistant", "content": "".join(parts)})
    return ttfts


def concurrent(client: object, model: str, clients: int, n: int) -> float:
    """Aggregate completion tokens/s of `clients` simultaneous streaming requests of n tokens each."""
    spans: list[tuple[float, float, float]] = []
    threads = [threading.Thread(target=lambda: spans.append(stream(client, model, n))) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    start, end = min(sent for sent, _, _ in spans), max(last for _, _, last in spans)
    return clients * n / (end - start)


def ready_time(model: str, cache_dir: str) -> float:
    """Seconds from a fresh process's start to the model being ready to serve."""
    code = (
        "import time; t0 = time.perf_counter()\n"
        "from local_llm import Engine, resolve_model\n"
        f"Engine(resolve_model({model!r})).start().wait_ready(600)\n"
        "print(time.perf_counter() - t0)\n"
    )
    env = {**os.environ, "AUTOQWEN_CACHE_DIR": cache_dir}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--only", default="chat,concurrent,memory,startup")
    parser.add_argument("--tokens", type=int, default=128, help="tokens per client in the concurrency benchmark")
    parser.add_argument("--pairs", type=int, default=11, help="rounds of 1 then 4 clients in that benchmark")
    args = parser.parse_args()
    only = set(args.only.split(","))

    import openai
    import torch

    from autoqwen.local_llm import EmbeddedServer, Engine, resolve_model

    print(f"model: {args.model}  threads: {torch.get_num_threads()}  cores: {os.cpu_count()}")
    if "startup" in only:
        with tempfile.TemporaryDirectory() as cache_dir:
            first = ready_time(args.model, cache_dir)
            later = statistics.median(ready_time(args.model, cache_dir) for _ in range(2))
        print(f"[6] model ready, fresh process: first start {first:.1f} s, later starts {later:.1f} s (median of 2)")

    base_rss = rss_mb()
    server = EmbeddedServer(Engine(resolve_model(args.model), max_batch=4)).start()
    engine = server.engine.wait_ready(600)
    client = openai.OpenAI(base_url=server.base_url, api_key="none")
    model = engine.model_id
    idle_rss = busy_rss = rss_mb()
    try:
        if "chat" in only:
            multi_turn(client, model, None)  # warm-up
            engine.prefix_cache.clear()
            with_cache = multi_turn(client, model, None)
            without = multi_turn(client, model, engine.prefix_cache.clear)
            a, b = statistics.mean(with_cache[2:]), statistics.mean(without[2:])
            print("[1] multi-turn chat, time to first token per turn (s):")
            print("    with prefix cache:    " + "  ".join(f"{t:.3f}" for t in with_cache))
            print("    without prefix cache: " + "  ".join(f"{t:.3f}" for t in without))
            print(f"    turns >= 3: {a:.3f} s vs {b:.3f} s -> ratio {a / b:.2f}x (target <= 0.3x)")
        if "concurrent" in only:
            concurrent(client, model, 1, 8)  # warm-up
            # One client, then four, in turns: a pair sees the same machine (2 shared cores drift by +-20 %).
            pairs = [
                (concurrent(client, model, 1, args.tokens), concurrent(client, model, 4, args.tokens))
                for _ in range(args.pairs)
            ]
            busy_rss = rss_mb()
            one, four = (statistics.median(run) for run in zip(*pairs, strict=True))
            # Each pair's ratio compares rounds a second apart, which the machine's drift affects alike.
            ratios = sorted(f / o for o, f in pairs)
            print(
                f"[2] {args.tokens} tokens per client, medians of {len(pairs)} rounds: 1 client {one:.1f} tok/s, "
                f"4 clients {four:.1f} tok/s aggregate; 4 vs 1 in each pair of rounds: median "
                f"{statistics.median(ratios):.2f}x (range {ratios[0]:.2f}-{ratios[-1]:.2f}x; ratio of the medians "
                f"{four / one:.2f}x; target >= 2.5x)"
            )
        if "memory" in only:
            print(
                f"[5] RSS: before load {base_rss:.0f} MB, model loaded and idle {idle_rss:.0f} MB, right after "
                f"4 clients {busy_rss:.0f} MB, peak of the process {peak_rss_mb():.0f} MB (loading goes through "
                f"float32); prefix cache holds {engine.prefix_cache.nbytes / 2**20:.0f} MB"
            )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
