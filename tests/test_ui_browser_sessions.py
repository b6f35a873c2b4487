"""The Sessions and Gallery pages in headless Chromium: search, delete, export to the gallery, open the export, import.

Needs Debian's `chromium` and `chromium-driver` (`make browser`) and selenium (a dev dependency); skipped otherwise.
Sessions are made directly in the store; their text carries a script tag that must stay text.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ui_browser import needs_browser, serve_ui

from autoqwen.workflows.gallery import export_sessions
from autoqwen.workflows.live_runs import LiveRuns
from autoqwen.workflows.store import SessionStore

pytestmark = needs_browser
HOSTILE = "<script>alert(1)</script>"


def tiny_png() -> bytes:
    """A valid 1x1 red PNG, so the browser can decode it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0\xff\0\0"))
        + chunk(b"IEND", b"")
    )


def make_session(store: SessionStore, workflow: str, title: str, *, picture: bool = False) -> str:
    session = store.create_session(workflow, title=title)
    store.append_message(session.id, "user", f"Tell me about {title}.")
    store.append_message(session.id, "alice", f"Some **bold** words {HOSTILE}", prompt_tokens=2, completion_tokens=3)
    if picture:
        (store.work_dir(session.id) / "chart.png").write_bytes(tiny_png())
    store.finish_session(session.id, "finished")
    return session.id


@pytest.fixture
def ui() -> Iterator[tuple[str, LiveRuns]]:
    with serve_ui() as served:
        yield served


def rows(driver: Any) -> list[str]:
    """The ids of the rows the Sessions list shows, read in one go (rows vanish as they are deleted)."""
    script = 'return Array.from(document.querySelectorAll("#sessions tbody tr"), (row) => row.dataset.session)'
    return list(driver.execute_script(script))


def test_search_and_delete_sessions(ui: tuple[str, LiveRuns], browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    url, runs = ui
    dogs = make_session(runs.store, "pair", "Dogs")
    cats = make_session(runs.store, "pair", "Cats")
    birds = make_session(runs.store, "long", "Birds")
    driver, wait = browser, WebDriverWait(browser, 20)
    driver.get(f"{url}/sessions")
    assert set(rows(driver)) == {dogs, cats, birds}
    search = driver.find_element(By.ID, "search")
    search.send_keys("dog", Keys.ENTER)
    wait.until(lambda d: "q=dog" in d.current_url)
    assert rows(driver) == [dogs]

    driver.get(f"{url}/sessions")
    delete = driver.find_element(By.ID, "delete-selected")
    assert not delete.is_enabled()
    driver.find_element(By.CSS_SELECTOR, f'input.pick[value="{cats}"]').click()
    assert delete.is_enabled()
    delete.click()
    wait.until(lambda d: d.switch_to.alert).accept()
    wait.until(lambda d: cats not in rows(d))
    assert "Deleted 1" in driver.find_element(By.ID, "notice").text
    assert {s.id for s in runs.store.list_sessions()} == {dogs, birds}

    # One session's page: its Markdown rendered, the script tag still text; Delete asks, then goes back to the list.
    driver.get(f"{url}/sessions/{birds}")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#messages .md-rendered strong"))
    assert HOSTILE in driver.find_element(By.ID, "messages").text
    assert not driver.find_elements(By.CSS_SELECTOR, "#messages script")
    driver.find_element(By.ID, "delete").click()
    wait.until(lambda d: d.switch_to.alert).dismiss()
    assert driver.current_url.endswith(f"/sessions/{birds}")
    driver.find_element(By.ID, "delete").click()
    wait.until(lambda d: d.switch_to.alert).accept()
    wait.until(lambda d: d.current_url.endswith("/sessions"))
    assert rows(driver) == [dogs]


def test_export_a_session_and_open_it_in_the_gallery(ui: tuple[str, LiveRuns], browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, runs = ui
    sid = make_session(runs.store, "pair", "Charted", picture=True)
    make_session(runs.store, "pair", "Not exported")
    driver, wait = browser, WebDriverWait(browser, 20)
    driver.get(f"{url}/sessions/{sid}")
    image = driver.find_element(By.CSS_SELECTOR, "#files img")
    wait.until(lambda d: d.execute_script("return arguments[0].naturalWidth", image) == 1)

    driver.get(f"{url}/sessions")
    driver.find_element(By.CSS_SELECTOR, f'input.pick[value="{sid}"]').click()
    driver.find_element(By.ID, "export-selected").click()
    wait.until(lambda d: "Exported 1" in d.find_element(By.ID, "notice").text)

    driver.find_element(By.LINK_TEXT, "Gallery").click()
    wait.until(lambda d: d.current_url.endswith("/gallery"))
    listed = driver.find_elements(By.CSS_SELECTOR, "#gallery tbody tr")
    assert [row.get_attribute("data-session") for row in listed] == [sid]
    driver.find_element(By.LINK_TEXT, "Charted").click()
    wait.until(lambda d: d.current_url.endswith(f"/gallery/static/{sid}/index.html"))
    assert HOSTILE in driver.find_element(By.TAG_NAME, "main").text  # the export's own page, escaped
    exported = driver.find_element(By.CSS_SELECTOR, "ul.files img")
    wait.until(lambda d: d.execute_script("return arguments[0].naturalWidth", exported) == 1)  # allowed by its CSP
    driver.find_element(By.LINK_TEXT, "← All sessions").click()
    wait.until(lambda d: d.current_url.endswith("/gallery/static/index.html"))
    assert "Charted" in driver.find_element(By.TAG_NAME, "main").text


def test_import_a_session_json_from_the_gallery_page(ui: tuple[str, LiveRuns], browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, runs = ui
    sid = make_session(runs.store, "pair", "Travelled")
    folder = export_sessions(runs.store, [sid], tmp_path / "shared")[0]
    runs.store.delete_session(sid)
    driver, wait = browser, WebDriverWait(browser, 20)
    driver.get(f"{url}/gallery")
    driver.find_element(By.ID, "import-files").send_keys(str(folder / "session.json"))
    driver.find_element(By.ID, "import").click()
    wait.until(lambda d: "Imported Travelled" in d.find_element(By.ID, "notice").text)
    driver.find_element(By.LINK_TEXT, "open it").click()
    wait.until(lambda d: d.current_url.endswith(f"/sessions/{sid}"))
    assert "imported" in driver.find_element(By.TAG_NAME, "main").text
    driver.get(f"{url}/gallery")
    driver.find_element(By.ID, "import-files").send_keys(str(folder / "session.json"))
    driver.find_element(By.ID, "import").click()
    wait.until(lambda d: "already in the store" in d.find_element(By.ID, "notice").text)
