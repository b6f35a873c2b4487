"""Many clients, shared prefixes, decode and a workflow on the bundled model (issue 22, parts 3 to 5), one run.

3. Clients: 1, 4, 8 and 16 clients at once, each streaming 128 greedy tokens (EOS banned) of a prompt of its own;
   aggregate tokens/s (all tokens / the time until the last is done), time to first token p50 and p95, and the
   scaling against one client; the server process's peak RSS while 16 are served, and while it reads a ~4000-token
   prompt.
4. Overlapping shared prefix: a request with a fresh ~1000-token prefix streams; as its first token arrives a second
   request with the same prefix and another question is sent; the second's TTFT over the first's (target <= 0.3x).
5. Decode: one stream of 256 greedy tokens, tokens/s after the first.
6. Workflow: `autoqwen run write-review --max-turns 2 --seed 0` against each server (AutoGen over the OpenAI API,
   as the seed's setup runs it against LM Studio; both servers loaded, so the wall time leaves loading out).

Every server runs in its own process, alone while it is measured (the others idle), taking turns within each
round: `autoqwen serve` once per `--batch` size (to pick the default by measurement) and, with `--llamacpp PATH`,
llama.cpp's own llama-server on the same GGUF (16 slots sharing one 32k-token KV cache, continuous batching).

    python benchmarks/bench_clients.py [--runs 2] [--batch 4,8,16] [--clients 1,4,8,16]
                                       [--llamacpp .cache/llama.cpp/build/bin/llama-server]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import date
from pathlib import Path
from typing import Any

from bench_llamacpp import eos_ids, free_port, wait_for, workflow

os.environ.setdefault("TQDM_DISABLE", "1")

TOPICS = ["a lighthouse", "a robot painter", "a lost key", "a river town", "a chess club", "a night train"]
WORDS = [
    "agent",
    "paper",
    "model",
    "tool",
    "search",
    "result",
    "page",
    "table",
    "figure",
    "method",
    "data",
    "report",
    "memory",
    "cache",
    "token",
]


class Server:
    """One server process: its name, base URL, and the model name it answers to."""

    def __init__(self, name: str, cmd: list[str], ready_path: str) -> None:
        self.name, port = name, free_port()
        self.proc = subprocess.Popen([*cmd, "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(f"http://127.0.0.1:{port}{ready_path}", self.proc, timeout=600)
        self.base_url = f"http://127.0.0.1:{port}/v1"

    def rss_mb(self) -> float:
        import psutil

        return float(psutil.Process(self.proc.pid).memory_info().rss) / 2**20

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def stream(
    base_url: str,
    messages: list[dict[str, str]],
    tokens: int,
    banned: dict[str, int],
    first: threading.Event | None = None,
) -> tuple[float, list[float]]:
    """Send one streamed greedy request; (send time, arrival time of each piece of text). `first` is set as the
    first piece arrives."""
    import openai

    client = openai.OpenAI(base_url=base_url, api_key="none", max_retries=0, timeout=600)
    sent, arrivals = time.perf_counter(), []
    with client.chat.completions.create(
        model="bundled",
        messages=messages,
        max_tokens=tokens,
        temperature=0,
        logit_bias=banned,
        stream=True,  # type: ignore[arg-type]
    ) as chunks:
        for chunk in chunks:
            if chunk.choices and chunk.choices[0].delta.content:
                arrivals.append(time.perf_counter())
                if first is not None:
                    first.set()
    return sent, arrivals


class PeakRss:
    """The server process's peak RSS (MB) while the block runs, sampled every 50 ms."""

    def __init__(self, server: Server) -> None:
        self.server, self.mb, self.done = server, server.rss_mb(), threading.Event()
        self.watcher = threading.Thread(target=self.watch)

    def watch(self) -> None:
        while not self.done.wait(0.05):
            self.mb = max(self.mb, self.server.rss_mb())

    def __enter__(self) -> PeakRss:
        self.watcher.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.done.set()
        self.watcher.join()


def clients(server: Server, count: int, banned: dict[str, int]) -> dict[str, float]:
    """`count` clients at once, 128 tokens each: aggregate tokens/s, TTFT p50/p95 (ms), peak RSS (MB)."""
    results: list[tuple[float, list[float]]] = []

    def one(i: int) -> None:
        ask = f"{uuid.uuid4()} Write a long story about {TOPICS[i % len(TOPICS)]}."
        results.append(stream(server.base_url, [{"role": "user", "content": ask}], 128, banned))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    with PeakRss(server) as peak:
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    end = max(arrivals[-1] for _, arrivals in results)
    # Pieces, not tokens: a piece holds the tokens of up to 20 ms; every request has 128 tokens.
    ttfts = sorted(arrivals[0] - sent for sent, arrivals in results)
    return {
        "rate": 128 * count / (end - start),
        "p50": statistics.median(ttfts) * 1000,
        "p95": ttfts[min(len(ttfts) - 1, round(0.95 * (len(ttfts) - 1)))] * 1000,
        "rss": peak.mb,
    }


def long_prompt_rss(server: Server, banned: dict[str, int], seed: int) -> float:
    """The server's peak RSS (MB) while it reads a fresh ~4000-token prompt and answers it in 16 tokens."""
    rng = random.Random(seed)
    notes = f"Notes {uuid.uuid4()}:\n" + " ".join(rng.choice(WORDS) for _ in range(4000))
    with PeakRss(server) as peak:
        stream(server.base_url, [{"role": "user", "content": notes + "\nSummarise."}], 16, banned)
    return peak.mb


