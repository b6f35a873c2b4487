"""Gallery export and import: folder layout, identity through import, escaping, a shared index, conflicts."""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from markdown_it import MarkdownIt
from markdown_it.token import Token
from session_samples import HOSTILE, PNG, make_session

from autoqwen.workflows import (
    GalleryError,
    Session,
    SessionExists,
    SessionNotFound,
    SessionStore,
    export_sessions,
    import_session,
)
from autoqwen.workflows.gallery import read_index


def as_run(session: Session) -> Session:
    """The session as it was where it ran: without this store's note of where it was imported from."""
    return session.model_copy(update={"imported_from": None, "imported_at": None})


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
    assert as_run(imported) == session and imported.imported_from == str(first.absolute())
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
    assert as_run(import_session(store, folder, replace=True)) == session
    assert [f.path for f in store.session_files(session.id)] == ["chart.png", "notes/report draft.txt"]
    with SessionStore(tmp_path / "other-machine") as other:
        assert import_session(other, folder).id == session.id
        theirs, ours = other.get_record(session.id), store.get_record(session.id)
        assert theirs.model_copy(update={"session": as_run(theirs.session)}) == ours.model_copy(
            update={"session": as_run(ours.session)}
        )


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


def test_index_links_come_from_validated_ids_not_from_index_json(store: SessionStore, tmp_path: Path) -> None:
    a, b = make_session(store, "a").id, make_session(store, "b").id
    export_sessions(store, [a], tmp_path)
    index = json.loads((tmp_path / "index.json").read_text())
    index["sessions"][0]["href"] = "javascript:alert(document.cookie)"
    planted = {**index["sessions"][0], "id": "x/../../evil", "href": "javascript:alert(2)"}
    (tmp_path / "index.json").write_text(json.dumps({**index, "sessions": [*index["sessions"], planted]}))
    export_sessions(store, [b], tmp_path)  # reads the planted index, merges, renders
    html = (tmp_path / "index.html").read_text()
    assert "javascript:" not in html and "evil" not in html
    assert f'href="{a}/index.html"' in html and f'href="{b}/index.html"' in html
    assert {e.id for e in read_index(tmp_path).sessions} == {a, b}


def test_import_refuses_symlinks_and_special_files(store: SessionStore, tmp_path: Path) -> None:
    private = tmp_path / "private.txt"
    private.write_text("the user's secret")
    session = make_session(store)
    [folder] = export_sessions(store, [session.id], tmp_path / "g")
    store.delete_session(session.id)
    report = folder / "files" / "notes" / "report draft.txt"

    report.unlink()
    report.symlink_to(private)  # a file link
    with pytest.raises(GalleryError, match=r"report draft\.txt is a symlink"):
        import_session(store, folder)
    report.unlink()
    report.parent.rename(tmp_path / "real-notes")
    (tmp_path / "real-notes" / "report draft.txt").symlink_to(private)
    (folder / "files" / "notes").symlink_to(tmp_path / "real-notes")  # a folder link on the way
    with pytest.raises(GalleryError, match="notes is a symlink"):
        import_session(store, folder)
    (folder / "files" / "notes").unlink()
    (folder / "files" / "notes").mkdir()
    os.mkfifo(report)  # not a regular file: reading it would block
    with pytest.raises(GalleryError, match="not a regular file"):
        import_session(store, folder)
    with pytest.raises(SessionNotFound):
        store.get_session(session.id)  # nothing half-imported
    report.unlink()
    report.write_text("draft\n")
    assert import_session(store, folder).id == session.id


def test_transcript_md_holds_no_raw_html_or_links(store: SessionStore, tmp_path: Path) -> None:
    session = store.create_session(
        "w", title=f"T {HOSTILE}\n# heading", inputs={"x": "[click](javascript:alert(1))"}, tags=[HOSTILE]
    )
    store.append_message(session.id, "user", f"{HOSTILE}\n<img src=x onerror=alert(1)>\n```\n<script>b()</script>")
    store.append_message(session.id, f"bot{HOSTILE}", "[x](javascript:alert(1)) fine *text*")
    store.finish_session(session.id, "finished", summary=HOSTILE, stop_reason=HOSTILE)
    [folder] = export_sessions(store, [session.id], tmp_path)
    transcript = (folder / "transcript.md").read_text()
    rendered = _tokens(transcript)
    assert not [t for t in rendered if t.type in ("html_inline", "html_block", "link_open", "image")], rendered
    assert [t.tag for t in rendered if t.type == "heading_open"].count("h1") == 1  # the title's, none planted
    assert HOSTILE in transcript  # still there to read, inside code blocks
    assert "[x](javascript:alert(1)) fine *text*" in transcript


def _tokens(markdown: str) -> list[Token]:
    """What a Markdown viewer (CommonMark) makes of a text: its block tokens and their inline tokens, flattened."""
    tokens = MarkdownIt("commonmark").parse(markdown)
    return tokens + [child for token in tokens for child in (token.children or [])]
