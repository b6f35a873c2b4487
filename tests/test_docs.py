"""The docs say what the code does: the generated CLI reference is current, and the README's examples run."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from autoqwen.cli import app
from autoqwen.skills import add_skill_file, load_skills

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
CLI_DOCS = DOCS / "cli.md"
# `typer autoqwen.cli.main utils docs --name autoqwen --output docs/cli.md` writes the CLI reference.
TYPER_DOCS = ["autoqwen.cli.main", "utils", "docs", "--name", "autoqwen", "--output"]
REGENERATE = f".venv/bin/typer {' '.join(TYPER_DOCS)} docs/cli.md"
# Pages whose code blocks are checked for `autoqwen ...` commands (cli.md is generated from the commands).
PAGES = [README, *sorted(p for p in DOCS.glob("*.md") if p != CLI_DOCS)]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
SKILL_IMPORT = "from autoqwen.skills import skill"


def code_blocks(path: Path, language: str | None = None) -> list[str]:
    """The fenced code blocks of a Markdown file, optionally only those of one language."""
    blocks = FENCE.findall(path.read_text(encoding="utf-8"))
    return [body for lang, body in blocks if language is None or lang == language]


def command_lines(path: Path) -> list[str]:
    """Every `autoqwen ...` command line in a page's code blocks, comments and environment assignments removed."""
    found = []
    for block in code_blocks(path):
        for line in block.splitlines():
            line = re.sub(r"\s#\s.*$", "", line).strip()
            line = re.sub(r"^(\w+=\S*\s+)+", "", line)  # OPENWEATHER_KEY=... autoqwen ...
            if line.startswith("autoqwen "):
                found.append(line)
    return found


def test_cli_reference_is_up_to_date(tmp_path: Path) -> None:
    out = tmp_path / "cli.md"
    subprocess.run([sys.executable, "-m", "typer", *TYPER_DOCS, str(out)], cwd=ROOT, check=True, capture_output=True)
    assert out.read_text(encoding="utf-8") == CLI_DOCS.read_text(encoding="utf-8"), (
        f"docs/cli.md is out of date with the CLI: regenerate it with `{REGENERATE}`"
    )


def test_readme_has_exactly_one_skill_file() -> None:
    blocks = [b for b in code_blocks(README, "python") if b.startswith(SKILL_IMPORT)]
    assert len(blocks) == 1, f"the README should hold one ```python block starting with `{SKILL_IMPORT}`"


def test_readme_skill_file_loads(tmp_path: Path) -> None:
    (block,) = [b for b in code_blocks(README, "python") if b.startswith(SKILL_IMPORT)]
    path = tmp_path / "my_skill.py"
    path.write_text(block, encoding="utf-8")
    change = add_skill_file(path)
    assert change.skills, "the README's skill file defines no skill"
    registry = load_skills()
    for name in change.skills:
        assert registry.registration(name).source.kind == "user"
        assert registry.get(name).description


def _resolve(words: list[str]) -> tuple[list[str], list[Any]]:
    """The subcommand path a command line names (e.g. ["skills", "add"]) and the commands along it, root first."""
    root = typer.main.get_command(app)
    chain: list[Any] = [root]
    path: list[str] = []
    with typer.Context(root) as ctx:
        for word in words:
            group = chain[-1]
            if not hasattr(group, "get_command"):  # a command, not a group: the rest are its arguments
                break
            if word.startswith("-"):
                continue  # an option of the group itself, e.g. `autoqwen --debug run ...`
            command = group.get_command(ctx, word)
            assert command is not None, f"`autoqwen {' '.join([*path, word])}`: no such command"
            chain.append(command)
            path.append(word)
    return path, chain


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_documented_commands_and_options_exist(page: Path) -> None:
    runner = CliRunner()
    checked: set[tuple[str, ...]] = set()
    for line in command_lines(page):
        words = [w.strip("[]|") for w in shlex.split(line)[1:]]
        path, chain = _resolve(words)
        known = {opt for command in chain for param in command.params for opt in param.opts}
        for option in re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", line):
            assert option in known | {"--help", "-h"}, f"{page.name}: `{line}` uses {option}, which no command has"
        if tuple(path) not in checked:
            checked.add(tuple(path))
            result = runner.invoke(app, [*path, "--help"])
            assert result.exit_code == 0, f"`autoqwen {' '.join(path)} --help` failed:\n{result.output}"
    if page == README:
        assert checked, "the README names no `autoqwen ...` command"


def _anchors(path: Path) -> set[str]:
    """GitHub's anchors for a Markdown file's headings: lower case, punctuation dropped, spaces as hyphens."""
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    headings = re.findall(r"^#+\s+(.*)$", text, re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("page", [*PAGES, CLI_DOCS], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(page: Path) -> None:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # http(s) and other schemes
        file, _, anchor = target.partition("#")
        linked = (page.parent / file).resolve() if file else page
        assert linked.exists(), f"{page.name}: link to {target}, which does not exist"
        if anchor and linked.suffix == ".md":
            assert anchor in _anchors(linked), f"{page.name}: link to {target}, which has no such heading"


@pytest.mark.parametrize("page", [README, DOCS / "workflows.md"], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_documented_workflow_files_validate(page: Path, tmp_path: Path) -> None:
    from autoqwen import load_workflow

    workflows = [b for b in code_blocks(page, "yaml") if b.startswith("name:")]
    assert workflows, f"{page.name} shows no workflow file"
    for i, block in enumerate(workflows):
        path = tmp_path / f"flow-{i}.yaml"
        path.write_text(block, encoding="utf-8")
        for ref in re.findall(r"ref:\s*(\S+)", block):  # the agent files it names: one stub agent each
            agent = tmp_path / ref
            agent.parent.mkdir(parents=True, exist_ok=True)
            agent.write_text(f"name: {agent.stem}\nsystem_message: You help.\n", encoding="utf-8")
        assert load_workflow(path).agents
