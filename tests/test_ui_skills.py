"""The UI's Skills pages and skills API without a browser: list, schema, add a file, remove one, try a skill.

Skill files are written into the test's own data dir; nothing here reaches beyond 127.0.0.1 (the skills tried run
offline: a user skill, or `make_chart`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from autoqwen.paths import user_skills_dir
from autoqwen.skills import SkillLoadError, add_skill_file
from autoqwen.ui import GuardConfig, create_ui_app
from autoqwen.ui.skills_api import MAX_UPLOAD_BYTES
from autoqwen.workflows.live_runs import LiveRuns, RunTarget
from autoqwen.workflows.store import SessionStore

ORIGIN = "http://127.0.0.1"
HOSTILE = "<script>alert(1)</script>"
SHOUT = f'''
from typing import Annotated
from autoqwen.skills import skill


@skill
def shout(text: Annotated[str, "What to shout"], times: Annotated[int, "How often"] = 1) -> str:
    """Shout the text back. {HOSTILE}"""
    return " ".join([text.upper()] * times)
'''
TOOLS = '''
import time
from autoqwen.skills import skill


@skill
def nap(seconds: float) -> str:
    """Sleep, then say so."""
    time.sleep(seconds)
    return "awake"


@skill
def oops() -> str:
    """Always fails."""
    raise ValueError("no <b>luck</b>")


@skill(secrets=["AUTOQWEN_TEST_SECRET"])
def secretive() -> str:
    """Needs a secret."""
    return "ok"
'''
BROKEN = "def broken(:\n"


@pytest.fixture
def http() -> Iterator[TestClient]:
    runs = LiveRuns(RunTarget("http://127.0.0.1:9/v1"), SessionStore())  # nothing here runs a workflow
    try:
        with TestClient(create_ui_app(runs, GuardConfig(), model_label="stub"), base_url=ORIGIN) as client:
            yield client
    finally:
        runs.close()
        runs.store.close()


def install(name: str, text: str) -> Path:
    folder = user_skills_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def upload(http: TestClient, name: str, text: str | bytes, **fields: str) -> Any:
    data = text.encode() if isinstance(text, str) else text
    return http.post(
        "/api/v1/skills", files={"file": (name, data, "text/x-python")}, data=fields, headers={"Origin": ORIGIN}
    )


def run(http: TestClient, name: str, arguments: dict[str, Any], **extra: Any) -> Any:
    body = {"arguments": arguments, **extra}
    return http.post(f"/api/v1/skills/{name}/run", json=body, headers={"Origin": ORIGIN})


def test_the_list_shows_builtins_user_skills_and_problems(http: TestClient) -> None:
    install("shout.py", SHOUT)
    install("broken.py", BROKEN)
    listed = http.get("/api/v1/skills").json()
    by_name = {item["name"]: item for item in listed["data"]}
    assert {"web_fetch", "paper_search", "make_chart", "generate_image", "shout"} <= set(by_name)
    assert by_name["web_fetch"]["source"] == "builtin" and not by_name["web_fetch"]["removable"]
    assert by_name["shout"]["source"] == "user shout.py" and by_name["shout"]["removable"]
    assert by_name["shout"]["parameters"]["required"] == ["text"]
    (problem,) = listed["problems"]
    assert problem["file"] == "broken.py" and "SyntaxError" in problem["message"]
    page = http.get("/skills").text
    assert "user shout.py" in page and "builtin" in page and 'href="/skills/make_chart"' in page
    assert "broken.py" in page and "SyntaxError" in page and 'data-remove="broken.py"' in page
    assert 'data-remove="shout"' in page and 'data-remove="web_fetch"' not in page
    assert HOSTILE not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "/static/skills.js" in page and "/static/skills.css" in page and 'id="add-form"' in page


def test_a_skill_page_shows_its_parameters_schema_and_a_form(http: TestClient) -> None:
    install("shout.py", SHOUT)
    one = http.get("/api/v1/skills/make_chart").json()
    assert one["source"] == "builtin" and one["parameters"]["required"] == ["y"]
    page = http.get("/skills/make_chart").text
    for shown in ("one of line, bar, scatter, pie", "list of number or object of list of number", "Chart title"):
        assert shown in page, shown
    assert "JSON schema" in page and "&#34;additionalProperties&#34;: false" in page
    assert 'id="arg-y" data-arg="y" data-widget="json"' in page and 'id="arg-kind" data-arg="kind"' in page
    assert 'data-skill="make_chart"' in page and 'data-remove="make_chart"' not in page
    shout = http.get("/skills/shout").text
    assert HOSTILE not in shout and "&lt;script&gt;" in shout and 'data-remove="shout"' in shout
    assert 'data-widget="number"' in shout and "integer" in shout
    missing = http.get("/api/v1/skills/nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "skill_not_found"
    tag = "<img src=x onerror=alert(1)>"
    page = http.get(f"/skills/{tag}")
    assert page.status_code == 404 and tag not in page.text and "no skill named" in page.text


def test_upload_checks_a_file_as_skills_add_does(http: TestClient, tmp_path: Path) -> None:
    added = upload(http, "shout.py", SHOUT)
    assert added.status_code == 201, added.text
    assert added.json()["skills"] == ["shout"] and not added.json()["replaced"]
    assert (user_skills_dir() / "shout.py").read_text() == SHOUT
    assert "shout" in {item["name"] for item in http.get("/api/v1/skills").json()["data"]}
    again = upload(http, "shout.py", SHOUT)
    assert again.status_code == 409 and again.json()["error"]["code"] == "skill_exists"
    assert again.json()["error"]["param"] == "overwrite" and "overwrite" in again.json()["error"]["message"]
    replaced = upload(http, "shout.py", SHOUT.replace("Shout", "Yell"), overwrite="true")
    assert replaced.status_code == 200 and replaced.json()["replaced"]
    assert "Yell" in (user_skills_dir() / "shout.py").read_text()

    broken = upload(http, "broken.py", BROKEN)
    assert broken.status_code == 400 and broken.json()["error"]["code"] == "invalid_skill_file"
    (tmp_path / "broken.py").write_text(BROKEN)
    with pytest.raises(SkillLoadError) as cli:  # what `autoqwen skills add broken.py` says, from the same function
        add_skill_file(tmp_path / "broken.py")
    assert broken.json()["error"]["message"] == str(cli.value).replace(str(tmp_path / "broken.py"), "broken.py")
    assert "autoqwen-upload-" not in broken.json()["error"]["message"]
    empty = upload(http, "empty.py", "x = 1\n")
    assert empty.status_code == 400 and "defines no skills" in empty.json()["error"]["message"]
    clash = upload(http, "mine.py", SHOUT.replace("def shout", "def web_fetch"))
    assert clash.status_code == 409 and clash.json()["error"]["code"] == "skill_clash"
    assert upload(http, "notes.txt", SHOUT).status_code == 400
    big = upload(http, "big.py", b"#" * (MAX_UPLOAD_BYTES + 1))
    assert big.status_code == 413 and big.json()["error"]["code"] == "file_too_large"
    no_file = http.post("/api/v1/skills", data={"overwrite": "true"}, headers={"Origin": ORIGIN})
    assert no_file.status_code == 400
    foreign = http.post(
        "/api/v1/skills", files={"file": ("evil.py", SHOUT.encode())}, headers={"Origin": "http://evil.example"}
    )
    assert foreign.status_code == 403 and foreign.json()["error"]["code"] == "cross_site"
    assert sorted(p.name for p in user_skills_dir().iterdir()) == ["shout.py"]


def test_remove_deletes_user_files_only(http: TestClient) -> None:
    install("shout.py", SHOUT)
    install("broken.py", BROKEN)
    headers = {"Origin": ORIGIN}
    builtin = http.delete("/api/v1/skills/web_fetch", headers=headers)
    assert builtin.status_code == 403 and builtin.json()["error"]["code"] == "skill_not_removable"
    assert "builtin" in builtin.json()["error"]["message"]
    unknown = http.delete("/api/v1/skills/nope", headers=headers)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "skill_not_found"
    assert http.delete("/api/v1/skills/..%2Fsessions.db", headers=headers).status_code == 404
    removed = http.delete("/api/v1/skills/shout", headers=headers)
    assert removed.status_code == 200 and removed.json() == {
        "file": "shout.py",
        "path": str(user_skills_dir() / "shout.py"),
        "skills": ["shout"],
        "replaced": False,
    }
    assert http.delete("/api/v1/skills/broken.py", headers=headers).status_code == 200
    assert list(user_skills_dir().iterdir()) == []


def test_a_try_returns_the_result_or_a_clear_error(http: TestClient) -> None:
    install("shout.py", SHOUT)
    install("tools.py", TOOLS)
    done = run(http, "shout", {"text": "hi", "times": 2})
    assert done.status_code == 200 and done.json()["result"] == "HI HI" and done.json()["files"] == []
    for arguments, param in (
        ({"text": "hi", "times": "x"}, "times"),
        ({"text": "a", "colour": 1}, "colour"),
        ({}, "text"),
    ):
        bad = run(http, "shout", arguments)
        error = bad.json()["error"]
        assert (
            bad.status_code == 400 and error["param"] == f"arguments.{param}" and error["code"] == "invalid_arguments"
        )
        assert param in error["message"]
    failed = run(http, "oops", {})
    assert failed.status_code == 500 and failed.json()["error"]["code"] == "skill_failed"
    assert "ValueError: no <b>luck</b>" in failed.json()["error"]["message"]  # JSON: the page shows it as text
    slow = run(http, "nap", {"seconds": 3}, timeout_s=0.3)
    assert slow.status_code == 504 and slow.json()["error"]["code"] == "skill_timeout"
    assert "0.3 s" in slow.json()["error"]["message"]
    assert run(http, "nap", {"seconds": 0}).json()["result"] == "awake"
    secret = run(http, "secretive", {})
    assert secret.status_code == 400 and secret.json()["error"]["code"] == "missing_secret"
    listed = {item["name"]: item for item in http.get("/api/v1/skills").json()["data"]}
    assert "AUTOQWEN_TEST_SECRET" in listed["secretive"]["problem"]
    assert run(http, "nope", {}).status_code == 404
    foreign = http.post(
        "/api/v1/skills/shout/run", json={"arguments": {"text": "x"}}, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert foreign.status_code == 403


def test_a_chart_try_shows_its_image(http: TestClient) -> None:
    made = run(http, "make_chart", {"y": [1, 2, 3], "title": HOSTILE})
    assert made.status_code == 200, made.text
    (picture,) = made.json()["files"]
    assert picture["image"] and picture["name"] == "chart.png"
    assert picture["url"].startswith("/api/v1/skills/tries/")
    image = http.get(picture["url"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.content.startswith(b"\x89PNG") and image.headers["x-content-type-options"] == "nosniff"
    try_id = picture["url"].split("/")[5]
    for bad in (
        f"/api/v1/skills/tries/{try_id}/files/..%2F..%2Fsessions.db",
        "/api/v1/skills/tries/zz/files/chart.png",
    ):
        assert http.get(bad).status_code == 404, bad
