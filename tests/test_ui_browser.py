"""The web UI in headless Chromium driven by Selenium: run `write-review` from the playground, watch it live.

Needs Debian's `chromium` and `chromium-driver` (`make browser`) and selenium (a dev dependency); skipped otherwise.
The run goes to tests/openai_stub.py's scripted server, whose reply carries a script tag that must stay text.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from openai_stub import serve_stub
from ui_browser import chrome, needs_browser, serve_app

from autoqwen.paths import user_workflows_dir
from autoqwen.ui import GuardConfig, create_ui_app
from autoqwen.workflows.live_runs import LiveRuns, RunTarget
from autoqwen.workflows.store import SessionStore

pytestmark = needs_browser
HOSTILE = "<script>alert(1)</script>"
LONG = """\
name: long
inputs:
  topic: {default: cats}
agents:
  - {name: alice, system_message: You talk., max_tokens: 4}
  - {name: bob, system_message: You answer., max_tokens: 4}
team: {type: round_robin, max_turns: 100}
termination: {text: null, max_messages: null}
task: Talk about {topic}.
"""


@pytest.fixture
def ui_url() -> Iterator[str]:
    user_workflows_dir().mkdir(parents=True)
    (user_workflows_dir() / "long.yaml").write_text(LONG)
    with serve_stub(f"Draft {HOSTILE}") as stub:
        runs = LiveRuns(RunTarget(stub.base_url, "stub", "k"), SessionStore())
        try:
            with serve_app(create_ui_app(runs, GuardConfig(), model_label="stub")) as url:
                yield url
        finally:
            runs.close()
            runs.store.close()


@pytest.fixture
def browser() -> Iterator[Any]:
    with chrome() as driver:
        yield driver


def test_run_write_review_in_the_playground_and_see_messages(ui_url: str, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    driver.get(f"{ui_url}/")
    assert "write-review" in driver.find_element(By.TAG_NAME, "main").text
    driver.find_element(By.LINK_TEXT, "Playground").click()
    driver.get(f"{ui_url}/playground?workflow=write-review")
    topic = driver.find_element(By.ID, "input-topic")
    assert topic.get_attribute("value") == "running a small language model on a laptop"
    turns = driver.find_element(By.ID, "max-turns")
    turns.clear()
    turns.send_keys("2")
    driver.find_element(By.ID, "run").click()
    wait = WebDriverWait(driver, 60)
    wait.until(lambda d: d.find_element(By.ID, "summary").is_displayed())
    articles = driver.find_elements(By.CSS_SELECTOR, "#messages article")
    sources = [a.find_element(By.CSS_SELECTOR, "strong").text for a in articles]
    assert sources == ["user", "writer", "critic"]
    assert HOSTILE in articles[1].text  # shown as text ...
    assert not driver.find_elements(By.CSS_SELECTOR, "#messages script")  # ... never made an element
    summary = driver.find_element(By.ID, "summary").text
    assert "turns: 2" in summary and "status: finished" in summary
    driver.find_element(By.LINK_TEXT, "Open the session").click()
    wait.until(lambda d: "/sessions/" in d.current_url)
    assert HOSTILE in driver.find_element(By.ID, "messages").text


def test_stop_ends_a_running_workflow(ui_url: str, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    driver.get(f"{ui_url}/playground?workflow=long")
    driver.find_element(By.ID, "run").click()
    wait = WebDriverWait(driver, 60)
    stop = driver.find_element(By.ID, "stop")
    wait.until(lambda d: stop.is_enabled())
    stop.click()
    wait.until(lambda d: d.find_element(By.ID, "summary").is_displayed())
    summary = driver.find_element(By.ID, "summary").text
    assert "status: stopped" in summary, summary
    assert driver.find_element(By.ID, "run").is_enabled()
