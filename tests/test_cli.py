from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from autoqwen.cli import app
from autoqwen.local_llm import EmbeddedServer, Engine, resolve_model

runner = CliRunner()


def test_help_does_not_import_torch() -> None:
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom autoqwen.cli import app\n"
        "for args in (['--help'], ['serve', '--help'], ['chat', '--help']):\n"
        "    r = CliRunner().invoke(app, args)\n    assert r.exit_code == 0, r.output\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_chat_one_shot_on_a_local_folder(tiny_model_dir: Path) -> None:
    result = runner.invoke(
        app,
        [
            "chat",
            "--model",
            str(tiny_model_dir),
            "--prompt",
            "Hello",
            "--max-tokens",
            "4",
            "--temperature",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output


def test_chat_interactive_keeps_history_and_resets(tiny_model_dir: Path, monkeypatch: object) -> None:
    from autoqwen.local_llm.chat import ChatSession

    seen: list[int] = []
    original = ChatSession.send

    def spy(self: ChatSession, text: str):  # type: ignore[no-untyped-def]
        seen.append(len(self.history))
        yield from original(self, text)

    monkeypatch.setattr(ChatSession, "send", spy)  # type: ignore[attr-defined]
    with EmbeddedServer(Engine(resolve_model(str(tiny_model_dir)))) as server:
        server.engine.wait_ready(60)
        result = runner.invoke(
            app,
            ["chat", "--base-url", server.base_url, "--model", server.engine.model_id, "--max-tokens", "3"],
            input="Hello\nAgain\n/reset\nFresh\n/exit\n",
        )
    assert result.exit_code == 0, result.output
    assert "history cleared" in result.output
    assert seen == [0, 2, 0]


def test_bad_model_is_one_clear_line_and_exit_1() -> None:
    for command in ("chat", "serve"):
        result = runner.invoke(app, [command, "--model", "nowhere.gguf"])
        assert result.exit_code == 1
        assert "GGUF file not found" in result.output and "Traceback" not in result.output


def test_offline_hub_id_is_a_clear_error(tmp_path: Path, monkeypatch: object) -> None:
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))  # type: ignore[attr-defined]
    result = runner.invoke(app, ["serve", "--model", "someone/some-model"])
    assert result.exit_code == 1
    assert "'someone/some-model'" in result.output and "--model auto" in result.output


def test_serve_on_port_0_learns_the_port_it_got() -> None:
    """Before, `serve --port 0` announced port 0 and pointed workflow runs at it."""
    import threading

    import httpx
    import uvicorn
    from fastapi import FastAPI

    from autoqwen.cli.serve import _bound_port, own_url

    app = FastAPI()
    app.get("/v1/ping")(lambda: {"ok": True})
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        port = _bound_port(server)
        assert port > 0
        assert httpx.get(own_url("127.0.0.1", port) + "/ping").json() == {"ok": True}
    finally:
        server.should_exit = True
        thread.join(10)
