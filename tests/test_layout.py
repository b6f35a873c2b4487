"""The architecture rules of DESIGN.md, checked: import layering and complete public surfaces."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("local_llm", "skills", "agents", "workflows")
# What each package may import from the others (lower layers never import upper ones).
ALLOWED = {
    "local_llm": set(),
    "skills": set(),
    "agents": {"skills", "local_llm"},
    "workflows": {"skills", "local_llm", "agents"},
}
HEAVY = ("torch", "transformers")
# The engine's modules: the only ones that may import HEAVY, and only inside functions.
ENGINE = {"engine.py", "batch.py", "decoding.py", "kernels.py", "llama.py", "prefix_cache.py", "quantize.py"}


def imports_of(path: Path) -> list[tuple[str, bool]]:
    """(top-level module, imported at module level?) for every import in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name.split(".")[0], id(node) in top_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module.split(".")[0], id(node) in top_level))
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_layers_import_only_downwards(package: str) -> None:
    for path in (ROOT / package).rglob("*.py"):
        for module, _ in imports_of(path):
            if module in PACKAGES and module != package:
                assert module in ALLOWED[package], f"{path.relative_to(ROOT)} imports {module}"


@pytest.mark.parametrize("package", PACKAGES)
def test_torch_is_only_imported_lazily_in_the_engine(package: str) -> None:
    for path in (ROOT / package).rglob("*.py"):
        for module, at_top in imports_of(path):
            if module in HEAVY:
                assert path.name in ENGINE and not at_top, f"{path.relative_to(ROOT)} imports {module}"


@pytest.mark.parametrize("package", PACKAGES)
def test_all_is_complete(package: str) -> None:
    # Its order is ruff's job (RUF022).
    mod = importlib.import_module(package)
    exported = getattr(mod, "__all__", [])
    public = {name for name in vars(mod) if not name.startswith("_")}
    submodules = {m.name for m in pkgutil.iter_modules(mod.__path__)}
    missing = public - set(exported) - submodules - {"annotations"}
    assert not missing, f"{package} exposes {missing} without listing them in __all__"


def test_tests_resolve_only_loopback_names() -> None:
    import socket

    with pytest.raises(socket.gaierror, match="only loopback"):
        socket.getaddrinfo("example.com", 80)
    assert socket.getaddrinfo("127.0.0.1", 80)
