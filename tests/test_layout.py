"""The architecture rules of DESIGN.md, checked: one import package, import layering, complete public surfaces."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Each layer's subpackage and the folder it lives in.
FOLDERS = {
    "autoqwen.local_llm": ROOT / "local_llm",
    "autoqwen.skills": ROOT / "skills",
    "autoqwen.agents": ROOT / "agents",
    "autoqwen.workflows": ROOT / "workflows",
    "autoqwen.cli": ROOT / "autoqwen" / "cli",
    "autoqwen.ui": ROOT / "autoqwen" / "ui",
}
# What each layer may import besides itself and the shared base (BASE: modules that import no layer): lower layers
# only.
ALLOWED = {
    "autoqwen.local_llm": set(),
    "autoqwen.skills": set(),
    "autoqwen.agents": {"autoqwen.skills", "autoqwen.local_llm"},
    "autoqwen.workflows": {"autoqwen.skills", "autoqwen.local_llm", "autoqwen.agents"},
    "autoqwen.cli": {
        "autoqwen",
        "autoqwen.skills",
        "autoqwen.local_llm",
        "autoqwen.agents",
        "autoqwen.workflows",
        "autoqwen.ui",
    },
    # The web UI: the top layer beside the CLI.
    "autoqwen.ui": {"autoqwen.skills", "autoqwen.local_llm", "autoqwen.agents", "autoqwen.workflows"},
}
BASE = {"autoqwen.paths", "autoqwen.addresses", "autoqwen.terminal"}
OLD_NAMES = {"local_llm", "skills", "agents", "workflows"}
HEAVY = ("torch", "transformers")
# The engine's modules: the only ones that may import HEAVY, and only inside functions.
ENGINE = {
    "engine.py",
    "loading.py",
    "scheduler.py",
    "scoring.py",
    "sampling.py",
    "batch.py",
    "decoding.py",
    "kernels.py",
    "llama.py",
    "prefill.py",
    "prefix_cache.py",
    "quantize.py",
}


def imports_of(path: Path) -> list[tuple[str, bool]]:
    """(imported module, imported at module level?) for every absolute import in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, id(node) in top_level))
    return found


def layer_of(module: str) -> str | None:
    """The layer (subpackage) a module name belongs to, `autoqwen` for the root package itself."""
    if module in BASE:
        return None
    for layer in FOLDERS:
        if module == layer or module.startswith(layer + "."):
            return layer
    return "autoqwen" if module == "autoqwen" else None


def python_files() -> list[Path]:
    folders = [*FOLDERS.values(), ROOT / "autoqwen", ROOT / "tests", ROOT / "benchmarks"]
    return sorted({p for folder in folders for p in folder.rglob("*.py")})


def test_nothing_imports_the_old_top_level_names() -> None:
    for path in python_files():
        for module, _ in imports_of(path):
            assert module.split(".")[0] not in OLD_NAMES, f"{path.relative_to(ROOT)} imports {module}"


@pytest.mark.parametrize("layer", FOLDERS)
def test_layers_import_only_downwards(layer: str) -> None:
    for path in FOLDERS[layer].rglob("*.py"):
        if path.name == "__main__.py":  # an entry point sits above every layer; nothing imports it
            continue
        for module, _ in imports_of(path):
            other = layer_of(module)
            if other is not None and other != layer:
                assert other in ALLOWED[layer], f"{path.relative_to(ROOT)} imports {module}"


@pytest.mark.parametrize("base", sorted(BASE))
def test_the_base_modules_import_no_layer(base: str) -> None:
    path = ROOT / (base.replace(".", "/") + ".py")
    for module, _ in imports_of(path):
        assert not module.startswith("autoqwen"), f"{path.relative_to(ROOT)} imports {module}"


