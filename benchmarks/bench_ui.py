"""The web UI against the CLI (issue 20's benchmark): the same workflow, same seed, on the same model server.

One `autoqwen serve --model bundled` process serves both; one `autoqwen ui --base-url ...` process serves the UI,
driven by headless Chromium (Debian's chromium + chromium-driver, selenium). Rounds alternate which goes first:

- CLI: `autoqwen run write-review --max-turns 2 --seed 0 --json --base-url ...`, wall time of the process, and the
  run's own time (its session's start to end) and tokens;
- UI: on /playground, the same inputs, max turns and seed; from the click on Run: time to the first message on
  screen (the task), to the first agent message, and to the summary (the run's end), and the run's own time and
  tokens (the same measure, from its session). Both runs write to the same store (one data dir).

Prints medians [min-max] and the UI / CLI ratios (target: the UI adds under 5 % to the run's wall time).

    python benchmarks/bench_ui.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import httpx
from bench_llamacpp import free_port, wait_for

os.environ.setdefault("TQDM_DISABLE", "1")

WORKFLOW, TURNS, SEED = "write-review", 2, 0


def cli_run(base_url: str, ui_url: str) -> dict[str, float]:
    """One `autoqwen run` process: its wall time, and the run's own seconds (its session's start to end, as for the
    UI's runs) and tokens."""
    cmd = [sys.executable, "-m", "autoqwen", "run", WORKFLOW, "--max-turns", str(TURNS), "--seed", str(SEED)]
    t0 = time.perf_counter()
    out = subprocess.run([*cmd, "--json", "--base-url", base_url], check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    end = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")][-1]
    session = httpx.get(f"{ui_url}/api/v1/sessions/{end['session_id']}", timeout=10).json()["session"]
    tokens = session["prompt_tokens"] + session["completion_tokens"]
    return {"wall": wall, "run": _seconds(session), "tokens": tokens}


def ui_run(driver: object, ui_url: str) -> dict[str, float]:
    """One run from the playground: seconds from the click on Run to the first message, the first agent message
    and the summary; the run's own seconds and tokens from its session."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    d = driver  # selenium's Chrome
    d.get(f"{ui_url}/playground?workflow={WORKFLOW}")  # type: ignore[attr-defined]
    for field, value in (("max-turns", TURNS), ("seed", SEED)):
        box = d.find_element(By.ID, field)  # type: ignore[attr-defined]
        box.clear()
        box.send_keys(str(value))
    # The page notes when things appear (a MutationObserver), so the browser is not polled hard while the model
    # runs on the same cores: Selenium looks only every 0.25 s.
    d.execute_script(_WATCH)  # type: ignore[attr-defined]
    d.find_element(By.ID, "run").click()  # type: ignore[attr-defined]
    WebDriverWait(d, 600, poll_frequency=0.25).until(lambda d: d.execute_script("return window._marks.end"))
    marks = d.execute_script("return window._marks")  # type: ignore[attr-defined]
    first, agent, wall = ((marks[key] - marks["click"]) / 1000 for key in ("first", "agent", "end"))
    session_id = d.execute_script("return new URLSearchParams(location.search).get('session')")  # type: ignore[attr-defined]
    session = httpx.get(f"{ui_url}/api/v1/sessions/{session_id}", timeout=10).json()["session"]
    tokens = session["prompt_tokens"] + session["completion_tokens"]
    return {"wall": wall, "first": first, "agent": agent, "run": _seconds(session), "tokens": tokens}


# Times (performance.now(), ms) of the click on Run, the first message, the first agent message and the summary.
_WATCH = """
window._marks = {};
const marks = window._marks, messages = document.getElementById("messages");
document.getElementById("run").addEventListener("click", () => { marks.click = performance.now(); }, true);
new MutationObserver(() => {
  const n = messages.querySelectorAll("article").length, now = performance.now();
  if (n >= 1 && !marks.first) marks.first = now;
  if (n >= 2 && !marks.agent) marks.agent = now;
  if (!document.getElementById("summary").hidden && !marks.end) marks.end = now;
}).observe(document.querySelector("main"), {childList: true, subtree: true, attributes: true});
"""


def _seconds(session: dict[str, str]) -> float:
    from datetime import datetime

    started, ended = (datetime.fromisoformat(session[key]) for key in ("started_at", "ended_at"))
    return (ended - started).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="rounds, each: one CLI run and one UI run")
    args = parser.parse_args()

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
    from ui_browser import chrome

    home = tempfile.mkdtemp(prefix="autoqwen-bench-ui-")
    env = {**os.environ, "AUTOQWEN_HOME": home}
    serve_port, ui_port = free_port(), free_port()
    model_url, ui_url = f"http://127.0.0.1:{serve_port}/v1", f"http://127.0.0.1:{ui_port}"
    autoqwen = [sys.executable, "-m", "autoqwen"]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env}
    server = subprocess.Popen([*autoqwen, "serve", "--model", "bundled", "--port", str(serve_port)], **quiet)  # type: ignore[call-overload]
    ui = subprocess.Popen([*autoqwen, "ui", "--base-url", model_url, "--port", str(ui_port)], **quiet)  # type: ignore[call-overload]
    os.environ["AUTOQWEN_HOME"] = home  # the CLI runs write to the same store
    samples: dict[str, list[dict[str, float]]] = {"cli": [], "ui": []}
    try:
        wait_for(f"http://127.0.0.1:{serve_port}/health", server)
        wait_for(f"{ui_url}/workflows", ui)
        with chrome() as driver:
            cli_run(model_url, ui_url)  # warm-up: the server's caches, the OS's file cache
            ui_run(driver, ui_url)
            for i in range(args.runs):
                for face in ("cli", "ui")[:: 1 if i % 2 == 0 else -1]:
                    sample = cli_run(model_url, ui_url) if face == "cli" else ui_run(driver, ui_url)
                    samples[face].append(sample)
    finally:
        for proc in (ui, server):
            proc.terminate()
            proc.wait(30)

    def cell(face: str, key: str, scale: float = 1.0, digits: int = 2) -> str:
        values = [s[key] * scale for s in samples[face]]
        return f"{statistics.median(values):.{digits}f} [{min(values):.{digits}f}-{max(values):.{digits}f}]"

    def median(face: str, key: str) -> float:
        return statistics.median(s[key] for s in samples[face])

    print(f"{WORKFLOW}, max turns {TURNS}, seed {SEED}, bundled model, {args.runs} rounds (median [min-max])")
    print(f"{'face':<5} {'wall s':>18} {'run s':>18} {'tokens':>14} {'first msg ms':>16} {'first agent msg s':>18}")
    print(f"{'cli':<5} {cell('cli', 'wall'):>18} {cell('cli', 'run'):>18} {cell('cli', 'tokens', digits=0):>14}")
    print(
        f"{'ui':<5} {cell('ui', 'wall'):>18} {cell('ui', 'run'):>18} {cell('ui', 'tokens', digits=0):>14}"
        f" {cell('ui', 'first', 1000, 0):>16} {cell('ui', 'agent'):>18}"
    )
    ratios = {key: median("ui", key) / median("cli", key) for key in ("wall", "run", "tokens")}
    print(
        f"UI / CLI (medians): wall {ratios['wall']:.3f}x, run {ratios['run']:.3f}x, tokens {ratios['tokens']:.3f}x"
        " (target: the UI adds under 5 %)"
    )


if __name__ == "__main__":
    main()
