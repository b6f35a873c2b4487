"""Run the code blocks of code_executor agents: each block in its own process group, under a time limit, with a
minimal environment, in the languages the workflow allows.

    executor = GroupKillingExecutor(work_dir, timeout_s=30, languages=("python",))
    result = await executor.execute_code_blocks([CodeBlock(code="print(6 * 7)", language="python")], token)

AutoGen's LocalCommandLineCodeExecutor signals only its direct child on timeout (a grandchild ran on past the limit)
and hands every block the whole environment, API keys included; this executor does neither. It is not a sandbox:
the code runs as the user, and a process that daemonizes itself out of the group can still outlive its block.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import psutil
from autogen_core import CancellationToken
from autogen_core.code_executor import CodeBlock, CodeExecutor, CodeResult

__all__ = ["BLOCK_NAMES", "GRACE_S", "GroupKillingExecutor", "Language", "minimal_env"]

Language = Literal["python", "bash", "sh"]

# The fence names a model may write for each language; the agent picks out blocks fenced with any of them, so that
# a block in a language the workflow does not allow is refused with a reason rather than silently ignored.
BLOCK_NAMES: dict[str, Language] = {
    "python": "python",
    "python3": "python",
    "py": "python",
    "bash": "bash",
    "sh": "sh",
    "shell": "sh",
}
GRACE_S = 1.0  # between SIGTERM and SIGKILL
_MAX_OUTPUT = 64 * 1024  # bytes of output kept per block; the rest is read and dropped so the code never blocks
_EXTENSIONS: dict[Language, str] = {"python": "py", "bash": "sh", "sh": "sh"}
_WINDOWS = sys.platform == "win32"


def minimal_env(work_dir: Path) -> dict[str, str]:
    """The environment a code block gets: PATH, LANG, and HOME/TMPDIR inside the work folder; no keys or secrets."""
    tmp = work_dir / ".tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    python_dir = str(Path(sys.executable).parent)
    env = {
        "PATH": os.pathsep.join([python_dir, os.environ.get("PATH", os.defpath)]),
        "HOME": str(work_dir),
        "TMPDIR": str(tmp),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "PYTHONIOENCODING": "utf-8",
    }
    if _WINDOWS:  # Windows programs fail to start without these
        env |= {name: os.environ[name] for name in ("SYSTEMROOT", "COMSPEC", "PATHEXT") if name in os.environ}
        env |= {"TEMP": str(tmp), "TMP": str(tmp), "USERPROFILE": str(work_dir)}
    return env


class GroupKillingExecutor(CodeExecutor):
    """Runs each code block as a file in `work_dir`, in a new process group that is killed whole at `timeout_s`."""

    def __init__(self, work_dir: Path, *, timeout_s: float, languages: Sequence[Language] = ("python",)) -> None:
        self.work_dir = Path(work_dir)
        self.timeout_s = timeout_s
        self.languages: tuple[Language, ...] = tuple(languages)

    async def start(self) -> None:
        """Nothing to start: each block gets its own process."""

    async def stop(self) -> None:
        """Nothing to stop: no process outlives its block."""

    async def restart(self) -> None:
        """Nothing to restart."""

    async def execute_code_blocks(
        self, code_blocks: list[CodeBlock], cancellation_token: CancellationToken
    ) -> CodeResult:
        """Run the blocks in order, stopping at the first that fails, times out or is not allowed."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        output = ""
        for block in code_blocks:
            language = BLOCK_NAMES.get(block.language.strip().lower())
            if language is None or language not in self.languages:
                allowed = ", ".join(self.languages)
                return CodeResult(
                    exit_code=1,
                    output=output + f"{block.language} code blocks are not allowed in this workflow (allowed: "
                    f"{allowed}); the workflow can list it in the code_executor agent's `languages`",
                )
            task = asyncio.ensure_future(self._run(block.code, language))
            cancellation_token.link_future(task)
            exit_code, text = await task
            output += text
            if exit_code != 0:
                return CodeResult(exit_code=exit_code, output=output)
        return CodeResult(exit_code=0, output=output)

    async def _run(self, code: str, language: Language) -> tuple[int, str]:
        digest = hashlib.sha256(code.encode()).hexdigest()[:16]
        script = self.work_dir / f"tmp_code_{digest}.{_EXTENSIONS[language]}"
        script.write_text(code, encoding="utf-8")
        try:
            return await self._run_file(script, language)
        finally:
            script.unlink(missing_ok=True)

    async def _run_file(self, script: Path, language: Language) -> tuple[int, str]:
        program = sys.executable if language == "python" else shutil.which(language)
        if program is None:
            return 1, f"{language} is not installed on this machine"
        # A new process group (a new session on POSIX), so that a timeout can signal every process the block started.
        group: dict[str, Any] = {"start_new_session": True}
        if _WINDOWS:
            group = {"creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}
        proc = await asyncio.create_subprocess_exec(
            program,
            str(script),
            cwd=self.work_dir,
            env=minimal_env(self.work_dir),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            **group,
        )
        assert proc.stdout is not None
        reader = asyncio.ensure_future(_read_capped(proc.stdout))
        timed_out = False
        try:
            try:
                await asyncio.wait_for(proc.wait(), self.timeout_s)
            except TimeoutError:
                timed_out = True
                await _stop_group(proc)
            # Processes the block left behind keep the pipe open; give them a moment to finish writing, then end them.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(reader), GRACE_S)
        finally:
            _kill_group(proc.pid, signal.SIGKILL if not _WINDOWS else signal.SIGTERM)
            if not reader.done():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(reader, GRACE_S)
                reader.cancel()
        text = reader.result() if reader.done() and not reader.cancelled() else ""
        if timed_out:
            limit = f"{self.timeout_s:g}"
            return 124, text + f"\nTimeout: the code ran past its {limit} s limit, and its processes were stopped"
        return proc.returncode or 0, text


async def _read_capped(stream: asyncio.StreamReader) -> str:
    kept = bytearray()
    while chunk := await stream.read(65536):
        if len(kept) < _MAX_OUTPUT:
            kept += chunk[: _MAX_OUTPUT - len(kept)]
    text = kept.decode("utf-8", errors="replace")
    return text if len(kept) < _MAX_OUTPUT else text + "\n[output cut at 64 KiB]"


async def _stop_group(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM to the block's whole process group, then SIGKILL after the grace period."""
    _kill_group(proc.pid, signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(proc.wait(), GRACE_S)
    _kill_group(proc.pid, signal.SIGKILL if not _WINDOWS else signal.SIGTERM)


def _kill_group(pid: int, sig: int) -> None:
    """Signal the group led by `pid` and every descendant still known (one that left the group included)."""
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                child.send_signal(sig)
    if _WINDOWS:
        with contextlib.suppress(psutil.Error):
            psutil.Process(pid).send_signal(sig)
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
