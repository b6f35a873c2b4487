"""Server overhead benchmark on the bundled model: in-process decode vs the same requests over the OpenAI API.

transformers' generate() runs last, on the main thread: measured first, it left a second OpenMP thread team behind
that halved the engine's speed on 2 cores.

Prints, measured in one run: model load time; decode tokens/s of transformers' own generate(), of the engine
in-process, and of the engine through the HTTP server (streaming, openai SDK; the client in its own process, as
clients are, and again in the server's process, where it competes with the server for the GIL); time to first
token; and the server's overhead over in-process decoding, client in its own process, from runs that take turns
(target: the server costs <= 5 %).

    python benchmarks/bench_server.py [--model bundled] [--tokens 128] [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TQDM_DISABLE", "1")

PROMPT = [{"role": "user", "content": "Write a long story about a robot who learns to paint."}]


def stream(client: object, model: str, n: int) -> tuple[float, float, float]:
    """Times of one streamed n-token completion of PROMPT: (request sent, first text, last text)."""
    t0 = time.perf_counter()
    first = last = 0.0
    usage = None
    stream = client.chat.completions.create(  # type: ignore[attr-defined]
        model=model,
        messages=PROMPT,
        max_tokens=n,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            last = time.perf_counter()
            first = first or last
        usage = chunk.usage or usage
    assert usage is not None and usage.completion_tokens == n
    return t0, first, last


def stream_once(client: object, model: str, n: int) -> tuple[float, float]:
    """(time to first token, decode tokens/s) of one streamed n-token completion."""
    t0, first, last = stream(client, model, n)
    return first - t0, (n - 1) / (last - first)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--client-of", metavar="URL", help=argparse.SUPPRESS)  # one streamed request, as JSON
    args = parser.parse_args()
    if args.client_of:
        import openai

        print(json.dumps(stream_once(openai.OpenAI(base_url=args.client_of, api_key="none"), args.model, args.tokens)))
        return

    import openai
    import torch

    from autoqwen.local_llm import EmbeddedServer, Engine, SamplingParams, resolve_model

    started = time.perf_counter()
    server = EmbeddedServer(Engine(resolve_model(args.model))).start()
    engine = server.engine.wait_ready()
    load_s = time.perf_counter() - started
    n = args.tokens
    prompt_ids = engine.encode_chat(PROMPT)

    def hf_generate() -> tuple[float, float]:
        model = engine.model
        ids = torch.tensor([prompt_ids])
        t0 = time.perf_counter()
        with torch.inference_mode():
            model.generate(ids, max_new_tokens=1, min_new_tokens=1, do_sample=False)
            t1 = time.perf_counter()
            out = model.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False)
        t2 = time.perf_counter()
        generated = out.shape[1] - ids.shape[1]
        return t1 - t0, (generated - 1) / ((t2 - t1) - (t1 - t0))

    def in_process() -> tuple[float, float]:
        c = engine.submit(prompt_ids, SamplingParams(max_tokens=n, temperature=0, ignore_eos=True))
        c.text()
        assert c.first_token_at and c.finished_at
        return c.first_token_at - c.submitted_at, (c.completion_tokens - 1) / (c.finished_at - c.first_token_at)

    client = openai.OpenAI(base_url=server.base_url, api_key="none")

    def from_other_process() -> tuple[float, float]:
        cmd = [sys.executable, __file__, "--client-of", server.base_url, "--model", engine.model_id, "--tokens", str(n)]
        ttft, rate = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        return ttft, rate

    paths = {
        "engine in-process": in_process,
        "engine over HTTP (stream)": from_other_process,
        "  same, client in-process": lambda: stream_once(client, engine.model_id, n),
    }
    for fn in paths.values():
        fn()  # warm-up
    # The paths take turns, run after run: the machine's drift (+-20 % within minutes) reaches them alike.
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in paths}
    for _ in range(args.runs):
        for name, fn in paths.items():
            runs[name].append(fn())
    hf_generate()  # warm-up
    runs["transformers generate()"] = [hf_generate() for _ in range(args.runs)]
    server.stop()
    results = {name: tuple(statistics.median(r[i] for r in rs) for i in (0, 1)) for name, rs in runs.items()}

    print(
        f"model: {engine.model_id}  prompt: {len(prompt_ids)} tokens  completion: {n} tokens  "
        f"runs: {args.runs} (median)  threads: {torch.get_num_threads()}"
    )
    print(f"model load (first start in this process): {load_s:.1f} s")
    print(f"{'path':<28}{'TTFT ms':>10}{'decode tok/s':>15}")
    for name, (ttft, rate) in results.items():
        print(f"{name:<28}{ttft * 1000:>10.0f}{rate:>15.1f}")

    def overhead(name: str) -> tuple[float, float, float]:
        """1 - (the path's decode rate / in-process), per run: median, lowest and highest, in %."""
        ratios = sorted(
            100 * (1 - r[1] / base[1]) for r, base in zip(runs[name], runs["engine in-process"], strict=True)
        )
        return statistics.median(ratios), ratios[0], ratios[-1]

    http, shared = overhead("engine over HTTP (stream)"), overhead("  same, client in-process")
    print(
        f"server vs in-process decode, per run: overhead {http[0]:.1f} % (runs {http[1]:.1f} to {http[2]:.1f} %), "
        f"target <= 5 %; client in the server's process: {shared[0]:.1f} %"
    )
    vs_hf = results["engine in-process"][1] / results["transformers generate()"][1]
    print(f"engine / transformers generate() decode ratio: {vs_hf:.2f}")


if __name__ == "__main__":
    main()
