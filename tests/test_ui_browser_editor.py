"""The workflow editor in headless Chromium driven by Selenium: write YAML with a mistake, see it at its line, fix
it and save; duplicate a builtin; edit a system message in the form view and see it in the YAML.

Needs Debian's `chromium` and `chromium-driver` (`make browser`) and selenium (a dev dependency); skipped otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from ui_browser import needs_browser, serve_ui

from autoqwen.paths import user_workflows_dir

pytestmark = needs_browser
HOSTILE = "</textarea><script>window.hacked = 1</script>"
MINE = f"""\
name: mine
inputs:
  topic: {{default: cats}}
agents:
  - name: helper
    system_message: "{HOSTILE}"
    skills: [web_fetch]
    temperature: 0.2
task: Talk about {{topic}}.
"""


@pytest.fixture
def ui_url() -> Iterator[str]:
    with serve_ui(workflows={"mine": MINE}) as (url, _):
        yield url


def test_a_yaml_mistake_shows_at_its_line_and_the_fixed_workflow_saves(ui_url: str, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    driver, wait = browser, WebDriverWait(browser, 20)
    driver.get(f"{ui_url}/workflows")
    driver.find_element(By.ID, "new-workflow").click()
    wait.until(lambda d: d.current_url.endswith("/workflows/new"))
    text = driver.find_element(By.ID, "yaml")
    assert "name: my-workflow" in text.get_attribute("value")
    text.send_keys(Keys.CONTROL, "a")
    text.send_keys("name: typed\nagents: [{name: helper, system_message: Hi., tempo: 1}]\ntask: Say hi.\n")
    # Checked as it is typed: wait for the check of the whole text.
    wait.until(lambda d: "tempo" in d.find_element(By.ID, "problems").text)
    problem = driver.find_element(By.CSS_SELECTOR, "#problems button.problem")
    assert problem.text.startswith("Line 2 · agents[0].tempo: unknown field"), problem.text
    marked = driver.find_elements(By.CSS_SELECTOR, "#gutter div.bad")
    assert [row.text for row in marked] == ["2"] and "unknown field" in marked[0].get_attribute("title")

    problem.click()  # the cursor goes to line 2, the whole line selected: typing replaces it
    assert driver.switch_to.active_element == text
    assert text.get_property("selectionStart") == len("name: typed\n")
    text.send_keys("agents: [{name: helper, system_message: Hi.}]")
    status = driver.find_element(By.ID, "problems-status")
    wait.until(lambda d: status.text.startswith("No problems"))
    assert not driver.find_elements(By.CSS_SELECTOR, "#gutter div.bad")

    text.send_keys(Keys.CONTROL, "s")
    wait.until(lambda d: d.current_url.endswith("/workflows/typed?saved=1"))
    assert "Saved to" in driver.find_element(By.TAG_NAME, "main").text
    assert (user_workflows_dir() / "typed.yaml").read_text().startswith("name: typed\nagents: [{name: helper")
    driver.find_element(By.LINK_TEXT, "Workflows").click()
    assert driver.find_element(By.LINK_TEXT, "typed").get_attribute("href").endswith("/workflows/typed")


def test_duplicate_a_builtin_and_edit_the_copy(ui_url: str, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver, wait = browser, WebDriverWait(browser, 20)
    driver.get(f"{ui_url}/workflows")
    row = driver.find_element(By.CSS_SELECTOR, 'tr[data-workflow="write-review"]')
    assert not row.find_elements(By.LINK_TEXT, "Edit") and not row.find_elements(By.CSS_SELECTOR, "[data-delete]")
    row.find_element(By.TAG_NAME, "summary").click()
    name = row.find_element(By.NAME, "new_name")
    name.clear()
    name.send_keys("my-review")
    row.find_element(By.CSS_SELECTOR, "form button").click()
    wait.until(lambda d: d.current_url.endswith("/workflows/my-review/edit"))
    assert driver.find_element(By.ID, "yaml").get_attribute("value").startswith("name: my-review\n")
    wait.until(lambda d: d.find_element(By.ID, "problems-status").text.startswith("No problems"))
    assert (user_workflows_dir() / "my-review.yaml").is_file()


def test_the_form_view_edits_a_system_message_into_the_yaml(ui_url: str, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver, wait = browser, WebDriverWait(browser, 20)
    driver.get(f"{ui_url}/workflows/mine/edit")
    text = driver.find_element(By.ID, "yaml")
    assert HOSTILE in text.get_attribute("value") and not driver.execute_script("return window.hacked")
    driver.find_element(By.ID, "view-form").click()
    message = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#f-agents textarea[data-field=system_message]"))
    assert message.get_attribute("value") == HOSTILE and not driver.find_elements(By.CSS_SELECTOR, "#editor script")
    assert not text.is_displayed() and driver.find_element(By.ID, "f-name").get_attribute("value") == "mine"
    boxes = {b.get_attribute("value"): b.is_selected() for b in driver.find_elements(By.CSS_SELECTOR, ".skills input")}
    assert boxes["web_fetch"] is True and boxes["paper_search"] is False
    message.clear()
    message.send_keys("You are terse.")
    wait.until(lambda d: "system_message: You are terse." in text.get_attribute("value"))
    driver.find_element(By.ID, "view-yaml").click()
    wait.until(lambda d: text.is_displayed())  # the switch may wait for the form's last change to be written
    shown = text.get_attribute("value")
    assert "temperature: 0.2" in shown and "topic:" in shown and "skills: [web_fetch]" in shown
    wait.until(lambda d: d.find_element(By.ID, "problems-status").text.startswith("No problems"))
    driver.find_element(By.ID, "save").click()
    wait.until(lambda d: d.current_url.endswith("/workflows/mine?saved=1"))
    assert "You are terse." in (user_workflows_dir() / "mine.yaml").read_text()
