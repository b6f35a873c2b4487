"""The Skills and Model pages in headless Chromium driven by Selenium: add a skill file, try skills (a chart shown
inline, a user skill whose output must stay text), and watch the model's figures.

Needs Debian's `chromium` and `chromium-driver` (`make browser`) and selenium (a dev dependency); skipped otherwise.
Runs go to the tiny model's real server on loopback (tests/conftest.py), so the Model page has figures to show.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from ui_browser import needs_browser, serve_ui

from autoqwen.local_llm import EmbeddedServer
from autoqwen.workflows.live_runs import RunTarget

pytestmark = needs_browser
HOSTILE = "<script>alert(1)</script>"
ECHO = '''
from autoqwen.skills import skill


@skill
def echo(text: str, times: int = 1) -> str:
    """Say the text back."""
    return " ".join([text] * times)
'''


@pytest.fixture
def ui_url(tiny_server: EmbeddedServer) -> Iterator[str]:
    with serve_ui(RunTarget(tiny_server.base_url), label="tiny") as (url, _):
        yield url


def test_add_a_skill_file_and_try_skills(ui_url: str, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver, wait = browser, WebDriverWait(browser, 60)
    driver.get(f"{ui_url}/skills")
    names = [a.text for a in driver.find_elements(By.CSS_SELECTOR, "#skills tbody tr td:first-child a")]
    assert {"web_fetch", "paper_search", "make_chart", "generate_image"} <= set(names)
    (tmp_path / "echo.py").write_text(ECHO)
    driver.find_element(By.ID, "skill-file").send_keys(str(tmp_path / "echo.py"))
    driver.find_element(By.ID, "add").click()
    wait.until(lambda d: "Added echo.py" in d.find_element(By.ID, "add-status").text)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, 'tr[data-skill="echo"]'))
    assert "user echo.py" in driver.find_element(By.CSS_SELECTOR, 'tr[data-skill="echo"]').text

    driver.find_element(By.LINK_TEXT, "echo").click()
    driver.find_element(By.ID, "arg-text").send_keys(HOSTILE)
    driver.find_element(By.ID, "arg-times").send_keys("2")
    driver.find_element(By.ID, "run").click()
    wait.until(lambda d: d.find_element(By.ID, "try-result").is_displayed())
    assert driver.find_element(By.ID, "result-text").text == f"{HOSTILE} {HOSTILE}"  # shown as text ...
    assert not driver.find_elements(By.CSS_SELECTOR, "#try-result script")  # ... never made an element
    driver.find_element(By.ID, "arg-times").send_keys("x")  # "2x" is no integer: the field is pointed out
    driver.find_element(By.ID, "run").click()
    wait.until(lambda d: d.find_element(By.ID, "try-status").text.startswith("error:"))
    assert "times" in driver.find_element(By.ID, "try-status").text
    assert driver.find_element(By.ID, "arg-times").get_attribute("aria-invalid") == "true"

    driver.get(f"{ui_url}/skills/make_chart")
    driver.find_element(By.ID, "arg-y").send_keys("[1, 4, 9]")
    driver.find_element(By.ID, "run").click()
    wait.until(lambda d: d.find_element(By.ID, "try-result").is_displayed())
    assert "Saved the line chart" in driver.find_element(By.ID, "result-text").text
    image = driver.find_element(By.CSS_SELECTOR, "#result-files img")
    wait.until(lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image) > 0)


def test_the_model_page_shows_live_figures(ui_url: str, browser: Any, tiny_server: EmbeddedServer) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver, wait = browser, WebDriverWait(browser, 30)
    driver.get(f"{ui_url}/model")
    assert driver.find_element(By.CSS_SELECTOR, '[data-field="model"]').text == tiny_server.engine.model_id
    assert driver.find_element(By.CSS_SELECTOR, '[data-field="context_length"]').text == "4,096 tokens"
    assert driver.find_element(By.CSS_SELECTOR, '[data-field="state"]').text == "ready"
    requests = driver.find_element(By.CSS_SELECTOR, '[data-field="metrics.requests"]')
    before = int(requests.text.replace(",", ""))
    body = {"model": tiny_server.engine.model_id, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    assert httpx.post(f"{tiny_server.base_url}/chat/completions", json=body, timeout=60).status_code == 200
    # The page's script asks again every few seconds; the new requests show up without a reload.
    wait.until(lambda d: int(requests.text.replace(",", "")) > before)
    assert driver.find_element(By.ID, "updated").text != "now"
    assert driver.find_element(By.CSS_SELECTOR, '[data-field="metrics.completion_tokens"]').text != "—"
