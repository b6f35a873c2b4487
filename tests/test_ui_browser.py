"""The web UI in headless Chromium driven by Selenium: run `write-review` from the playground, watch it live.

Needs Debian's `chromium` and `chromium-driver` (`make browser`) and selenium (a dev dependency); skipped otherwise.
The run goes to tests/openai_stub.py's scripted server, whose reply carries a script tag that must stay text.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from openai_stub import serve_stub
from ui_browser import needs_browser, serve_ui
from workflow_samples import ENDLESS

from autoqwen.local_llm import EmbeddedServer
from autoqwen.workflows.live_runs import RunTarget

pytestmark = needs_browser
HOSTILE = "<script>alert(1)</script>"


@pytest.fixture
def ui_url() -> Iterator[str]:
    with (
        serve_stub(f"Draft {HOSTILE}") as stub,
        serve_ui(RunTarget(stub.base_url, "stub", "k"), workflows={"long": ENDLESS}) as (url, _),
    ):
        yield url


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


@pytest.mark.model
def test_write_review_on_the_bundled_model_shows_each_message_before_the_run_ends(
    bundled_server: EmbeddedServer, browser: Any
) -> None:
    """The issue's check: `write-review`, 2 turns, on the real model; the writer's message is on screen while the
    critic still writes (no summary yet), and the run ends with both."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    with serve_ui(RunTarget(bundled_server.base_url), label="bundled") as (url, _):
        driver.get(f"{url}/playground?workflow=write-review")
        for field, value in (("max-turns", "2"), ("seed", "0")):
            box = driver.find_element(By.ID, field)
            box.clear()
            box.send_keys(value)
        driver.find_element(By.ID, "run").click()
        seen: list[tuple[int, bool]] = []  # (messages on screen, summary shown) at each look
        wait = WebDriverWait(driver, 300, poll_frequency=0.05)

        def look(d: Any) -> bool:
            shown = d.find_element(By.ID, "summary").is_displayed()
            seen.append((len(d.find_elements(By.CSS_SELECTOR, "#messages article")), shown))
            return shown

        wait.until(look)
        sources = [
            a.find_element(By.CSS_SELECTOR, "strong").text
            for a in driver.find_elements(By.CSS_SELECTOR, "#messages article")
        ]
        assert sources == ["user", "writer", "critic"]
        assert (2, False) in seen, seen  # the writer's message shown, the run not over
        assert "status: finished" in driver.find_element(By.ID, "summary").text
        assert driver.find_elements(By.CSS_SELECTOR, "#messages article .md-rendered")  # Markdown rendered
