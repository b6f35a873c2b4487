"""Is the process that writes a running session still alive? Asked without psutil, on Linux, macOS and Windows.

A session records its writer's pid and, on Linux, the process start time (`process_token`), so that a pid reused by
an unrelated process after a crash does not pass for the writer.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["process_alive", "process_token"]


def process_token(pid: int) -> str:
    """The start time of a process (Linux), which tells a live writer from a later process that reused its pid."""
    stat = _proc_stat(pid)
    return stat[1] if stat else ""


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time) of a process from /proc, or None where there is no /proc entry."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()  # the command name in parentheses may contain spaces
    return fields[0], fields[19]


def process_alive(pid: int | None, token: str) -> bool:
    """Whether the process that wrote a session still runs (a zombie or a reused pid counts as gone)."""
    if pid is None:
        return False
    stat = _proc_stat(pid)
    if stat is not None:
        state, started = stat
        return state not in ("Z", "X") and (not token or token == started)
    if Path("/proc/self/stat").exists():
        return False  # Linux, and no such process
    if sys.platform == "win32":
        return _windows_alive(pid)
    try:
        os.kill(pid, 0)  # signal 0 checks existence (never on Windows, where os.kill terminates)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _windows_alive(pid: int) -> bool:
    import ctypes

    kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return False
    try:
        code = ctypes.c_ulong()
        kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        return code.value == 259  # STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)
