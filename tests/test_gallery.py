"""Gallery export and import: folder layout, identity through import, escaping, a shared index, conflicts."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from session_samples import HOSTILE, PNG, make_session

from autoqwen.workflows import (
    GalleryError,
    SessionExists,
    SessionNotFound,
    SessionStore,
    export_sessions,
    import_session,
)
from autoqwen.workflows.gallery import read_index


@pytest.fixture
def store() -> Iterator[SessionStore]:
    with SessionStore() as store:
        yield store


def test_export_writes_a_static_folder(store: SessionStore, tmp_path: Path) -> None:
    session = make_session(store)
    gallery = tmp_path / "gallery"
    [folder] = export_sessions(store, [session.id], gallery)
    assert folder == gallery / session.id
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) == [
        "files",
        "files/chart.png",
        "files/notes",
        "files/notes/report draft.txt",
        "index.html",
        "session.json",
        "transcript.md",
    ]
    assert (folder / "files" / "chart.png").read_bytes() == PNG
    record = json.loads((folder / "session.json").read_text())
    assert record["schema_version"] == 1 and record["session"]["id"] == session.id
    assert len(record["messages"]) == 6 and record["files"][0] == {"path": "chart.png", "size": len(PNG)}

    page = (folder / "index.html").read_text()
    assert "http://" not in page and "https://" not in page and "<link" not in page  # nothing from the network
    assert '<img src="files/chart.png"' in page and 'href="files/notes/report%20draft.txt"' in page
    assert 'class="msg msg-tool_call"' in page and 'class="msg msg-tool_result"' in page
    assert "paper_search" in page and "&#34;max_results&#34;: 2" in page  # tool arguments, indented and escaped
    assert '<meta name="viewport"' in page and "@media (max-width" in page

    transcript = (folder / "transcript.md").read_text()
    assert transcript.startswith("# Research on agents\n")
    assert "### 2. planner · tool call" in transcript and "Call `paper_search`:" in transcript
    assert "![chart.png](files/chart.png)" in transcript


def test_hostile_content_is_escaped(store: SessionStore, tmp_path: Path) -> None:
    session = make_session(store, title=f"Title {HOSTILE}")
    store.append_message(
        session.id, f"agent{HOSTILE}", [{"id": "x", "name": "f", "arguments": HOSTILE}], type="tool_call"
    )
    export_sessions(store, [session.id], tmp_path)
    for page in (tmp_path / "index.html", tmp_path / session.id / "index.html"):
        html = page.read_text()
        assert "<script" not in html, page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert ".msg > header" in html  # the inline CSS itself is not escaped


def test_export_import_export_gives_the_same_session_json(store: SessionStore, tmp_path: Path) -> None:
    session = make_session(store)
    [first] = export_sessions(store, [session.id], tmp_path / "one")
    store.delete_session(session.id)

    imported = import_session(store, first)
    assert imported == session
    assert (store.work_dir(session.id) / "notes" / "report draft.txt").read_text() == "draft\n"
    [second] = export_sessions(store, [session.id], tmp_path / "two")
    assert (second / "session.json").read_bytes() == (first / "session.json").read_bytes()
    assert (second / "index.html").read_bytes() == (first / "index.html").read_bytes()


def test_import_into_another_store_and_conflicts(store: SessionStore, tmp_path: Path) -> None:
    session = make_session(store)
    [folder] = export_sessions(store, [session.id], tmp_path / "g")
    with pytest.raises(SessionExists, match="--replace"):
        import_session(store, folder)
    (store.work_dir(session.id) / "stale.txt").write_text("gone after replace")
    assert import_session(store, folder, replace=True) == session
    assert [f.path for f in store.session_files(session.id)] == ["chart.png", "notes/report draft.txt"]
    with SessionStore(tmp_path / "other-machine") as other:
        assert import_session(other, folder).id == session.id
        assert other.get_record(session.id) == store.get_record(session.id)


def test_two_exports_into_one_folder_keep_both(store: SessionStore, tmp_path: Path) -> None:
    first, second = make_session(store, "first"), make_session(store, "second")
    export_sessions(store, [first.id], tmp_path)
    export_sessions(store, [second.id], tmp_path)
    index = read_index(tmp_path)
    assert [e.id for e in index.sessions] == [second.id, first.id]  # newest first
    entry = index.sessions[1]
    assert (entry.title, entry.workflow, entry.tags, entry.href) == (
        "first",
        "research",
        ("demo", "tools"),
        f"{first.id}/index.html",
    )
    assert entry.summary == f"A report; {HOSTILE}" and entry.tokens == 718
    raw = json.loads((tmp_path / "index.json").read_text())
    assert raw["schema_version"] == 1 and {"title", "workflow", "started_at", "tags", "summary"} <= set(
        raw["sessions"][0]
    )
    html = (tmp_path / "index.html").read_text()
    assert html.index(">second<") < html.index(">first<") and "2 sessions" in html


def test_concurrent_exports_never_clobber_each_other(store: SessionStore, tmp_path: Path) -> None:
    ids = [make_session(store, f"s{i}").id for i in range(6)]
    threads = [threading.Thread(target=export_sessions, args=(SessionStore(), [sid], tmp_path)) for sid in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(e.id for e in read_index(tmp_path).sessions) == sorted(ids)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith((".tmp", ".old"))]


def test_re_export_updates_in_place(store: SessionStore, tmp_path: Path) -> None:
    session = make_session(store, finish=False)
    export_sessions(store, [session.id], tmp_path)
    assert read_index(tmp_path).sessions[0].status == "running"
    (tmp_path / session.id / "files" / "leftover.txt").write_text("from an older export")
    store.append_message(session.id, "writer", "One more thing.")
    store.finish_session(session.id, "finished", summary="updated")
    export_sessions(store, [session.id], tmp_path)
    [entry] = read_index(tmp_path).sessions
    assert (entry.status, entry.summary, entry.message_count) == ("finished", "updated", 7)
    assert "One more thing." in (tmp_path / session.id / "index.html").read_text()
    assert not (tmp_path / session.id / "files" / "leftover.txt").exists()


def test_index_drops_removed_folders_and_finds_unlisted_ones(store: SessionStore, tmp_path: Path) -> None:
    a, b, c = (make_session(store, name).id for name in "abc")
    export_sessions(store, [a, b], tmp_path)
    shutil.rmtree(tmp_path / a)
    (tmp_path / "index.json").write_text("not json")  # damaged: rebuilt from the folders
    export_sessions(store, [c], tmp_path)
    assert [e.id for e in read_index(tmp_path).sessions] == [c, b]


def test_unknown_id_writes_nothing(store: SessionStore, tmp_path: Path) -> None:
    session = make_session(store)
    with pytest.raises(SessionNotFound):
        export_sessions(store, [session.id, "nope"], tmp_path / "g")
    assert not (tmp_path / "g").exists()


def test_import_rejects_what_is_not_an_exported_session(store: SessionStore, tmp_path: Path) -> None:
    with pytest.raises(GalleryError, match="not an exported session"):
        import_session(store, tmp_path)
    session = make_session(store)
    [folder] = export_sessions(store, [session.id], tmp_path / "g")
    record = json.loads((folder / "session.json").read_text())

    def broken(change: dict[str, object], match: str) -> None:
        (folder / "session.json").write_text(json.dumps({**record, **change}))
        with pytest.raises(GalleryError, match=match):
            import_session(store, folder, replace=True)

    broken({"schema_version": 99}, "schema_version 99")
    broken({"messages": [{"seq": "x"}]}, r"messages\.0")
    broken({"files": [{"path": "../../etc/passwd", "size": 1}]}, "unsafe file path")
    broken({"files": [{"path": "missing.txt", "size": 1}]}, "missing")
    broken({"session": {**record["session"], "id": "../x"}}, "invalid session id")