@pytest.mark.parametrize("layer", FOLDERS)
def test_torch_is_only_imported_lazily_in_the_engine(layer: str) -> None:
    for path in FOLDERS[layer].rglob("*.py"):
        for module, at_top in imports_of(path):
            if module.split(".")[0] in HEAVY:
                assert path.name in ENGINE and not at_top, f"{path.relative_to(ROOT)} imports {module}"


@pytest.mark.parametrize("package", ["autoqwen", *FOLDERS])
def test_all_is_complete(package: str) -> None:
    # Its order is ruff's job (RUF022).
    mod = importlib.import_module(package)
    exported = set(getattr(mod, "__all__", []))
    public = {name for name in vars(mod) if not name.startswith("_")}
    submodules = {m.name for m in pkgutil.iter_modules(mod.__path__)}
    subpackages = {layer.split(".")[1] for layer in FOLDERS}
    missing = public - exported - submodules - subpackages - {"annotations", "TYPE_CHECKING", "Any", "os"}
    assert not missing, f"{package} exposes {missing} without listing them in __all__"
    for name in exported:
        assert getattr(mod, name) is not None, f"{package}.__all__ lists {name}, which does not resolve"


def test_installed_environment_has_no_old_top_level_packages(tmp_path: Path) -> None:
    # Run outside the repository, so only what is installed (editable or not) can be found.
    code = f"import importlib.util as u; print(sorted(n for n in {sorted(OLD_NAMES)!r} if u.find_spec(n)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_wheel_adds_exactly_one_top_level_package(tmp_path: Path) -> None:
    source = tmp_path / "src"
    tracked = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    names = tracked.split() or [str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if ".venv" not in p.parts]
    for name in names:
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    build = "import sys; from setuptools import build_meta; print(build_meta.build_wheel(sys.argv[1]))"
    out = subprocess.run(
        [sys.executable, "-c", build, str(tmp_path / "dist")], cwd=source, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-2000:]
    wheel = tmp_path / "dist" / out.stdout.strip().splitlines()[-1]
    with zipfile.ZipFile(wheel) as archive:
        files = archive.namelist()
        record = next(name for name in files if name.endswith(".dist-info/RECORD"))
        recorded = [line.split(",")[0] for line in archive.read(record).decode().splitlines()]
    assert {path.split("/")[0] for path in recorded if ".dist-info/" not in path} == {"autoqwen"}
    for needed in (
        "autoqwen/py.typed",
        "autoqwen/cli/__init__.py",
        "autoqwen/local_llm/kernels.cpp",
        "autoqwen/local_llm/attention.cpp",
        "autoqwen/local_llm/decode_step.cpp",
        "autoqwen/local_llm/kernels.h",
        "autoqwen/skills/builtins/web.py",
        "autoqwen/workflows/builtin/write-review.yaml",
        "autoqwen/workflows/templates/index.html",
        "autoqwen/ui/templates/base.html",
        "autoqwen/ui/static/ui.js",
    ):
        assert needed in files, f"the wheel lacks {needed}"


def test_the_model_server_runs_without_the_agent_layers() -> None:
    code = (
        "import runpy, sys\n"
        "sys.argv = ['x', '--help']\n"
        "try:\n    runpy.run_module('autoqwen.local_llm', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "print(' '.join(sorted({m.split('.')[1] for m in sys.modules if m.startswith('autoqwen.')})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "--port" in out.stdout
    loaded = set(out.stdout.strip().splitlines()[-1].split())
    assert not loaded & {"agents", "skills", "workflows"}, loaded


def test_help_imports_neither_torch_nor_fastapi() -> None:
    code = (
        "import sys\nfrom autoqwen.cli import app\n"
        "try:\n    app(['--help'], prog_name='autoqwen')\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('torch', 'transformers', 'fastapi', 'autogen_core') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_tests_resolve_only_loopback_names() -> None:
    import socket

    with pytest.raises(socket.gaierror, match="only loopback"):
        socket.getaddrinfo("example.com", 80)
    assert socket.getaddrinfo("127.0.0.1", 80)
