"""The UI's Sessions and Gallery pages and their API without a browser: filters, delete, export, import, files.

Sessions are made directly in the store (no model needed). Uploads and file names come from someone else: the
tests send traversal names, symlinks, FIFOs, HTML and oversized bodies, and check that nothing leaks or half-lands.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from autoqwen.ui import GuardConfig, create_ui_app, session_api
from autoqwen.ui.files import FileRefused, open_inside
from autoqwen.workflows.gallery import export_sessions
from autoqwen.workflows.live_runs import LiveRuns, RunTarget
from autoqwen.workflows.records import SessionStatus
from autoqwen.workflows.store import SessionStore

ORIGIN = "http://127.0.0.1"
WRITE = {"Origin": ORIGIN, "Sec-Fetch-Site": "same-origin"}
HOSTILE = "<script>alert(1)</script>"
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32


@pytest.fixture
def runs() -> Iterator[LiveRuns]:
    live = LiveRuns(RunTarget("http://127.0.0.1:9/v1", "stub", "k"), SessionStore())
    try:
        yield live
    finally:
        live.close()
        live.store.close()


@pytest.fixture
def http(runs: LiveRuns) -> Iterator[TestClient]:
    with TestClient(create_ui_app(runs, GuardConfig(), model_label="stub"), base_url=ORIGIN) as client:
        yield client


def make_session(
    store: SessionStore,
    workflow: str = "pair",
    title: str | None = None,
    *,
    status: SessionStatus = "finished",
    text: str = "Hello **there**",
    files: dict[str, bytes] | None = None,
) -> str:
    session = store.create_session(workflow, title=title)
    store.append_message(session.id, "user", "Talk about dogs.")
    store.append_message(session.id, "alice", text, prompt_tokens=3, completion_tokens=4)
    for path, data in (files or {}).items():
        target = store.work_dir(session.id) / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    if status != "running":
        store.finish_session(session.id, status)
    return session.id


def upload(http: TestClient, files: list[tuple[str, bytes]], **data: str) -> Any:
    parts = [("file", (name, content, "application/octet-stream")) for name, content in files]
    return http.post("/api/v1/gallery/import", files=parts, data=data, headers=WRITE)


def record_json(session_id: str = "20250101-120000-abcd", *, files: list[Any] | None = None, **session: Any) -> bytes:
    """A session.json as an export writes it, with `session` fields and `files` entries as given."""
    body = {
        "schema_version": 1,
        "session": {
            "id": session_id,
            "title": "Shared",
            "workflow": "pair",
            "status": "finished",
            "started_at": "2025-01-01T12:00:00+00:00",
            **session,
        },
        "messages": [
            {"seq": 1, "source": "alice", "content": "hi", "created_at": "2025-01-01T12:00:01+00:00"},
        ],
        "files": files or [],
    }
    return json.dumps(body).encode()


def test_the_list_filters_by_status_and_workflow_and_searches(http: TestClient, runs: LiveRuns) -> None:
    dogs = make_session(runs.store, "pair", "Dogs talk")
    cats = make_session(runs.store, "pair", f"Cats {HOSTILE}", status="failed")
    birds = make_session(runs.store, "long", "Birds", status="stopped")
    page = http.get("/sessions").text
    assert all(f'href="/sessions/{i}"' in page for i in (dogs, cats, birds)) and "3 sessions" in page
    assert HOSTILE not in page and "Cats &lt;script&gt;" in page
    assert '<option value="long">long</option>' in page and '<option value="failed">failed</option>' in page

    def listed(query: str) -> set[str]:
        text = http.get(f"/sessions?{query}").text
        return {i for i in (dogs, cats, birds) if f'href="/sessions/{i}"' in text}

    assert listed("q=DOG") == {dogs}
    assert listed("q=lon") == {birds}  # the workflow's name matches too
    assert listed("status=failed") == {cats}
    assert listed("workflow=pair") == {dogs, cats}
    assert listed("workflow=pair&status=finished&q=talk") == {dogs}
    empty = http.get("/sessions?q=zebra").text
    assert "No session matches" in empty and 'value="zebra"' in empty
    assert '<option value="failed" selected>' in http.get("/sessions?status=failed").text
    assert f'value="{HOSTILE}"' not in http.get("/sessions", params={"q": HOSTILE}).text


def test_delete_removes_a_session_and_refuses_a_running_one(http: TestClient, runs: LiveRuns) -> None:
    done = make_session(runs.store, files={"out.txt": b"x"})
    folder = runs.store.work_dir(done).parent
    deleted = http.delete(f"/api/v1/sessions/{done}", headers=WRITE)
    assert deleted.status_code == 200 and deleted.json() == {"id": done, "object": "session.deleted", "deleted": True}
    assert runs.store.list_sessions() == [] and not folder.exists()
    again = http.delete(f"/api/v1/sessions/{done}", headers=WRITE)
    assert again.status_code == 404 and again.json()["error"]["code"] == "session_not_found"
    assert http.delete("/api/v1/sessions/..%2F..%2Fsessions.db", headers=WRITE).status_code == 404

    running = make_session(runs.store, status="running")  # written by this (live) process
    refused = http.delete(f"/api/v1/sessions/{running}", headers=WRITE)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "session_running"
    assert "is still running" in refused.json()["error"]["message"]
    cross = http.delete(f"/api/v1/sessions/{running}", headers={"Origin": "http://evil.example"})
    assert cross.status_code == 403 and runs.store.get_session(running).status == "running"


def test_export_writes_the_gallery_and_lists_it(
    http: TestClient, runs: LiveRuns, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = make_session(runs.store, title="First")
    second = make_session(runs.store, title="Second", files={"chart.png": PNG})
    gallery = runs.store.home / "gallery"
    assert http.get("/api/v1/gallery").json() == {"gallery": str(gallery), "data": []}
    exported = http.post("/api/v1/gallery/export", json={"session_ids": [first, second]}, headers=WRITE)
    assert exported.status_code == 200, exported.text
    assert {entry["id"] for entry in exported.json()["data"]} == {first, second}
    assert (gallery / second / "files" / "chart.png").read_bytes() == PNG and (gallery / "index.html").is_file()
    listed = http.get("/api/v1/gallery").json()["data"]
    assert [entry["id"] for entry in listed] == [second, first]
    assert listed[0]["href"] == f"{second}/index.html" and listed[0]["tokens"] == 7 and listed[0]["turns"] == 1

    unknown = http.post("/api/v1/gallery/export", json={"session_ids": [first, "nope"]}, headers=WRITE)
    assert unknown.status_code == 404 and "'nope'" in unknown.json()["error"]["message"]
    assert http.post("/api/v1/gallery/export", json={"session_ids": []}, headers=WRITE).status_code == 400

    monkeypatch.setenv("AUTOQWEN_GALLERY", str(tmp_path / "elsewhere"))
    one = http.post(f"/api/v1/sessions/{first}/export", headers=WRITE)
    assert one.status_code == 200 and one.json()["gallery"] == str(tmp_path / "elsewhere")
    assert (tmp_path / "elsewhere" / first / "session.json").is_file()
    assert http.post("/api/v1/sessions/nope/export", headers=WRITE).status_code == 404


def test_the_gallery_page_and_its_static_export(http: TestClient, runs: LiveRuns) -> None:
    files = {"chart.png": PNG, "page.html": b"<script>alert(1)</script>", "pic.svg": b"<svg onload=alert(1)/>"}
    sid = make_session(runs.store, title=f"Shown {HOSTILE}", files=files)
    assert "No sessions exported yet" in http.get("/gallery").text
    assert http.post(f"/api/v1/sessions/{sid}/export", headers=WRITE).status_code == 200
    page = http.get("/gallery").text
    assert f'href="/gallery/static/{sid}/index.html"' in page and 'href="/gallery/static/index.html"' in page
    assert HOSTILE not in page and "Shown &lt;script&gt;" in page and f'href="/sessions/{sid}"' in page
    assert 'id="import-form"' in page and 'type="file"' in page

    index = http.get("/gallery/static/index.html")
    assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
    csp = index.headers["content-security-policy"]
    assert "script-src 'none'" in csp and "default-src 'none'" in csp and "sandbox" in csp
    assert "content-disposition" not in index.headers and index.headers["x-content-type-options"] == "nosniff"
    own = http.get(f"/gallery/static/{sid}/index.html")
    assert (
        own.status_code == 200
        and HOSTILE not in own.text
        and "script-src 'none'" in own.headers["content-security-policy"]
    )
    assert http.get(f"/gallery/static/{sid}/session.json").headers["content-type"] == "application/json"
    assert http.get("/gallery/static/", follow_redirects=False).headers["location"] == "/gallery/static/index.html"
    image = http.get(f"/gallery/static/{sid}/files/chart.png")
    assert image.headers["content-type"] == "image/png" and "content-disposition" not in image.headers
    for name in ("page.html", "pic.svg"):
        served = http.get(f"/gallery/static/{sid}/files/{name}")
        assert served.status_code == 200 and served.headers["content-disposition"].startswith("attachment"), name
    for hidden in (
        ".lock",
        "..%2Fsessions.db",
        "%2e%2e/sessions.db",
        f"{sid}/files/%2e%2e/%2e%2e/%2e%2e/sessions.db",
        "nothing.html",
    ):
        assert http.get(f"/gallery/static/{hidden}").status_code == 404, hidden


def test_import_takes_a_session_folder_or_its_session_json(http: TestClient, runs: LiveRuns, tmp_path: Path) -> None:
    sid = make_session(runs.store, title="Round trip", files={"chart.png": PNG, "sub/notes.txt": b"notes"})
    folder = export_sessions(runs.store, [sid], tmp_path / "out")[0]
    runs.store.delete_session(sid)
    picked = [
        (f"{sid}/{path.relative_to(folder).as_posix()}", path.read_bytes())
        for path in folder.rglob("*")
        if path.is_file()
    ]
    imported = upload(http, picked)
    assert imported.status_code == 200, imported.text
    assert imported.json()["id"] == sid and imported.json()["imported_from"] is not None
    assert (runs.store.work_dir(sid) / "sub" / "notes.txt").read_bytes() == b"notes"
    assert [m.content for m in runs.store.get_messages(sid)][1] == "Hello **there**"

    again = upload(http, picked)
    assert again.status_code == 409 and again.json()["error"]["code"] == "session_exists"
    assert upload(http, picked, replace="true").status_code == 200

    # Picked side by side (no folder): session.json and the files it lists at the top of files/.
    runs.store.delete_session(sid)
    flat = [("session.json", (folder / "session.json").read_bytes()), ("chart.png", PNG), ("files/sub/notes.txt", b"n")]
    assert upload(http, flat).status_code == 200
    assert (runs.store.work_dir(sid) / "chart.png").read_bytes() == PNG


@pytest.mark.parametrize(
    ("files", "says"),
    [
        ([], "form field `file`"),
        ([("notes.txt", b"x")], "no session.json"),
        ([("session.json", b"{nope")], "upload/session.json is not valid JSON"),
        ([("session.json", b'{"schema_version": 99}')], "schema_version 99"),
        ([("session.json", b'{"schema_version": 1, "session": {}}')], "not a valid session record"),
        ([("session.json", record_json(files=[{"path": "a.png", "size": 1}]))], "lists files/a.png but it is missing"),
        ([("a/session.json", record_json()), ("b/session.json", record_json())], "import one at a time"),
        ([("session.json", record_json()), ("session.json", record_json())], "twice"),
    ],
)
def test_a_bad_import_is_a_clear_400_and_imports_nothing(
    http: TestClient, runs: LiveRuns, files: list[tuple[str, bytes]], says: str
) -> None:
    refused = upload(http, files) if files else http.post("/api/v1/gallery/import", data={"x": "1"}, headers=WRITE)
    assert refused.status_code == 400, refused.text
    assert says in refused.json()["error"]["message"] and refused.json()["error"]["param"] == "file"
    assert runs.store.list_sessions() == []


def test_hostile_imports_are_refused_or_escaped(http: TestClient, runs: LiveRuns) -> None:
    for name in ("../session.json", "/etc/session.json", "a\\session.json", "x/../../session.json", "a//session.json"):
        refused = upload(http, [(name, record_json())])
        assert refused.status_code == 400 and "unsafe file name" in refused.json()["error"]["message"], name
    for path in ("../../secret", "/etc/passwd", "a\\..\\b"):
        listed = record_json(files=[{"path": path, "size": 1}])
        refused = upload(http, [("session.json", listed), ("files/x", b"x")])
        assert refused.status_code == 400 and "unsafe file path" in refused.json()["error"]["message"], path
    bad_id = upload(http, [("session.json", record_json("../up"))])
    assert bad_id.status_code == 400 and "session id" in bad_id.json()["error"]["message"]
    assert runs.store.list_sessions() == []
    assert http.post("/api/v1/gallery/import", json={"file": "x"}, headers=WRITE).status_code == 400

    html = record_json(title=HOSTILE, workflow='<img src=x onerror="alert(1)">')
    assert upload(http, [("session.json", html)]).status_code == 200
    page = http.get("/sessions/20250101-120000-abcd").text
    listing = http.get("/sessions").text
    for text in (page, listing):
        assert HOSTILE not in text and "<img src=x" not in text and "&lt;script&gt;" in text


def test_an_oversized_import_is_refused_before_it_is_read(
    http: TestClient, runs: LiveRuns, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(session_api, "MAX_IMPORT_BYTES", 100_000)
    big = upload(http, [("session.json", record_json()), ("files/big.bin", b"x" * 200_000)])
    assert big.status_code == 413 and big.json()["error"]["code"] == "upload_too_large"
    monkeypatch.setattr(session_api, "MAX_RECORD_BYTES", 100)
    record = upload(http, [("session.json", record_json())])
    assert record.status_code == 413 and "session.json is too large" in record.json()["error"]["message"]
    # Within the body cap, but a listed file pushes the staged total over it.
    monkeypatch.setattr(session_api, "MAX_RECORD_BYTES", 100_000)
    monkeypatch.setattr(session_api, "_FORM_SLACK", 300_000)
    listed = record_json(files=[{"path": "big.bin", "size": 200_000}])
    assert upload(http, [("session.json", listed), ("files/big.bin", b"x" * 200_000)]).status_code == 413
    assert runs.store.list_sessions() == []


def test_the_session_page_shows_its_transcript_and_files(http: TestClient, runs: LiveRuns, tmp_path: Path) -> None:
    files = {"chart.png": PNG, "sub/notes.txt": b"notes", "page.html": b"<b>x</b>", "pic.svg": b"<svg/>"}
    sid = make_session(runs.store, text=f"**bold** {HOSTILE}", files=files)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    work = runs.store.work_dir(sid)
    (work / "link.txt").symlink_to(outside / "secret.txt")
    (work / "linked").symlink_to(outside, target_is_directory=True)
    os.mkfifo(work / "pipe")
    page = http.get(f"/sessions/{sid}").text
    assert '<div class="text md">**bold** &lt;script&gt;' in page and HOSTILE not in page
    for script in ("/static/vendor/purify.min.js", "/static/vendor/marked.min.js", "/static/markdown.js"):
        assert f'<script src="{script}"></script>' in page
    assert (
        f'<img src="/sessions/{sid}/files/chart.png"' in page and f'href="/sessions/{sid}/files/sub/notes.txt"' in page
    )
    assert "5 B" in page and '<img src="/sessions/{sid}/files/pic.svg"' not in page
    assert "link.txt" not in page and "secret" not in page and 'id="resume"' in page

    image = http.get(f"/sessions/{sid}/files/chart.png")
    assert image.status_code == 200 and image.content == PNG and image.headers["content-type"] == "image/png"
    assert "content-disposition" not in image.headers and image.headers["x-content-type-options"] == "nosniff"
    for name, kind in (("sub/notes.txt", "text/plain"), ("page.html", "text/html"), ("pic.svg", "image/svg+xml")):
        served = http.get(f"/sessions/{sid}/files/{name}")
        assert served.status_code == 200 and served.headers["content-type"].startswith(kind), name
        assert served.headers["content-disposition"].startswith("attachment"), name
        assert (
            served.headers["x-content-type-options"] == "nosniff"
            and "sandbox" in served.headers["content-security-policy"]
        )
    for refused in ("link.txt", "linked/secret.txt", "pipe", "sub", "..%2F..%2Fsessions.db", "%2e%2e/files", "nope"):
        assert http.get(f"/sessions/{sid}/files/{refused}").status_code == 404, refused
    assert http.get("/sessions/..%2Fx/files/a.png").status_code == 404


def test_open_inside_follows_no_link_and_no_dot_dot(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.txt").write_text("a")
    (root / ".hidden").write_text("h")
    (tmp_path / "secret").write_text("s")
    (root / "up").symlink_to(tmp_path, target_is_directory=True)
    (root / "sub" / "link").symlink_to(root / "sub" / "a.txt")
    opened = open_inside(root, "sub/a.txt")
    assert opened.size == 1 and opened.name == "a.txt" and opened.file.read() == b"a"
    opened.file.close()
    open_inside(root, ".hidden").file.close()
    for bad in ("../secret", "up/secret", "sub/link", "sub", "sub/../sub/a.txt", "/etc/passwd", "sub//a.txt", ""):
        with pytest.raises(FileRefused):
            open_inside(root, bad)
    with pytest.raises(FileRefused):
        open_inside(root, ".hidden", hidden=False)
    with pytest.raises(FileRefused):
        open_inside(tmp_path / "missing", "a.txt")
