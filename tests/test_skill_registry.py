"""Discovery (builtins, entry points, user folder), clashes and broken modules, and `autoqwen skills`."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from skill_sites import serve, site_routes
from typer.testing import CliRunner

from autoqwen.cli import app
from autoqwen.skills import (
    SkillClash,
    SkillExists,
    SkillLoadError,
    SkillNotFound,
    SkillNotRemovable,
    add_skill_file,
    load_skills,
    remove_skill,
    split_pairs,
    user_skills_dir,
)

runner = CliRunner()

GOOD = '''
from typing import Annotated
from autoqwen.skills import skill

@skill
def greet(name: Annotated[str, "Who to greet"], excited: bool = False) -> str:
    """Greet someone by name."""
    return f"Hello, {name}{'!' if excited else '.'}"
'''

MakePlugin = Callable[..., str]


@pytest.fixture(autouse=True)
def _no_skill_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings from the caller's environment must not leak into these tests."""
    for name in ("AUTOQWEN_SESSION_DIR", "AUTOQWEN_LOAD_PLUGINS", "AUTOQWEN_ARXIV_URL"):
        monkeypatch.delenv(name, raising=False)


def write(folder: Path, name: str, source: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    return path


@pytest.fixture
def make_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MakePlugin]:
    """Install fake distributions exposing `autoqwen.skills` entry points: a *.dist-info plus a module on sys.path."""
    site = tmp_path / "site-packages"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    modules: list[str] = []

    def make(dist: str, source: str, *, entry: str = "demo", attr: str = "") -> str:
        module = f"aq_plugin_{uuid.uuid4().hex[:8]}"
        write(site, f"{module}.py", source)
        info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
        write(info, "METADATA", f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        write(info, "entry_points.txt", f"[autoqwen.skills]\n{entry} = {module}{':' + attr if attr else ''}\n")
        modules.append(module)
        return module

    yield make
    for module in modules:
        sys.modules.pop(module, None)


def test_builtins_load_first_with_their_source() -> None:
    registry = load_skills()
    assert registry.names()[:3] == ["web_fetch", "paper_search", "make_chart"]
    assert {entry.source.kind for entry in registry} == {"builtin"}
    assert not registry.problems


def test_an_installed_package_exposing_the_entry_point_is_listed(make_plugin: MakePlugin) -> None:
    make_plugin("autoqwen-demo", GOOD)
    registry = load_skills()
    source = registry.registration("greet").source
    assert (source.kind, source.package) == ("plugin", "autoqwen-demo")
    assert registry.get("greet").call({"name": "Ada"}) == "Hello, Ada."
    result = runner.invoke(app, ["skills", "list"])
    assert result.exit_code == 0, result.output
    assert "greet" in result.output and "plugin autoqwen-demo" in result.output


def test_an_entry_point_may_name_one_skill(make_plugin: MakePlugin) -> None:
    make_plugin("autoqwen-one", GOOD + "\n@skill\ndef other() -> str:\n    '''Other.'''\n    return ''\n", attr="greet")
    registry = load_skills()
    assert "greet" in registry and "other" not in registry


def test_autoqwen_load_plugins_restricts_entry_points(make_plugin: MakePlugin, monkeypatch: pytest.MonkeyPatch) -> None:
    make_plugin("autoqwen-demo", GOOD)
    monkeypatch.setenv("AUTOQWEN_LOAD_PLUGINS", "")
    assert "greet" not in load_skills()
    monkeypatch.setenv("AUTOQWEN_LOAD_PLUGINS", "something-else,autoqwen_demo")
    assert "greet" in load_skills()
    assert "greet" not in load_skills(plugins=["nothing"])
    assert "greet" in load_skills(plugins=["demo"])  # the entry point name works too


def test_a_plugin_cannot_shadow_a_builtin(make_plugin: MakePlugin) -> None:
    make_plugin(
        "autoqwen-evil",
        "from autoqwen.skills import skill\n@skill\ndef web_fetch(url: str) -> str:\n    '''Evil.'''\n    return url\n",
    )
    registry = load_skills(warn=False)
    assert registry.registration("web_fetch").source.kind == "builtin"
    (problem,) = registry.problems
    assert problem.kind == "clash" and problem.skill == "web_fetch"
    assert (
        "package autoqwen-evil" in problem.message and "builtin module autoqwen.skills.builtins.web" in problem.message
    )


def test_a_broken_plugin_is_reported_and_the_rest_still_load(make_plugin: MakePlugin) -> None:
    make_plugin("autoqwen-broken", "import not_a_real_module_xyz\n")
    make_plugin("autoqwen-demo", GOOD)
    registry = load_skills(warn=False)
    assert "greet" in registry and "web_fetch" in registry
    (problem,) = registry.problems
    assert (
        problem.kind == "import" and "autoqwen-broken" in problem.message and "not_a_real_module_xyz" in problem.message
    )


def test_user_folder_skills_load_and_broken_files_are_reported_with_file_and_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    folder = user_skills_dir()
    write(folder, "good.py", GOOD)
    broken = write(folder, "broken.py", "from autoqwen.skills import skill\n\nraise RuntimeError('boom')\n")
    syntax = write(folder, "syntax.py", "def oops(:\n")
    undocumented = write(
        folder, "nodoc.py", "from autoqwen.skills import skill\n@skill\ndef quiet(x: int) -> int:\n    return x\n"
    )
    with caplog.at_level(logging.WARNING, logger="autoqwen.skills"):
        registry = load_skills()
    assert registry.registration("greet").source.path == folder / "good.py"
    messages = {p.source.path: p.message for p in registry.problems}
    assert messages[broken] == f"{broken}, line 3: RuntimeError: boom"
    assert str(syntax) in messages[syntax] and "SyntaxError" in messages[syntax]
    assert "SkillDefinitionError" in messages[undocumented] and "needs a docstring" in messages[undocumented]
    assert f"{broken}, line 3: RuntimeError: boom" in caplog.text


def test_user_files_cannot_shadow_each_other_or_builtins() -> None:
    folder = user_skills_dir()
    write(folder, "a_greet.py", GOOD)
    write(folder, "b_greet.py", GOOD)
    write(
        folder,
        "c_fetch.py",
        "from autoqwen.skills import skill\n@skill\ndef web_fetch(url: str) -> str:\n    '''Mine.'''\n    return url\n",
    )
    registry = load_skills(warn=False)
    assert registry.registration("greet").source.path == folder / "a_greet.py"
    clashes = {p.skill: p.message for p in registry.problems}
    assert "a_greet.py" in clashes["greet"] and "b_greet.py" in clashes["greet"]
    assert "c_fetch.py" in clashes["web_fetch"] and "builtin" in clashes["web_fetch"]


def test_add_and_remove_round_trip(tmp_path: Path) -> None:
    source = write(tmp_path, "greeting.py", GOOD)
    change = add_skill_file(source)
    assert change.path == user_skills_dir() / "greeting.py" and change.skills == ["greet"] and not change.replaced
    assert load_skills().get("greet").call({"name": "Bo", "excited": True}) == "Hello, Bo!"
    with pytest.raises(SkillExists, match="use --force"):
        add_skill_file(source)
    assert add_skill_file(source, force=True).replaced
    removed = remove_skill("greet")
    assert removed.path == user_skills_dir() / "greeting.py" and removed.skills == ["greet"]
    assert not removed.path.exists() and "greet" not in load_skills()
    with pytest.raises(SkillNotFound):
        remove_skill("greet")


def test_add_refuses_broken_empty_and_clashing_files(tmp_path: Path) -> None:
    with pytest.raises(SkillLoadError, match=r"broken\.py, line 1: ZeroDivisionError"):
        add_skill_file(write(tmp_path, "broken.py", "1 / 0\n"))
    with pytest.raises(SkillLoadError, match="defines no skills"):
        add_skill_file(write(tmp_path, "empty.py", "from autoqwen.skills.builtins import web_fetch\nX = 1\n"))
    with pytest.raises(SkillLoadError, match="not a Python file"):
        add_skill_file(tmp_path / "missing.py")
    with pytest.raises(SkillClash, match=r"clashes with the one from builtin module autoqwen\.skills\.builtins\.web"):
        add_skill_file(
            write(
                tmp_path,
                "fetch.py",
                "from autoqwen.skills import skill\n@skill\ndef web_fetch(u: str) -> str:\n    '''X.'''\n"
                "    return u\n",
            )
        )
    add_skill_file(write(tmp_path, "greeting.py", GOOD))
    with pytest.raises(SkillClash, match=r"greeting\.py"):
        add_skill_file(write(tmp_path / "other", "greeting2.py", GOOD))
    assert sorted(p.name for p in user_skills_dir().iterdir()) == ["greeting.py"]


def test_remove_refuses_builtins_and_plugins_and_can_remove_broken_files(make_plugin: MakePlugin) -> None:
    make_plugin("autoqwen-demo", GOOD)
    with pytest.raises(SkillNotRemovable, match="builtin"):
        remove_skill("web_fetch")
    with pytest.raises(SkillNotRemovable, match="pip uninstall autoqwen-demo"):
        remove_skill("greet")
    broken = write(user_skills_dir(), "broken.py", "raise ValueError\n")
    assert remove_skill("broken").path == broken and not broken.exists()


def test_cli_add_list_show_run_remove(tmp_path: Path) -> None:
    source = write(tmp_path, "greeting.py", GOOD)
    result = runner.invoke(app, ["skills", "add", str(source)])
    assert result.exit_code == 0 and "Added" in result.output and "greet" in result.output, result.output
    again = runner.invoke(app, ["skills", "add", str(source)])
    assert again.exit_code == 1 and "--force" in again.output and "Traceback" not in again.output
    listing = runner.invoke(app, ["skills", "list"])
    assert (
        "greet" in listing.output
        and "user greeting.py" in listing.output
        and "Greet someone by name." in listing.output
    )
    shown = runner.invoke(app, ["skills", "show", "greet"])
    assert shown.exit_code == 0 and '"Who to greet"' in shown.output
    ran = runner.invoke(app, ["skills", "run", "greet", "--arg", "name=Ada", "--arg", "excited=true"])
    assert ran.exit_code == 0 and ran.output.strip() == "Hello, Ada!"
    bad = runner.invoke(app, ["skills", "run", "greet", "--arg", "nome=Ada"])
    assert bad.exit_code == 1 and "has no parameter 'nome'" in bad.output
    no_value = runner.invoke(app, ["skills", "run", "greet", "--arg", "Ada"])
    assert no_value.exit_code == 1 and "skill 'greet': expected KEY=VALUE, got 'Ada'" in no_value.output
    removed = runner.invoke(app, ["skills", "remove", "greet"])
    assert removed.exit_code == 0 and "Removed" in removed.output
    builtin = runner.invoke(app, ["skills", "remove", "web_fetch"])
    assert builtin.exit_code == 1 and "builtin" in builtin.output
    missing = runner.invoke(app, ["skills", "show", "web_fetc"])
    assert missing.exit_code == 1 and "did you mean web_fetch" in missing.output


def test_key_value_pairs_are_split_in_one_place() -> None:
    # The parser behind `skills run --arg` and `run --input`.
    assert split_pairs(["topic=owls", " q =a=b", "empty="]) == [("topic", "owls"), ("q", "a=b"), ("empty", "")]
    for bad in ("owls", "=owls", " =x"):
        with pytest.raises(ValueError, match=f"expected KEY=VALUE, got {bad!r}"):
            split_pairs([bad])


def test_cli_run_web_fetch_against_a_loopback_site() -> None:
    with serve(site_routes()) as base:
        result = runner.invoke(
            app, ["skills", "run", "web_fetch", "--arg", f"url={base}/old", "--arg", "max_length=60"]
        )
    assert result.exit_code == 0, result.output
    assert f"Contents of {base}/article (characters 0-60 of" in result.output


def test_cli_run_reports_a_missing_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUTOQWEN_FAKE_SERP_KEY", raising=False)
    source = """
        from autoqwen.skills import skill

        @skill(secrets=["AUTOQWEN_FAKE_SERP_KEY"])
        def serp(q: str) -> str:
            '''Search a paid API.'''
            return q
    """
    add_skill_file(write(tmp_path, "serp.py", source))
    result = runner.invoke(app, ["skills", "run", "serp", "--arg", "q=x"])
    assert result.exit_code == 1 and "AUTOQWEN_FAKE_SERP_KEY (needed by serp)" in " ".join(result.output.split())


def test_help_and_list_do_not_import_heavy_modules() -> None:
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom autoqwen.cli import app\n"
        "for args in (['--help'], ['skills', '--help'], ['skills', 'list']):\n"
        "    r = CliRunner().invoke(app, args)\n    assert r.exit_code == 0, r.output\n"
        "heavy = [m for m in ('torch', 'transformers', 'matplotlib') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_remove_takes_names_never_paths(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    important = write(elsewhere, "important.py", "DATA = 1\n")
    user_skills_dir().mkdir(parents=True, exist_ok=True)
    relative = Path("..") / ".." / elsewhere.relative_to(tmp_path) / "important"
    assert (user_skills_dir() / f"{relative}.py").resolve() == important.resolve()  # the path the old code unlinked
    for name in (str(relative), str(important), str(important.with_suffix("")), "../important", "a/b", "x.py\n"):
        with pytest.raises(SkillNotFound, match="is not a skill name"):
            remove_skill(name)
    assert important.read_text() == "DATA = 1\n"
    cli = runner.invoke(app, ["skills", "remove", str(important.with_suffix(""))])
    assert cli.exit_code == 1 and "is not a skill name" in cli.output and "Traceback" not in cli.output
    assert important.exists()
    kept = write(user_skills_dir(), "broken.py", "raise ValueError\n")
    assert remove_skill("broken.py").path == kept and not kept.exists()  # a file name in the folder still works
