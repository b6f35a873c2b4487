"""Is the process that writes a running session still alive? Asked through psutil, on Linux, macOS and Windows.

A session records its writer's pid and start time (`process_token`), so that a pid reused by an unrelated process
after a crash does not pass for the writer.
"""

from __future__ import annotations

import psutil

__all__ = ["process_alive", "process_token"]

# Start times are seconds since the epoch, computed from the boot time, which the system clock can nudge between
# two readings; a later process that reused the pid started long after the writer's start anyway.
_SAME_START_S = 1.0


def process_token(pid: int) -> str:
    """The start time of a process, which tells a live writer from a later process that reused its pid."""
    try:
        return repr(psutil.Process(pid).create_time())
    except psutil.Error:
        return ""


def process_alive(pid: int | None, token: str) -> bool:
    """Whether the process that wrote a session still runs (a zombie or a reused pid counts as gone)."""
    if pid is None or pid <= 0 or not psutil.pid_exists(pid):
        return False
    try:
        process = psutil.Process(pid)
        if process.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            return False
        started = process.create_time()
    except psutil.NoSuchProcess:  # ZombieProcess included
        return False
    except psutil.AccessDenied:
        return True  # it exists, owned by someone else
    return _same_start(token, started)


def _same_start(token: str, started: float) -> bool:
    # No token, or one written before psutil (Linux clock ticks since boot, no dot): the pid alone decides.
    if "." not in token:
        return True
    try:
        return abs(float(token) - started) < _SAME_START_S
    except ValueError:
        return True
