"""A sample session for the store, gallery and CLI tests: every message type, hostile text, an image, a nested file."""

from __future__ import annotations

import base64

from autoqwen.workflows import Session, SessionStore

HOSTILE = "<script>alert(1)</script>"
# A 1x1 PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def make_session(store: SessionStore, title: str = "Research on agents", *, finish: bool = True) -> Session:
    """A finished two-agent session with a tool call, its result, a handoff, and two files."""
    session = store.create_session(
        "research",
        title=title,
        spec={"name": "research", "team": {"type": "round_robin"}, "agents": ["planner", "writer"]},
        inputs={"topic": "small language models", "depth": 2},
        model="SmolLM2-135M-Instruct",
        tags=["demo", "tools"],
    )
    sid = session.id
    store.append_message(sid, "user", "Write a short report on small language models.")
    store.append_message(
        sid,
        "planner",
        [{"id": "call_1", "name": "paper_search", "arguments": '{"query": "small language models", "max_results": 2}'}],
        type="tool_call",
        prompt_tokens=120,
        completion_tokens=30,
    )
    store.append_message(
        sid,
        "planner",
        [
            {
                "call_id": "call_1",
                "name": "paper_search",
                "content": "1. TinyLlama (2024)\n2. SmolLM2",
                "is_error": False,
            }
        ],
        type="tool_result",
    )
    store.append_message(
        sid, "planner", "Hand over to the writer.", type="handoff", prompt_tokens=200, completion_tokens=8
    )
    store.append_message(
        sid,
        "writer",
        f"Report: models under 1B params work well. Beware of {HOSTILE} in inputs.",
        prompt_tokens=300,
        completion_tokens=60,
    )
    store.append_message(sid, "system", {"event": "termination", "reason": "TERMINATE"}, type="other")
    folder = store.work_dir(sid)
    (folder / "chart.png").write_bytes(PNG)
    (folder / "notes").mkdir()
    (folder / "notes" / "report draft.txt").write_text("draft\n", encoding="utf-8")
    if finish:
        return store.finish_session(sid, "finished", summary=f"A report; {HOSTILE}", stop_reason="Text 'TERMINATE'")
    return store.get_session(sid)
