"""`kill -9` a run at random points: every message it printed is stored, and its session reads `interrupted`."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from autoqwen.local_llm import EmbeddedServer
from autoqwen.workflows.store import SessionStore

LONG_CHAT = """\
name: long-chat
agents:
  - {name: alice, system_message: You talk., max_tokens: 12}
  - {name: bob, system_message: You answer., max_tokens: 12}
team: {type: round_robin, max_turns: 100}
termination: {text: null, max_messages: 200}
task: Talk about cats.
"""
KILLS = 10


def run_and_kill(flow: Path, base_url: str, delay: float) -> list[dict[str, object]]:
    """Start a run, wait for its first message, kill -9 it `delay` seconds later; the messages it printed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "autoqwen", "run", str(flow), "--base-url", base_url, "--json", "--seed", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    first = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            first.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert first.wait(30), "the run printed nothing in 30 s"
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(10)  # reaped: a zombie would still pass for alive for a moment
        reader.join(10)
    events = [json.loads(line) for line in lines if line.startswith("{")]
    assert all(event["event"] == "message" for event in events), "the run ended before it was killed"
    return events


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
def test_kill_9_at_random_points_loses_no_printed_message(tmp_path: Path, tiny_server: EmbeddedServer) -> None:
    flow = tmp_path / "long-chat.yaml"
    flow.write_text(LONG_CHAT)
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    known: set[str] = set()
    for attempt in range(KILLS):
        delay = rng.uniform(0.0, 1.5)
        printed = run_and_kill(flow, tiny_server.base_url, delay)
        with SessionStore() as store:  # opening the store marks dead writers' sessions
            new = [s for s in store.list_sessions() if s.id not in known]
            assert len(new) == 1, f"seed {seed}, kill {attempt}: {len(new)} new sessions"
            session = new[0]
            known.add(session.id)
            stored = {(m.seq, m.source, m.type, json.dumps(m.content)) for m in store.get_messages(session.id)}
        where = f"seed {seed}, kill {attempt} after {delay:.2f} s"
        assert session.status == "interrupted", f"{where}: the session reads {session.status}"
        assert printed, where
        for message in printed:
            key = (message["seq"], message["source"], message["type"], json.dumps(message["content"]))
            assert key in stored, f"{where}: printed message {message['seq']} is not stored"
