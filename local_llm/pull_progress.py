"""How a download shows its progress: one bar over the bytes a pull fetches, with speed and time left.

    pull_model("Qwen/Qwen2.5-0.5B-Instruct", progress=RichPullProgress())   # a bar on stderr, as `models pull`
    pull_model("Qwen/Qwen2.5-0.5B-Instruct")                                # QUIET: no output (library use)

A pull calls `start` once it knows how many bytes it will fetch, `file` as each file begins, `advance` as bytes
arrive, and `stop` always, whether it succeeded or not. `hf_tqdm_class` adapts the object to the `tqdm_class` hook
through which huggingface_hub reports its downloads (plain HTTP and Xet alike).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from autoqwen.terminal import terminal_safe

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["QUIET", "PullProgress", "QuietProgress", "RichPullProgress", "hf_tqdm_class"]


class PullProgress(Protocol):
    """What a pull reports to: total bytes, the file being fetched, bytes as they arrive, the end."""

    def start(self, label: str, total: int) -> None:
        """The pull of `label` will fetch `total` bytes."""

    def file(self, name: str) -> None:
        """The pull now fetches (or checks) the file `name`."""

    def advance(self, nbytes: int) -> None:
        """`nbytes` more bytes arrived (negative when a server restarts a file)."""

    def stop(self) -> None:
        """The pull ended, done or failed; called even when `start` was not."""


class QuietProgress:
    """Shows nothing: for library calls and tests."""

    def start(self, label: str, total: int) -> None:
        pass

    def file(self, name: str) -> None:
        pass

    def advance(self, nbytes: int) -> None:
        pass

    def stop(self) -> None:
        pass


QUIET = QuietProgress()


class RichPullProgress:
    """A rich progress bar (bytes, speed, time left) on stderr, or on the console given."""

    def __init__(self, console: Console | None = None) -> None:
        self._console = console
        self._bar: Any = None
        self._task: Any = None
        self._label = ""

    def start(self, label: str, total: int) -> None:
        if total <= 0:  # nothing to fetch: no bar
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._label = terminal_safe(label)  # names come from a hub: control characters shown, never obeyed
        self._bar = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self._console or Console(stderr=True),
        )
        self._task = self._bar.add_task(self._label, total=total)
        self._bar.start()

    def file(self, name: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task, description=f"{self._label} {terminal_safe(name)}")

    def advance(self, nbytes: int) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, nbytes)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.update(self._task, description=self._label)
            self._bar.stop()
            self._bar = None


def hf_tqdm_class(progress: PullProgress) -> type:
    """A class for huggingface_hub's `tqdm_class` hook that forwards the bytes of each file to `progress`.

    huggingface_hub creates one per file (`total`, `initial` and display options as keywords), calls `update` with
    the bytes written, and `update_transfer` with network bytes too where it has them: only the first counts, as
    the pull's total is the files' sizes."""

    class _Bar:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.n = 0
            self.total = kwargs.get("total")
            if kwargs.get("initial"):
                self.update(kwargs["initial"])

        def __enter__(self) -> _Bar:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def update(self, n: float | None = 1) -> None:
            self.n += int(n or 0)
            progress.advance(int(n or 0))

        def update_transfer(self, n: float | None = 1) -> None:
            pass

        def set_postfix_str(self, *args: Any, **kwargs: Any) -> None:
            pass

        set_transfer_postfix_str = set_description = set_description_str = set_postfix_str

        def refresh(self) -> None:
            pass

        def close(self) -> None:
            pass

    return _Bar
