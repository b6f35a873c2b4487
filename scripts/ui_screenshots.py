"""Screenshots of every page of the web UI, from the real app on the bundled model, for docs/ (docs/ui.md).

Starts `autoqwen ui --model bundled` on a free port with a fresh data dir, drives it in headless Chromium (Debian's
chromium + chromium-driver, selenium: `make browser`, `pip install -e .[dev]`): runs write-review (2 turns, seed 0)
in the playground, types a mistake into a new workflow, exports the session to the gallery, and saves one PNG per
page (colours reduced to keep the files small).

    python scripts/ui_screenshots.py [--out docs/images]
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from ui_browser import chrome  # noqa: E402  (the tests' headless Chromium)

BROKEN = """\
name: my-workflow
agents:
  - {name: helper, system_message: Hi., tempo: 1}
team: {max_turns: 0}
task: Hi.
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"autoqwen ui exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer in {timeout} s")


def shoot(driver: Any, out: Path, name: str) -> None:
    """Save the whole page (up to 2400 px tall) as out/ui-NAME.png, in at most 256 colours."""
    height = min(2400, int(driver.execute_script("return document.documentElement.scrollHeight")))
    chrome_height = int(driver.execute_script("return window.outerHeight - window.innerHeight"))
    driver.set_window_size(1280, max(800, height + chrome_height))
    time.sleep(0.3)
    image = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    image.quantize(256, method=Image.Quantize.MEDIANCUT).save(out / f"ui-{name}.png", optimize=True)
    driver.set_window_size(1280, 800)
    print(f"{out / f'ui-{name}.png'}: {image.width}x{image.height}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images", help="folder for the PNG files")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "AUTOQWEN_HOME": tempfile.mkdtemp(prefix="autoqwen-shots-"), "TQDM_DISABLE": "1"}
    command = [sys.executable, "-m", "autoqwen", "ui", "--model", "bundled", "--port", str(port)]
    ui = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_up(f"{url}/workflows", ui)
        with chrome(1280, 800) as driver:
            wait = WebDriverWait(driver, 600)
            driver.get(f"{url}/playground?workflow=write-review")
            for field, value in (("max-turns", "2"), ("seed", "0")):
                box = driver.find_element(By.ID, field)
                box.clear()
                box.send_keys(value)
            driver.find_element(By.ID, "run").click()
            wait.until(lambda d: d.find_element(By.ID, "summary").is_displayed())
            shoot(driver, args.out, "playground")

            driver.get(f"{url}/workflows")
            shoot(driver, args.out, "workflows")
            driver.get(f"{url}/workflows/new")
            text = driver.find_element(By.ID, "yaml")  # set whole (typing would add the editor's indents)
            script = "arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input'))"
            driver.execute_script(script, text, BROKEN)
            wait.until(lambda d: "tempo" in d.find_element(By.ID, "problems").text)
            shoot(driver, args.out, "editor")

            driver.get(f"{url}/sessions")
            shoot(driver, args.out, "sessions")
            driver.find_element(By.CSS_SELECTOR, "#sessions tbody tr a").click()
            wait.until(lambda d: "/sessions/" in d.current_url)
            driver.find_element(By.ID, "export").click()
            wait.until(lambda d: d.find_element(By.ID, "notice").text)
            shoot(driver, args.out, "session")
            driver.get(f"{url}/gallery")
            shoot(driver, args.out, "gallery")

            driver.get(f"{url}/skills")
            shoot(driver, args.out, "skills")
            driver.get(f"{url}/model")
            wait.until(lambda d: "ready" in d.find_element(By.ID, "model-status").text)
            time.sleep(1)
            shoot(driver, args.out, "model")
    finally:
        ui.terminate()
        ui.wait(30)


if __name__ == "__main__":
    main()
