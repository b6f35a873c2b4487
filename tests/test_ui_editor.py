"""The workflow editor's API without a browser: validate, save, read, duplicate, delete, and the form view.

Validation is the loader's, so its messages are those of `autoqwen workflows validate`; here they come with their
line and field. Nothing runs a model: the runs target is a closed port.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner
from workflow_samples import PAIR

from autoqwen.cli import app as cli_app
from autoqwen.paths import user_workflows_dir
from autoqwen.ui import GuardConfig, create_ui_app
from autoqwen.ui.workflow_form import WorkflowForm, apply_form, form_of, renamed
from autoqwen.workflows.catalog import BUILTIN_DIR
from autoqwen.workflows.live_runs import LiveRuns, RunTarget
from autoqwen.workflows.loader import MAX_YAML_BYTES, load_workflow, read_yaml_text
from autoqwen.workflows.store import SessionStore

API = "/api/v1/workflows"
MINE = """\
name: mine
description: Mine.
# a comment the form keeps when nothing changes
agents:
  - name: helper
    system_message: You help.
    skills: [web_fetch]
    temperature: 0.3
task: Help.
"""
BROKEN = """\
name: mine
agents:
  - name: helper
    system_message: [not, text]
    timeout_s: 5
team: {type: round_robin, max_turns: 0}
task: Help.
"""


@pytest.fixture
def http() -> Iterator[TestClient]:
    user_workflows_dir().mkdir(parents=True)
    runs = LiveRuns(RunTarget("http://127.0.0.1:9/v1", "stub", "k"), SessionStore())
    try:
        with TestClient(create_ui_app(runs, GuardConfig(), model_label="stub"), base_url="http://127.0.0.1") as client:
            yield client
    finally:
        runs.close()
        runs.store.close()


def user_file(name: str) -> Path:
    return user_workflows_dir() / f"{name}.yaml"


def test_validate_reports_each_problem_at_its_line_as_the_cli_does(http: TestClient) -> None:
    answer = http.post(f"{API}/validate", json={"yaml": BROKEN}).json()
    assert answer["ok"] is False and answer["spec"] is None
    assert [(e["line"], e["field"]) for e in answer["errors"]] == [
        (4, "agents[0].system_message"),
        (5, "agents[0].timeout_s"),
        (6, "team.max_turns"),
    ]
    assert answer["errors"][1]["message"] == "unknown field for kind assistant (it belongs to kind code_executor)"
    user_file("mine").write_text(BROKEN)
    cli = CliRunner().invoke(cli_app, ["workflows", "validate", str(user_file("mine"))])
    assert cli.exit_code == 1 and "mine.yaml:4: agents.0.system_message: Input should be a valid string" in " ".join(
        cli.output.split()
    )
    assert answer["errors"][0]["message"] == "Input should be a valid string"

    syntax = http.post(f"{API}/validate", json={"yaml": "name: x\nagents:\n  - {name: a\ntask: t\n"}).json()
    assert (
        syntax["ok"] is False and syntax["errors"][0]["line"] == 4 and "invalid YAML" in syntax["errors"][0]["message"]
    )
    skill = http.post(f"{API}/validate", json={"yaml": MINE.replace("web_fetch", "nope")}).json()
    assert (
        skill["errors"] == [{"line": 7, "field": "agents[0].skills[0]", "message": skill["errors"][0]["message"]}]
        and "unknown skill 'nope'" in skill["errors"][0]["message"]
    )

    good = http.post(f"{API}/validate", json={"yaml": MINE}).json()
    assert good["ok"] is True and good["errors"] == [] and good["taken"] == "user"  # the file written above
    assert good["spec"] == {
        "name": "mine",
        "description": "Mine.",
        "agents": ["helper"],
        "team": "round_robin",
        "max_turns": 10,
        "skills": ["web_fetch"],
    }
    assert (
        http.post(f"{API}/validate", json={"yaml": PAIR.replace("pair", "write-review")}).json()["taken"] == "builtin"
    )
    other = http.post(f"{API}/validate", json={"yaml": MINE, "name": "other"}).json()
    assert other["ok"] is False and other["errors"][0]["line"] == 1 and other["errors"][0]["field"] == "name"


def test_save_writes_a_valid_workflow_that_the_list_and_the_loader_then_know(http: TestClient) -> None:
    saved = http.put(f"{API}/mine", json={"yaml": MINE})
    assert saved.status_code == 201 and saved.json()["created"] is True
    assert user_file("mine").read_text() == MINE and load_workflow(user_file("mine")).name == "mine"
    assert [p.name for p in user_workflows_dir().iterdir()] == ["mine.yaml"]  # no temporary file left
    assert 'href="/workflows/mine"' in http.get("/workflows").text
    assert "mine" in [w["name"] for w in http.get(f"{API}").json()["data"]]
    text = http.get(f"{API}/mine/yaml")
    assert text.text == MINE and text.headers["content-type"].startswith("text/plain")
    assert text.headers["etag"] == saved.headers["etag"]
    page = http.get("/workflows/mine/edit").text
    assert 'id="yaml"' in page and "You help." in page and "/static/editor.js" in page

    invalid = http.put(f"{API}/mine", json={"yaml": BROKEN, "overwrite": True})
    assert invalid.status_code == 400 and invalid.json()["error"]["code"] == "workflow_invalid"
    assert [e["line"] for e in invalid.json()["errors"]] == [4, 5, 6]
    assert user_file("mine").read_text() == MINE  # nothing written

    mismatch = http.put(f"{API}/yours", json={"yaml": MINE})
    assert mismatch.status_code == 400 and "the YAML says name: mine" in mismatch.json()["error"]["message"]
    assert not user_file("yours").exists()


def test_saving_never_overwrites_silently(http: TestClient) -> None:
    first = http.put(f"{API}/mine", json={"yaml": MINE})
    again = http.put(f"{API}/mine", json={"yaml": MINE.replace("Mine.", "Again.")})
    assert again.status_code == 409 and again.json()["error"]["code"] == "workflow_exists"
    assert user_file("mine").read_text() == MINE
    stale = {"If-Match": '"0123"'}
    refused = http.put(f"{API}/mine", json={"yaml": MINE.replace("Mine.", "Stale.")}, headers=stale)
    assert refused.status_code == 412 and user_file("mine").read_text() == MINE
    current = {"If-Match": first.headers["etag"]}
    replaced = http.put(f"{API}/mine", json={"yaml": MINE.replace("Mine.", "New.")}, headers=current)
    assert replaced.status_code == 200 and replaced.json()["created"] is False
    assert "New." in user_file("mine").read_text() and replaced.headers["etag"] != first.headers["etag"]
    overwrite = http.put(f"{API}/mine", json={"yaml": MINE, "overwrite": True})
    assert overwrite.status_code == 200 and user_file("mine").read_text() == MINE


def test_builtins_are_never_written_or_deleted(http: TestClient) -> None:
    before = (BUILTIN_DIR / "write-review.yaml").read_text()
    text = http.get(f"{API}/write-review/yaml").text
    assert text == before
    for overwrite in (False, True):
        refused = http.put(f"{API}/write-review", json={"yaml": text, "overwrite": overwrite})
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "builtin_workflow"
        assert "duplicate it" in refused.json()["error"]["message"]
    deleted = http.delete(f"{API}/write-review")
    assert deleted.status_code == 403 and deleted.json()["error"]["code"] == "builtin_workflow"
    assert (BUILTIN_DIR / "write-review.yaml").read_text() == before
    assert not user_file("write-review").exists()
    assert http.get("/workflows/write-review/edit").status_code == 409
    # A user file named like a builtin (put there by hand) is ignored by the catalog, and can be deleted here.
    user_file("write-review").write_text(PAIR)
    assert http.delete(f"{API}/write-review").status_code == 200 and not user_file("write-review").exists()


def test_duplicate_copies_a_builtin_with_its_name_rewritten(http: TestClient) -> None:
    copy = http.post(f"{API}/write-review/duplicate", json={"new_name": "my-review"})
    assert copy.status_code == 201 and copy.json()["name"] == "my-review"
    original = (BUILTIN_DIR / "write-review.yaml").read_text()
    assert user_file("my-review").read_text() == original.replace("name: write-review", "name: my-review", 1)
    assert load_workflow(user_file("my-review")).name == "my-review"
    taken = http.post(f"{API}/write-review/duplicate", json={"new_name": "my-review"})
    assert taken.status_code == 409 and taken.json()["error"]["param"] == "new_name"
    builtin = http.post(f"{API}/my-review/duplicate", json={"new_name": "research"})
    assert builtin.status_code == 409 and builtin.json()["error"]["code"] == "builtin_workflow"
    assert http.post(f"{API}/nope/duplicate", json={"new_name": "x"}).status_code == 404
    assert http.post(f"{API}/my-review/duplicate", json={"new_name": "../x"}).status_code == 400


def test_delete_removes_a_user_workflow(http: TestClient) -> None:
    http.put(f"{API}/mine", json={"yaml": MINE})
    assert http.delete(f"{API}/mine", headers={"If-Match": '"stale"'}).status_code == 412
    gone = http.delete(f"{API}/mine")
    assert gone.status_code == 200 and not user_file("mine").exists()
    missing = http.delete(f"{API}/mine")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "workflow_not_found"


@pytest.mark.parametrize("name", ["..", ".hidden", "Upper", "a.b", "a b", "x" * 65, "new", "-x"])
def test_unsafe_names_are_refused_everywhere(http: TestClient, name: str) -> None:
    body = {"yaml": MINE.replace("name: mine", f"name: {name}")}
    for method, url, json in (
        ("PUT", f"{API}/{name}", body),
        ("POST", f"{API}/write-review/duplicate", {"new_name": name}),
        ("DELETE", f"{API}/{name}", None),
        ("GET", f"{API}/{name}/yaml", None),
    ):
        answer = http.request(method, url, json=json)
        assert answer.status_code in (400, 404), (method, url)
        if answer.status_code == 400:
            assert answer.json()["error"]["code"] == "invalid_name"
    assert sorted(p.name for p in user_workflows_dir().parent.rglob("*.yaml")) == []
    assert http.put(f"{API}/..%2Fescape", json=body).status_code == 404  # a slash never reaches a route


def test_the_yaml_size_is_capped_like_the_loader_caps_files(http: TestClient) -> None:
    big = MINE + "#" * MAX_YAML_BYTES
    for method, url in (("POST", f"{API}/validate"), ("PUT", f"{API}/mine"), ("POST", f"{API}/parse-form")):
        answer = http.request(method, url, json={"yaml": big})
        assert answer.status_code == 413 and answer.json()["error"]["code"] == "yaml_too_large", url
    huge = b'{"yaml": "' + b"a" * (9 * MAX_YAML_BYTES) + b'"}'
    assert http.post(f"{API}/validate", content=huge).status_code == 413
    assert http.post(f"{API}/validate", content=b"{").json()["error"]["code"] == "json_invalid"
    assert http.post(f"{API}/validate", json={"text": MINE}).status_code == 400
    assert not user_file("mine").exists()


def test_the_form_round_trip_keeps_what_the_form_does_not_show(http: TestClient) -> None:
    full = (BUILTIN_DIR / "research.yaml").read_text() + "mcp: [{command: python, args: [server.py]}]\n"
    form = http.post(f"{API}/parse-form", json={"yaml": full}).json()["form"]
    assert [a["name"] for a in form["agents"]] == ["searcher", "reader", "writer"]
    assert form["team_type"] == "round_robin" and form["max_turns"] == 3 and form["termination_text"] == "TERMINATE"
    same = http.post(f"{API}/form", json={"yaml": full, "form": form}).json()
    assert same["yaml"] == full  # nothing edited: the text comes back as it was, comments included

    form["agents"][1]["system_message"] = "Read one paper.\nSay what it found."
    form["max_turns"] = 5
    edited = http.post(f"{API}/form", json={"yaml": full, "form": form}).json()
    before, after = yaml.safe_load(full), yaml.safe_load(edited["yaml"])
    assert after["agents"][1]["system_message"] == "Read one paper.\nSay what it found."
    assert after["team"]["max_turns"] == 5
    after["agents"][1]["system_message"] = before["agents"][1]["system_message"]
    after["team"]["max_turns"] = before["team"]["max_turns"]
    assert after == before  # every other field as it was
    assert "system_message: |-\n      Read one paper." in edited["yaml"]
    assert http.post(f"{API}/validate", json={"yaml": edited["yaml"]}).json()["ok"] is True

    unreadable = http.post(f"{API}/parse-form", json={"yaml": "name: [x\n"})
    assert unreadable.status_code == 400 and unreadable.json()["errors"][0]["line"] == 2
    a_list = http.post(f"{API}/form", json={"yaml": "- a\n- b\n", "form": form})  # never written over
    assert a_list.status_code == 400 and "expected a mapping" in a_list.json()["errors"][0]["message"]
    empty = http.post(f"{API}/form", json={"yaml": "", "form": {"name": "fresh", "agents": [{"name": "a"}]}})
    assert yaml.safe_load(empty.json()["yaml"]) == {"name": "fresh", "agents": [{"name": "a"}]}


def test_form_changes_kinds_and_types_without_leaving_foreign_fields(tmp_path: Path) -> None:
    where = tmp_path / "x.yaml"
    text = MINE + "team: {type: selector, selector_prompt: Pick., max_turns: 3}\n"
    form = form_of(read_yaml_text(text, path=where))
    edited = form.model_copy(deep=True)
    edited.team_type = "round_robin"
    edited.agents[0].kind = "user_proxy"
    edited.agents.append(edited.agents[0].model_copy(update={"source": None, "name": "critic", "kind": "assistant"}))
    edited.model_kind, edited.model, edited.base_url = "external", "qwen", "http://127.0.0.1:1234/v1"
    data = yaml.safe_load(apply_form(text, edited, path=where))
    assert data["team"] == {"type": "round_robin", "max_turns": 3}
    assert data["agents"][0] == {"name": "helper", "kind": "user_proxy"}
    assert data["agents"][1] == {"name": "critic", "system_message": "You help.", "skills": ["web_fetch"]}
    assert data["model"] == {"base_url": "http://127.0.0.1:1234/v1", "model": "qwen"}
    keys = list(data)  # a new top-level field goes where the format lists it: `model:` before `task:`
    assert keys.index("model") == keys.index("task") - 1
    assert form_of(read_yaml_text(apply_form(text, WorkflowForm(**form.model_dump()), path=where), path=where)) == form


def test_renamed_rewrites_only_the_name(tmp_path: Path) -> None:
    assert renamed("# top\nname: a  # why\nx: 1\n", "b") == "# top\nname: b  # why\nx: 1\n"
    assert renamed("name:\nx: 1\n", "b") == "name: b\nx: 1\n"
    assert renamed("{name: a, x: 1}\n", "b") == "{name: b, x: 1}\n"
    assert renamed("x: 1\n", "b") == "name: b\nx: 1\n"


def test_pages_offer_new_edit_duplicate_and_delete(http: TestClient) -> None:
    user_file("pair").write_text(PAIR)
    listing = http.get("/workflows").text
    assert 'href="/workflows/new"' in listing and 'href="/workflows/pair/edit"' in listing
    assert 'data-delete="pair"' in listing and 'data-delete="write-review"' not in listing
    assert 'data-source="write-review"' in listing and 'href="/workflows/write-review/edit"' not in listing
    new = http.get("/workflows/new").text
    assert "name: my-workflow" in new and 'data-name=""' in new and '"skills": ["web_fetch", ' in new
    detail = http.get("/workflows/pair?saved=1").text
    assert "Saved to" in detail and 'href="/workflows/pair/edit"' in detail
    hostile: dict[str, Any] = {"yaml": PAIR.replace("You talk.", "</textarea><script>alert(1)</script>")}
    user_file("pair").write_text(hostile["yaml"])
    page = http.get("/workflows/pair/edit").text
    assert "<script>alert(1)</script>" not in page and "&lt;/textarea&gt;&lt;script&gt;" in page
    user_file("broken").write_text(BROKEN.replace("name: mine", "name: broken"))
    shown = http.get("/workflows/broken")
    assert shown.status_code == 400 and 'href="/workflows/broken/edit"' in shown.text
