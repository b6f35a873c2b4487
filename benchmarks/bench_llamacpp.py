"""Side by side with llama.cpp (issue 8's benchmark 4): the bundled GGUF served by llama-cpp-python's OpenAI
server and by ours, same prompts, measured in one run.

Prints, for each server: time to first token, decode tokens/s (128 tokens, EOS banned through logit_bias, median
of 3) and the wall time of one builtin workflow run against it (`autoqwen run write-review --max-turns 2 --seed 0
--base-url ...`: both servers already loaded, so load time is left out of both); then our/llama.cpp ratios.

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


def wait_for(base_url: str, proc: subprocess.Popen[bytes], timeout: float = 300) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"llama.cpp server exited with {proc.returncode}")
        try:
            if httpx.get(f"{base_url}/models", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"llama.cpp server not up after {timeout} s")


def measure(base_url: str, model: str, banned: dict[str, int], runs: int) -> tuple[float, float]:
    """(time to first token, decode tokens/s) of 128-token completions, medians of `runs`."""
    import openai

    client = openai.OpenAI(base_url=base_url, api_key="none")
    ask = {"model": model, "messages": PROMPT, "max_tokens": 128, "temperature": 0, "logit_bias": banned}
    ttfts, rates = [], []
    for i in range(runs + 1):
        t0 = time.perf_counter()
        first = 0.0
        for chunk in client.chat.completions.create(**ask, stream=True):  # type: ignore[call-overload]
            if chunk.choices and chunk.choices[0].delta.content:
                first = first or time.perf_counter()
                break
        ttft = first - t0
        t0 = time.perf_counter()
        reply = client.chat.completions.create(**ask)  # type: ignore[call-overload]
        total = time.perf_counter() - t0
        assert reply.usage is not None
        if i:  # the first round warms up
            ttfts.append(ttft)
            rates.append((reply.usage.completion_tokens - 1) / (total - ttft))
    return statistics.median(ttfts), statistics.median(rates)


def workflow(base_url: str, model: str) -> tuple[float, dict[str, float]]:
    """Wall time of one `autoqwen run` process against the server, and the run's own totals (its `end` event)."""
    cmd = [sys.executable, "-m", "workflows.cli", "run", *WORKFLOW, "--json", "--base-url", base_url, "--model", model]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    wall = time.perf_counter() - t0
    end = [json.loads(line) for line in out.splitlines() if line.startswith("{")][-1]
    return wall, end


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llama-python", default=sys.executable, help="interpreter with llama-cpp-python[server]")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    from local_llm import EmbeddedServer, Engine, resolve_model

    source = resolve_model("bundled")
    assert source.gguf_file is not None
    gguf = Path(source.path) / source.gguf_file
    port = free_port()
    llama_url = f"http://127.0.0.1:{port}/v1"
    started = time.perf_counter()
    llama = subprocess.Popen(
        [args.llama_python, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", "8192", "--n_threads", str(args.threads), "--model_alias", "bundled"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(llama_url, llama)
        llama_ready = time.perf_counter() - started
        started = time.perf_counter()
        with EmbeddedServer(Engine(source)) as ours:
            engine = ours.engine.wait_ready(600)
            ours_ready = time.perf_counter() - started
            eos = engine._eos_ids
            banned = {str(token): -100 for token in eos}
            rows = {}
            for name, url, model in (("llama.cpp", llama_url, "bundled"), ("autoqwen", ours.base_url, engine.model_id)):
                ttft, rate = measure(url, model, banned, args.runs)
                rows[name] = (ttft, rate, *workflow(url, model))
    finally:
        llama.terminate()
        llama.wait(30)
    print(f"bundled GGUF: {gguf.name}  threads: {args.threads}  decode: 128 tokens, median of {args.runs}")
    print(f"server ready (process start to serving): llama.cpp {llama_ready:.1f} s, autoqwen {ours_ready:.1f} s")
    print(f"workflow: autoqwen run {' '.join(WORKFLOW)} (process wall time; run time and tokens from its end event)")
    header = ("server", "TTFT s", "decode tok/s", "workflow wall s", "run s", "tokens in+out")
    print(f"{header[0]:<10} {header[1]:>7} {header[2]:>13} {header[3]:>16} {header[4]:>6} {header[5]:>14}")
    for name, (ttft, rate, wall, end) in rows.items():
        tokens = f"{end['prompt_tokens']}+{end['completion_tokens']}"
        print(f"{name:<10} {ttft:>7.3f} {rate:>13.1f} {wall:>16.1f} {end['seconds']:>6.1f} {tokens:>14}")
    (ot, orate, ow, oend), (lt, lrate, lw, lend) = rows["autoqwen"], rows["llama.cpp"]
    print(f"autoqwen / llama.cpp: decode {orate / lrate:.2f}x, TTFT {ot / lt:.2f}x, workflow wall {ow / lw:.2f}x, "
          f"run {oend['seconds'] / lend['seconds']:.2f}x (targets: decode >= 0.5x, workflow <= 1.0x)")  # fmt: skip


if __name__ == "__main__":
    main()
