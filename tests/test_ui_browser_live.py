"""The Playground's live runs in headless Chromium: reload mid-run, answer a human, Markdown made safe, resume.

Needs Debian's `chromium` and `chromium-driver` (`make browser`) and selenium (a dev dependency); skipped otherwise.
Runs go to tests/openai_stub.py's scripted server, whose reply is Markdown with hostile HTML in it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from openai_stub import serve_stub
from ui_browser import needs_browser, serve_ui
from workflow_samples import ASK

from autoqwen.workflows.live_runs import RunTarget
from autoqwen.workflows.store import SessionStore

pytestmark = needs_browser
REPLY = "Hi **there** <script>alert(1)</script> <img src=x onerror=alert(1)> [docs](https://example.com/d)"


@pytest.fixture
def ui_url() -> Iterator[str]:
    with serve_stub(REPLY) as stub, serve_ui(RunTarget(stub.base_url, "stub", "k"), workflows={"ask": ASK}) as (url, _):
        yield url


def sources(driver: Any) -> list[str]:
    from selenium.webdriver.common.by import By

    articles = driver.find_elements(By.CSS_SELECTOR, "#messages article.message:not(.input-request)")
    return [a.find_element(By.CSS_SELECTOR, "strong.source").text for a in articles]


def test_a_reload_mid_run_shows_the_stream_from_its_start_and_a_human_answers(ui_url: str, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    wait = WebDriverWait(driver, 30)
    driver.get(f"{ui_url}/playground?workflow=ask")
    assert driver.find_element(By.ID, "human").get_attribute("value") == "always"  # the workflow's own
    driver.find_element(By.ID, "run").click()
    wait.until(lambda d: d.find_elements(By.ID, "answer"))
    assert "?session=" in driver.current_url
    session_id = driver.current_url.split("?session=")[1]
    assert sources(driver) == ["user", "writer"]

    driver.refresh()  # the run goes on without the page; the new page attaches to it
    wait.until(lambda d: d.find_elements(By.ID, "answer"))
    assert sources(driver) == ["user", "writer"] and driver.current_url.endswith(f"?session={session_id}")
    assert driver.find_element(By.ID, "stop").is_enabled() and not driver.find_element(By.ID, "run").is_enabled()
    box = driver.find_element(By.ID, "answer")
    assert driver.switch_to.active_element == box  # ready for the keyboard
    assert "Enter sends" in driver.find_element(By.ID, "answer-hint").text
    box.send_keys("Make it *short*.", Keys.ENTER)
    wait.until(lambda d: sources(d) == ["user", "writer", "you", "writer"] and d.find_elements(By.ID, "answer"))
    answered = driver.find_elements(By.CSS_SELECTOR, "#messages article.message")[2]
    assert answered.find_element(By.CSS_SELECTOR, ".text em").text == "short"  # the answer, as Markdown

    driver.switch_to.new_window("tab")  # a second tab: the same stream, from its start
    driver.get(f"{ui_url}/playground?session={session_id}")
    wait.until(lambda d: d.find_elements(By.ID, "answer"))
    assert sources(driver) == ["user", "writer", "you", "writer"]
    driver.find_element(By.ID, "stop").click()
    wait.until(lambda d: d.find_element(By.ID, "summary").is_displayed())
    assert "status: stopped (cancelled)" in driver.find_element(By.ID, "summary").text
    assert not driver.find_elements(By.ID, "answer")
    driver.switch_to.window(driver.window_handles[0])  # the first tab saw the run end too
    wait.until(lambda d: d.find_element(By.ID, "summary").is_displayed())
    assert not driver.find_elements(By.ID, "answer") and driver.find_element(By.ID, "run").is_enabled()


def test_messages_render_as_markdown_and_hostile_html_stays_inert(ui_url: str, browser: Any) -> None:
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    driver = browser
    driver.get(f"{ui_url}/playground?workflow=ask")
    Select(driver.find_element(By.ID, "human")).select_by_value("never")
    driver.find_element(By.ID, "run").click()
    WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "summary").is_displayed())
    text = driver.find_elements(By.CSS_SELECTOR, "#messages article")[1].find_element(By.CSS_SELECTOR, ".text")
    assert text.find_element(By.TAG_NAME, "strong").text == "there"
    assert "<script>alert(1)</script>" in text.text and "<img src=x onerror=alert(1)>" in text.text  # as text
    assert not driver.find_elements(By.CSS_SELECTOR, "#messages script, #messages img, #messages [onerror]")
    link = text.find_element(By.TAG_NAME, "a")
    assert link.get_attribute("href") == "https://example.com/d" and link.get_attribute("target") == "_blank"
    assert "noopener" in link.get_attribute("rel")
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018 - reading it is the check
    summary = driver.find_element(By.ID, "summary").text
    assert "turns: 4" in summary and "the turn cap" in summary and "tokens: 20" in summary
    assert "5 + 5 tokens" in driver.find_elements(By.CSS_SELECTOR, "#messages article")[1].text
    rendered = driver.execute_script(
        "const out = [];"
        "for (const t of arguments[0]) {"
        "  const div = document.createElement('div'); div.appendChild(window.autoqwenMarkdown(t));"
        "  out.push(div.innerHTML); }"
        "return out;",
        ["[x](javascript:alert(1))", "![pic](http://tracker.example/p.png)", "<b onclick=alert(1)>b</b>"],
    )
    assert "javascript" not in rendered[0] and "href" not in rendered[0]
    assert "<img" not in rendered[1] and 'href="http://tracker.example/p.png"' in rendered[1]
    assert "&lt;b onclick=alert(1)&gt;" in rendered[2] and "<b" not in rendered[2]


def test_resume_then_the_playground_attaches_to_the_resumed_run(ui_url: str, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    driver = browser
    wait = WebDriverWait(driver, 30)
    driver.get(f"{ui_url}/playground?workflow=ask")
    Select(driver.find_element(By.ID, "human")).select_by_value("never")
    driver.find_element(By.ID, "run").click()
    wait.until(lambda d: d.find_element(By.ID, "summary").is_displayed())
    session_id = driver.current_url.split("?session=")[1]
    # What the Sessions page's Resume button does: POST, then open the playground on the session.
    answer = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch('/api/v1/sessions/' + arguments[0] + '/resume', {method: 'POST',"
        " headers: {'Content-Type': 'application/json'}, body: JSON.stringify({max_turns: 2, human: 'always'})})"
        ".then(r => r.json()).then(done);",
        session_id,
    )
    assert answer == {"session_id": session_id, "workflow": "ask"}
    driver.get(f"{ui_url}/playground?session={session_id}")
    wait.until(lambda d: d.find_elements(By.ID, "answer"))
    assert sources(driver) == ["user", "writer", "you", "writer", "you", "writer"]
    driver.find_element(By.ID, "answer").send_keys("Done.\n")
    wait.until(lambda d: d.find_element(By.ID, "summary").is_displayed())
    assert sources(driver)[-1] == "you" and "status: finished" in driver.find_element(By.ID, "summary").text


def test_a_stored_session_shows_tool_calls_results_and_the_images_they_made(ui_url: str, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with SessionStore() as store:
        session_id = store.create_session("ask", title="charts").id
        (store.work_dir(session_id) / "sales chart.png").write_bytes(b"\x89PNG\r\n\x1a\n")
        call = [{"id": "c1", "name": "make_chart", "arguments": '{"y": [1, 2]}'}]
        result = [{"call_id": "c1", "name": "make_chart", "content": "Saved the line chart to sales chart.png"}]
        store.append_message(session_id, "writer", call, type="tool_call", prompt_tokens=7, completion_tokens=3)
        store.append_message(session_id, "writer", result, type="tool_result")
        store.finish_session(session_id, "finished", stop_reason="Text 'TERMINATE' mentioned")
    driver = browser
    driver.get(f"{ui_url}/playground?session={session_id}")
    WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "summary").is_displayed())
    call_article, result_article = driver.find_elements(By.CSS_SELECTOR, "#messages article")
    assert "make_chart" in call_article.text and '{"y": [1, 2]}' in call_article.text
    assert "7 + 3 tokens" in call_article.text
    details = result_article.find_element(By.TAG_NAME, "details")
    assert details.get_attribute("open") is None  # collapsed until clicked
    image = result_article.find_element(By.CSS_SELECTOR, "figure.produced img")
    assert image.get_attribute("src") == f"{ui_url}/sessions/{session_id}/files/sales%20chart.png"
    summary = driver.find_element(By.ID, "summary").text
    assert "status: finished (its termination condition: Text 'TERMINATE' mentioned)" in summary


def test_markdown_js_renders_md_elements_of_a_page_in_place(ui_url: str, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    driver.get(f"{ui_url}/playground")
    scripts = "".join(
        f'<script src="/static/{path}"></script>'
        for path in ("vendor/purify.min.js", "vendor/marked.min.js", "markdown.js")
    )
    page = f"<p class='md' id='one'>**bold** &lt;img src=x onerror=alert(1)&gt;</p>{scripts}"
    driver.execute_script(
        "const frame = document.createElement('iframe'); frame.id = 'probe'; frame.srcdoc = arguments[0];"
        "document.body.appendChild(frame);",
        page,
    )
    driver.switch_to.frame(driver.find_element(By.ID, "probe"))
    WebDriverWait(driver, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#one.md-rendered"))
    one = driver.find_element(By.ID, "one")
    assert one.find_element(By.TAG_NAME, "strong").text == "bold" and not one.find_elements(By.TAG_NAME, "img")
    assert "<img src=x onerror=alert(1)>" in one.text
