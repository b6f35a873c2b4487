"""Type-check the package with mypy, each folder under the import name pyproject.toml's package-dir gives it.

    python scripts/typecheck.py          # what `make typecheck` and `make test` run

mypy names a file's module after its folders (`local_llm/engine.py` -> `local_llm.engine`) and cannot follow the
package-dir mapping (`autoqwen.local_llm` -> `local_llm/`), so this hands it each file with its real module name.
"""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path

from mypy import build
from mypy.main import process_options
from mypy.modulefinder import BuildSource

ROOT = Path(__file__).resolve().parent.parent


def sources() -> list[BuildSource]:
    """Every .py file of the package, named as it is imported."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    folders = config["tool"]["setuptools"]["package-dir"]
    found = []
    for package in config["tool"]["setuptools"]["packages"]:
        parent, _, name = package.rpartition(".")
        folder = ROOT / folders[package] if package in folders else ROOT / folders[parent] / name
        for path in sorted(folder.glob("*.py")):
            module = package if path.stem == "__init__" else f"{package}.{path.stem}"
            found.append(BuildSource(str(path.relative_to(ROOT)), module))
    return found


def main() -> int:
    """Run mypy with pyproject.toml's [tool.mypy] settings; print its errors; 1 if there are any."""
    os.chdir(ROOT)  # errors name files relative to the repository
    _, options = process_options(["--config-file", str(ROOT / "pyproject.toml"), str(ROOT / "autoqwen")])
    found = sources()
    result = build.build(found, options)
    for line in result.errors:
        print(line)
    errors = sum(": error:" in line for line in result.errors)
    print(f"mypy: {errors} errors in {len(found)} modules" if errors else f"mypy: no errors in {len(found)} modules")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
