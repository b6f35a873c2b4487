"""Side by side with llama.cpp (issue 8's benchmark 4): the bundled GGUF served by llama-cpp-python's OpenAI
server and by ours (`autoqwen serve`), each in its own process and alone while measured, same prompts, one run.

Prints, for each server, the median and range over rounds (3 by default; the servers take turns within a round,
the idle one waiting) of: time to first token, decode tokens/s (128 tokens, EOS banned through logit_bias) and the
wall time of one builtin workflow run against it (`autoqwen run write-review --max-turns 2 --seed 0 --base-url ...`:
both servers already loaded, so load time is left out of both); then our/llama.cpp ratios of the medians.

llama-cpp-python compiles for 10+ minutes, so it is an optional extra, installed only for this benchmark:

    pip install -e '.[llamacpp]'          # or into another venv, then: --llama-python that/venv/bin/python
    python benchmarks/bench_llamacpp.py [--llama-python PYTHON] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

PROMPT = [{"role": "user", "content": "Write a long story about a robot who learns to paint."}]
WORKFLOW = ["write-review", "--max-turns", "2", "--seed", "0"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(ready_url: str, proc: subprocess.Popen[bytes], timeout: float = 300) -> None:
    """Poll until `ready_url` answers 200 (the model is loaded)."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args[:3]} exited with {proc.returncode}")
        try:
            if httpx.get(ready_url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{ready_url} not ready after {timeout} s")


def decode(base_url: str, banned: dict[str, int]) -> tuple[float, float]:
    """(time to first token, decode tokens/s) of one 128-token greedy completion."""
    import openai

    client = openai.OpenAI(base_url=base_url, api_key="none")
    ask = {"model": "bundled", "messages": PROMPT, "max_tokens": 128, "temperature": 0, "logit_bias": banned}
    t0 = time.perf_counter()
    first = 0.0
    # Closed on leaving the block: a stream left open would go on generating beside the next request.
    with client.chat.completions.create(**ask, stream=True) as stream:  # type: ignore[call-overload]
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                first = time.perf_counter()
                break
    ttft = first - t0
    t0 = time.perf_counter()
    reply = client.chat.completions.create(**ask)  # type: ignore[call-overload]
    total = time.perf_counter() - t0
    assert reply.usage is not None
    return ttft, (reply.usage.completion_tokens - 1) / (total - ttft)


def workflow(base_url: str, model: str) -> tuple[float, dict[str, float]]:
    """Wall time of one `autoqwen run` process against the server, and the run's own totals (its `end` event)."""
    cmd = [sys.executable, "-m", "autoqwen", "run", *WORKFLOW, "--json", "--base-url", base_url, "--model", model]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    wall = time.perf_counter() - t0
    end = [json.loads(line) for line in out.splitlines() if line.startswith("{")][-1]
    return wall, end


def eos_ids(gguf: Path) -> list[int]:
    """The end-of-text token and ChatML's <|im_end|>, read from the GGUF file (banned for the decode timing)."""
    from gguf import GGUFReader

    fields = GGUFReader(gguf).fields
    eos = fields["tokenizer.ggml.eos_token_id"]
    tokens = fields["tokenizer.ggml.tokens"]
    names = [bytes(tokens.parts[i]).decode() for i in tokens.data]
    return sorted({int(eos.parts[eos.data[0]][0]), *([names.index("<|im_end|>")] if "<|im_end|>" in names else [])})


def start(cmd: list[str], ready_path: str) -> tuple[subprocess.Popen[bytes], str, float]:
    """Start a server process on a free port; returns it, its base URL and its time from start to model ready."""
    port = free_port()
    started = time.perf_counter()
    proc = subprocess.Popen([*cmd, "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(f"http://127.0.0.1:{port}{ready_path}", proc)
    return proc, f"http://127.0.0.1:{port}/v1", time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llama-python", default=sys.executable, help="interpreter with llama-cpp-python[server]")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="llama.cpp's (ours uses all cores)")
    parser.add_argument("--runs", type=int, default=3, help="rounds, each: one decode and one workflow per server")
    args = parser.parse_args()

    from autoqwen.local_llm import resolve_model

    source = resolve_model("bundled")
    assert source.gguf_file is not None
    gguf = Path(source.path) / source.gguf_file
    banned = {str(token): -100 for token in eos_ids(gguf)}
    # Both servers run in their own process, as users run them, each alone while it is measured.
    # (llama.cpp loads before it listens; ours listens at once and says on /health when the model is ready)
    servers = {
        "llama.cpp": ([args.llama_python, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
                       "--n_ctx", "8192", "--n_threads", str(args.threads), "--model_alias", "bundled"], "/v1/models"),
        "autoqwen": ([sys.executable, "-m", "autoqwen", "serve", "--model", "bundled", "--alias", "bundled"],
                     "/health"),
    }  # fmt: skip
    procs, urls, ready = {}, {}, {}
    try:
        for name, (cmd, ready_path) in servers.items():
            procs[name], urls[name], ready[name] = start(cmd, ready_path)
            decode(urls[name], banned)  # warm-up
        # Rounds alternate which server goes first; the other one sits idle meanwhile.
        samples: dict[str, list[tuple[float, float, float, float]]] = {name: [] for name in servers}
        for i in range(args.runs):
            for name in list(servers)[:: 1 if i % 2 == 0 else -1]:
                ttft, rate = decode(urls[name], banned)
                wall, end = workflow(urls[name], "bundled")
                samples[name].append((ttft, rate, wall, end["seconds"]))
                tokens = f"{end['prompt_tokens']}+{end['completion_tokens']}"
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait(30)
    print(f"bundled GGUF: {gguf.name}  llama.cpp threads: {args.threads}  rounds: {args.runs} (median [min-max])")
    print(f"model ready (process start): llama.cpp {ready['llama.cpp']:.1f} s, autoqwen {ready['autoqwen']:.1f} s")
    print(f"decode: 128 greedy tokens; workflow: autoqwen run {' '.join(WORKFLOW)}, {tokens} tokens in+out")
    print(f"{'server':<10} {'TTFT ms':>16} {'decode tok/s':>18} {'workflow wall s':>16} {'run s':>14}")
    medians = {}
    for name, rows in samples.items():
        columns = list(zip(*rows, strict=True))
        medians[name] = [statistics.median(c) for c in columns]
        ttft, rate, wall, run = (
            f"{statistics.median(c) * k:.{d}f} [{min(c) * k:.{d}f}-{max(c) * k:.{d}f}]"
            for c, k, d in zip(columns, (1000, 1, 1, 1), (0, 1, 1, 1), strict=True)
        )
        print(f"{name:<10} {ttft:>16} {rate:>18} {wall:>16} {run:>14}")
    (ot, orate, ow, orun), (lt, lrate, lw, lrun) = medians["autoqwen"], medians["llama.cpp"]
    print(f"autoqwen / llama.cpp (medians): decode {orate / lrate:.2f}x, TTFT {ot / lt:.2f}x, workflow wall "
          f"{ow / lw:.2f}x, run {orun / lrun:.2f}x (targets: decode >= 0.5x, workflow <= 1.0x)")  # fmt: skip


if __name__ == "__main__":
    main()