def shared_prefix(server: Server, banned: dict[str, int], seed: int) -> tuple[float, float]:
    """(first TTFT, second TTFT) of two requests sharing a fresh ~1000-token prefix, the second sent as the first's
    first token arrives."""
    rng = random.Random(seed)
    prefix = f"Notes {uuid.uuid4()}:\n" + " ".join(rng.choice(WORDS) for _ in range(1000))
    first: list[tuple[float, list[float]]] = []
    arrived = threading.Event()

    def run_first() -> None:
        messages = [{"role": "user", "content": prefix + "\nQuestion: which word comes most often?"}]
        first.append(stream(server.base_url, messages, 64, banned, arrived))

    reader = threading.Thread(target=run_first)
    reader.start()
    arrived.wait(600)
    messages = [{"role": "user", "content": prefix + "\nQuestion: which word comes least often?"}]
    sent, arrivals = stream(server.base_url, messages, 1, banned)
    reader.join()
    ((sent_first, arrivals_first),) = first
    return arrivals_first[0] - sent_first, arrivals[0] - sent


def decode(server: Server, banned: dict[str, int]) -> float:
    """Tokens/s of one 256-token greedy stream, after its first token."""
    ask = [{"role": "user", "content": f"{uuid.uuid4()} Write a long story about a robot who learns to paint."}]
    _, arrivals = stream(server.base_url, ask, 256, banned)
    return 255 / (arrivals[-1] - arrivals[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2, help="rounds; the servers take turns within each")
    parser.add_argument("--batch", default="4,8,16", help="autoqwen serve --max-batch values to compare")
    parser.add_argument("--clients", default="1,4,8,16", help="numbers of concurrent clients")
    parser.add_argument("--llamacpp", type=Path, metavar="PATH", help="llama-server binary to compare with")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="llama.cpp's (ours uses all cores)")
    parser.add_argument("--no-workflow", action="store_true", help="leave out the workflow timing")
    args = parser.parse_args()
    counts = [int(c) for c in args.clients.split(",")]

    from autoqwen.local_llm import resolve_model

    source = resolve_model("bundled")
    assert source.gguf_file is not None
    gguf = Path(source.path) / source.gguf_file
    banned = {str(token): -100 for token in eos_ids(gguf)}
    servers = [
        Server(
            f"autoqwen b{b}",
            [sys.executable, "-m", "autoqwen", "serve", "--model", "bundled", "--alias", "bundled", "--max-batch", b],
            "/health",
        )
        for b in args.batch.split(",")
    ]
    if args.llamacpp:
        cmd = [str(args.llamacpp), "--model", str(gguf), "--host", "127.0.0.1", "--alias", "bundled", "--jinja"]
        cmd += ["--ctx-size", "32768", "--parallel", "16", "--kv-unified", "--threads", str(args.threads)]
        servers.append(Server("llama.cpp", cmd, "/health"))
    rows: dict[str, dict[str, list[Any]]] = {s.name: {} for s in servers}

    def note(server: Server, key: str, value: Any) -> None:
        rows[server.name].setdefault(key, []).append(value)

    try:
        for server in servers:  # warm-up: kernels, caches, the first request's costs
            decode(server, banned)
        for i in range(args.runs):
            for server in servers if i % 2 == 0 else servers[::-1]:
                for count in counts:
                    note(server, f"c{count}", clients(server, count, banned))
                note(server, "prefix", shared_prefix(server, banned, i))
                note(server, "long rss", long_prompt_rss(server, banned, i))
                note(server, "decode", decode(server, banned))
                if not args.no_workflow:
                    note(server, "workflow", workflow(server.base_url, "bundled")[0])
    finally:
        for server in servers:
            server.stop()

    def med(name: str, key: str, field: str | int | None = None) -> float:
        values = rows[name][key]
        return statistics.median(v if field is None else v[field] for v in values)

    print(f"{date.today()}  bundled GGUF {source.gguf_file}  cores {os.cpu_count()}  llama.cpp threads "
          f"{args.threads}  rounds {args.runs} (medians)")  # fmt: skip
    print("[3] concurrent clients, 128 tokens each: aggregate tokens/s (scaling vs 1) | TTFT p50/p95 ms")
    for name in rows:
        cells = []
        for count in counts:
            rate = med(name, f"c{count}", "rate")
            cells.append(f"{count}: {rate:.0f} ({rate / med(name, f'c{counts[0]}', 'rate'):.2f}x) "
                         f"{med(name, f'c{count}', 'p50'):.0f}/{med(name, f'c{count}', 'p95'):.0f}")  # fmt: skip
        print(f"    {name:<12} " + " | ".join(cells))
        print(f"    {'':<12} peak RSS at {counts[-1]} clients: {med(name, f'c{counts[-1]}', 'rss'):.0f} MB, "
              f"with a ~4000-token prompt: {med(name, 'long rss'):.0f} MB")  # fmt: skip
    print("[4] overlapping requests sharing a ~1000-token prefix: first TTFT, second TTFT (ms), second/first")
    for name in rows:
        a, b = med(name, "prefix", 0), med(name, "prefix", 1)
        ratios = sorted(second / first for first, second in rows[name]["prefix"])
        print(f"    {name:<12} {a * 1000:.0f}, {b * 1000:.0f}: {statistics.median(ratios):.2f}x (target <= 0.3x)")
    print("[5] single-stream decode, 256 tokens: tokens/s")
    for name in rows:
        print(f"    {name:<12} {med(name, 'decode'):.0f}")
    if not args.no_workflow:
        print("[6] autoqwen run write-review --max-turns 2 --seed 0 against each server: wall seconds")
        for name in rows:
            print(f"    {name:<12} {med(name, 'workflow'):.2f}")


if __name__ == "__main__":
    main()
