"""The web UI in headless Chromium driven by Selenium: run `write-review` from the playground, watch it live.

Needs Debian's `chromium` and `chromium-driver` (`make browser`) and selenium (a dev dependency); skipped otherwise.
The run goes to tests/openai_stub.py's scripted server, whose reply carries a script tag that must stay text.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from openai_stub import serve_stub

from autoqwen.paths import user_workflows_dir
from autoqwen.ui import GuardConfig, create_ui_app
from autoqwen.workflows.live_runs import LiveRuns, RunTarget
from autoqwen.workflows.store import SessionStore

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e .[dev])")
CHROMIUM = next((path for name in ("chromium", "chromium-browser") if (path := shutil.which(name))), None)
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="chromium or chromium-driver is not installed (`make browser` installs them): UI not checked in a browser",
)
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
        app = create_ui_app(runs, GuardConfig(), model_label="stub")
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.01)
        try:
            yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
        finally:
            runs.close()
            server.should_exit = True
            thread.join(10)
            runs.store.close()


@pytest.fixture
def browser() -> Iterator[object]:
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(DRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_run_write_review_in_the_playground_and_see_messages(ui_url: str, browser: object) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver: webdriver.Chrome = browser  # type: ignore[assignment]
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


def test_stop_ends_a_running_workflow(ui_url: str, browser: object) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver: webdriver.Chrome = browser  # type: ignore[assignment]
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
