"""Shared by the browser tests of the web UI: a UI app served on loopback, headless Chromium driven by Selenium.

    pytestmark = needs_browser
    with serve_ui(RunTarget(stub.base_url, "stub", "k"), workflows={"long": LONG}) as (url, runs):
        browser.get(f"{url}/workflows")

Needs Debian's `chromium` and `chromium-driver` (`make browser`) and selenium (a dev dependency); `needs_browser`
skips a test, with the reason, where they are missing.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI

from autoqwen.paths import user_workflows_dir
from autoqwen.ui import GuardConfig, create_ui_app
from autoqwen.workflows.live_runs import LiveRuns, RunTarget
from autoqwen.workflows.store import SessionStore

try:
    from selenium import webdriver
except ImportError:  # pragma: no cover - selenium is a dev dependency
    webdriver = None

CHROMIUM = next((path for name in ("chromium", "chromium-browser") if (path := shutil.which(name))), None)
DRIVER = shutil.which("chromedriver")
needs_browser = pytest.mark.skipif(
    webdriver is None or CHROMIUM is None or DRIVER is None,
    reason="selenium, chromium or chromium-driver is missing (`pip install -e .[dev]`, `make browser`): "
    "UI not checked in a browser",
)


@contextmanager
def serve_app(app: FastAPI) -> Iterator[str]:
    """Serve `app` on a free loopback port in a thread; its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def serve_ui(
    target: RunTarget | None = None, *, workflows: dict[str, str] | None = None, label: str = "stub"
) -> Iterator[tuple[str, LiveRuns]]:
    """The UI served on loopback, its runs going to `target` (by default a closed port: nothing runs), with
    `workflows` (name: YAML) written to the user workflows folder first; its URL and its runs."""
    if workflows:
        user_workflows_dir().mkdir(parents=True, exist_ok=True)
        for name, text in workflows.items():
            (user_workflows_dir() / f"{name}.yaml").write_text(text)
    runs = LiveRuns(target or RunTarget("http://127.0.0.1:9/v1", "stub", "k"), SessionStore())
    try:
        with serve_app(create_ui_app(runs, GuardConfig(), model_label=label)) as url:
            yield url, runs
    finally:
        runs.close()
        runs.store.close()


@contextmanager
def chrome(width: int = 1280, height: int = 900) -> Iterator[Any]:
    """A headless Chromium (Selenium's `webdriver.Chrome`) of that window size."""
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    assert webdriver is not None
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"):
        options.add_argument(flag)
    options.add_argument(f"--window-size={width},{height}")
    driver = webdriver.Chrome(service=Service(executable_path=str(DRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
