"""Code blocks cannot outlive their time limit, see the user's secrets, or run in a language the workflow forbids."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path

import psutil
import pytest
from autogen_core import CancellationToken
from autogen_core.code_executor import CodeBlock, CodeResult

from autoqwen.agents.code_execution import GroupKillingExecutor
from autoqwen.workflows.errors import SpecError
from autoqwen.workflows.loader import load_workflow

STUBBORN = """\
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen(["sleep", "123"])
print("grandchild", child.pid, flush=True)
time.sleep(300)
"""


def execute(executor: GroupKillingExecutor, code: str, language: str = "python") -> CodeResult:
    return asyncio.run(executor.execute_code_blocks([CodeBlock(code=code, language=language)], CancellationToken()))


@pytest.mark.skipif(os.name != "posix" or shutil.which("sleep") is None, reason="POSIX process groups")
def test_a_block_that_ignores_sigterm_is_killed_with_its_grandchild(tmp_path: Path) -> None:
    started = time.monotonic()
    result = execute(GroupKillingExecutor(tmp_path, timeout_s=2), STUBBORN)
    elapsed = time.monotonic() - started
    assert result.exit_code == 124 and "2 s limit" in result.output, result.output
    assert elapsed < 6, f"the block ran {elapsed:.1f} s under a 2 s limit"
    pid = int(result.output.split("grandchild", 1)[1].split()[0])
    deadline = time.monotonic() + 2
    while psutil.pid_exists(pid) and time.monotonic() < deadline:  # a zombie waits for init to reap it
        if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            break
        time.sleep(0.05)
    alive = psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    assert not alive, f"the grandchild sleep 123 (pid {pid}) outlived its block"
    assert list(tmp_path.glob("tmp_code_*")) == []


def test_a_block_sees_no_secret_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-123")
    monkeypatch.setenv("MY_TOKEN", "tok-secret-456")
    result = execute(GroupKillingExecutor(tmp_path, timeout_s=20), "import os; print(dict(os.environ))")
    assert result.exit_code == 0, result.output
    for leaked in ("sk-secret-123", "tok-secret-456", "OPENAI_API_KEY", "MY_TOKEN"):
        assert leaked not in result.output
    assert f"'HOME': '{tmp_path}'" in result.output and "PATH" in result.output


def test_code_runs_in_the_work_folder_and_its_output_comes_back(tmp_path: Path) -> None:
    result = execute(GroupKillingExecutor(tmp_path, timeout_s=20), "print(6 * 7); open('made.txt', 'w').write('hi')")
    assert (result.exit_code, result.output.strip()) == (0, "42")
    assert (tmp_path / "made.txt").read_text() == "hi"
    failed = execute(GroupKillingExecutor(tmp_path, timeout_s=20), "raise SystemExit(3)")
    assert failed.exit_code == 3


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_runs_only_when_the_workflow_lists_it(tmp_path: Path) -> None:
    refused = execute(GroupKillingExecutor(tmp_path, timeout_s=20), "echo ran > ran.txt", "bash")
    assert refused.exit_code == 1 and "bash code blocks are not allowed" in refused.output
    assert "allowed: python" in refused.output and not (tmp_path / "ran.txt").exists()
    allowed = execute(GroupKillingExecutor(tmp_path, timeout_s=20, languages=("python", "bash")), "echo hi", "bash")
    assert (allowed.exit_code, allowed.output.strip()) == (0, "hi")
    shell = execute(GroupKillingExecutor(tmp_path, timeout_s=20, languages=("bash",)), "print(1)", "py")
    assert shell.exit_code == 1 and "py code blocks are not allowed in this workflow (allowed: bash)" in shell.output


def test_the_agent_refuses_a_bash_block_it_is_not_allowed_to_run(tmp_path: Path) -> None:
    from autogen_agentchat.messages import TextMessage

    from autoqwen.agents import AgentContext, CodeExecutorSpec, Endpoint, build_agent
    from autoqwen.skills import load_skills

    ctx = AgentContext(Endpoint("http://127.0.0.1:9/v1", "m"), load_skills(), tmp_path, code_execution=True)

    def reply(spec: CodeExecutorSpec) -> str:
        agent = build_agent(spec, ctx)
        message = TextMessage(content="```bash\necho ran > ran.txt\n```", source="user")
        response = asyncio.run(agent.on_messages([message], CancellationToken()))
        return response.chat_message.to_text()

    assert "bash code blocks are not allowed" in reply(CodeExecutorSpec(name="run", kind="code_executor"))
    assert not (tmp_path / "ran.txt").exists()
    reply(CodeExecutorSpec(name="run", kind="code_executor", languages=("python", "bash")))
    assert (tmp_path / "ran.txt").exists()


def test_an_unknown_language_in_the_spec_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text("name: f\nagents:\n  - {name: run, kind: code_executor, languages: [python, ruby]}\ntask: Go.\n")
    with pytest.raises(SpecError) as caught:
        load_workflow(path)
    message = str(caught.value)
    assert "flow.yaml" in message and "agents.0.languages.1" in message and "'python', 'bash' or 'sh'" in message
