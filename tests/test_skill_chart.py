"""make_chart: PNG files in the session's files folder, input mistakes returned as text."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoqwen.skills import current_work_dir, use_work_dir
from autoqwen.skills.builtins.chart import make_chart

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _no_skill_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings from the caller's environment must not leak into these tests."""
    for name in ("AUTOQWEN_SESSION_DIR", "AUTOQWEN_LOAD_PLUGINS", "AUTOQWEN_ARXIV_URL"):
        monkeypatch.delenv(name, raising=False)


def saved_path(reply: str) -> Path:
    assert reply.startswith("Saved the "), reply
    return Path(reply.rsplit(" to ", 1)[1])


def test_a_line_chart_is_a_png_in_the_default_files_folder(tmp_path: Path) -> None:
    path = saved_path(make_chart([1, 4, 9, 16], title="Squares", x_label="n", y_label="n²"))
    assert path == tmp_path / "autoqwen-home" / "files" / "chart.png"
    assert path.read_bytes().startswith(PNG) and path.stat().st_size > 5_000


@pytest.mark.parametrize(
    ("kind", "y", "x"),
    [
        ("bar", {"2023": [3, 5, 2], "2024": [4, 6, 3]}, ["north", "south", "east"]),
        ("scatter", [1.5, 2.5, 0.5], [0.1, 0.2, 0.9]),
        ("pie", [50, 30, 20], ["a", "b", "c"]),
        ("line", {"up": [1, 2, 3], "down": [3, 2, 1]}, None),
    ],
)
def test_every_kind_draws(tmp_path: Path, kind: str, y: object, x: object) -> None:
    with use_work_dir(tmp_path / "session"):
        path = saved_path(make_chart(y, x=x, kind=kind, filename=f"{kind} chart.png"))  # type: ignore[arg-type]
    assert path.parent == tmp_path / "session" and path.name == f"{kind}-chart.png"
    assert path.read_bytes().startswith(PNG)


def test_the_session_folder_comes_from_the_env_and_files_are_never_overwritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTOQWEN_SESSION_DIR", str(tmp_path / "s1"))
    assert current_work_dir() == tmp_path / "s1"
    first = saved_path(make_chart([1, 2], filename="../../escape"))
    second = saved_path(make_chart([1, 2], filename="../../escape"))
    assert (first.name, second.name) == ("escape.png", "escape-2.png")
    assert first.parent == second.parent == tmp_path / "s1"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"y": []}, "Error: y has no numbers"),
        ({"y": [1, 2, 3], "x": [1, 2]}, "Error: x has 2 values but y has 3"),
        ({"y": {"a": [1, 2], "b": [1]}}, "Error: every named list"),
        ({"y": [1, -2], "kind": "pie"}, "Error: a pie chart"),
    ],
)
def test_input_mistakes_are_returned_as_text(kwargs: dict[str, object], message: str) -> None:
    assert make_chart(**kwargs).startswith(message)  # type: ignore[arg-type]
