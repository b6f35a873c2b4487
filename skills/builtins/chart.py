"""The `make_chart` skill: a line, bar, scatter or pie chart as a PNG in the session's files folder (offline)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from autoqwen.paths import current_work_dir
from autoqwen.skills._skill import skill

__all__ = ["make_chart"]

Series = list[float] | dict[str, list[float]]


@skill
def make_chart(
    y: Annotated[Series, "The numbers to plot, or several named lists of numbers for several lines or bars"],
    x: Annotated[list[float] | list[str] | None, "x values or category labels, one per number"] = None,
    kind: Annotated[Literal["line", "bar", "scatter", "pie"], "The chart type"] = "line",
    title: Annotated[str, "Chart title"] = "",
    x_label: Annotated[str, "x axis label"] = "",
    y_label: Annotated[str, "y axis label"] = "",
    filename: Annotated[str, "File name for the PNG, without a folder"] = "chart",
) -> str:
    """Draw a line, bar, scatter or pie chart, save it as a PNG in the session's files folder, return its path."""
    series = y if isinstance(y, dict) else {"": y}
    lengths = {len(values) for values in series.values()}
    if not series or lengths == {0}:
        return "Error: y has no numbers to plot."
    if len(lengths) > 1:
        return "Error: every named list in y needs the same number of values."
    (count,) = lengths
    if x is not None and len(x) != count:
        return f"Error: x has {len(x)} values but y has {count}; give one x value per number."
    if kind == "pie" and (len(series) > 1 or any(v < 0 for v in next(iter(series.values())))):
        return "Error: a pie chart takes one list of numbers, none negative."
    path = _free_path(current_work_dir(), filename)
    _draw(series, x, kind, title, x_label, y_label, path)
    return f"Saved the {kind} chart to {path}"


def _draw(
    series: dict[str, list[float]],
    x: list[float] | list[str] | None,
    kind: str,
    title: str,
    x_label: str,
    y_label: str,
    path: Path,
) -> None:
    # The object API with the Agg canvas: no pyplot global state, no GUI backend, safe in worker threads.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 5), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    count = len(next(iter(series.values())))
    labels = [str(v) for v in x] if x is not None else [str(i + 1) for i in range(count)]
    if kind == "pie":
        axes.pie(next(iter(series.values())), labels=labels, autopct="%1.0f%%")
        axes.set_aspect("equal")
    else:
        categorical = x is None or any(isinstance(v, str) for v in x)
        positions = list(range(count)) if categorical else [float(v) for v in x or []]
        gaps = [b - a for a, b in zip(sorted(positions), sorted(positions)[1:], strict=False) if b > a]
        width = 0.8 * min(gaps, default=1.0) / len(series)
        for index, (name, values) in enumerate(series.items()):
            if kind == "bar":
                offset = (index - (len(series) - 1) / 2) * width
                axes.bar([p + offset for p in positions], values, width=width, label=name or None)
            elif kind == "scatter":
                axes.scatter(positions, values, label=name or None)
            else:
                axes.plot(positions, values, marker="o", label=name or None)
        if categorical:
            axes.set_xticks(positions, labels, rotation=30 if max(map(len, labels)) > 6 else 0)
        axes.set_xlabel(x_label)
        axes.set_ylabel(y_label)
        axes.grid(alpha=0.3)
        if len(series) > 1:
            axes.legend()
    axes.set_title(title)
    figure.savefig(path, format="png")


def _free_path(folder: Path, filename: str) -> Path:
    stem = re.sub(r"[^0-9A-Za-z_-]+", "-", Path(filename).stem).strip("-") or "chart"
    path = folder / f"{stem}.png"
    number = 2
    while path.exists():
        path = folder / f"{stem}-{number}.png"
        number += 1
    return path
