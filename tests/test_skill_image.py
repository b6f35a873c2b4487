"""generate_image against a fake OpenAI-compatible images endpoint on loopback (AUTOQWEN_IMAGES_BASE_URL)."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from skill_sites import send

from autoqwen.skills import SkillArgumentError, load_skills, use_work_dir
from autoqwen.skills.builtins.image import generate_image


def picture(fmt: str, color: str = "red") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(out, format=fmt)
    return out.getvalue()


PNG, JPEG = picture("PNG"), picture("JPEG", "blue")


class FakeImages:
    """POST /v1/images/generations answers `answer` with `status` after `delay` s; GET /files/NAME serves `files`."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, Any], str | None]] = []
        self.status = 200
        self.answer: bytes = b""
        self.delay = 0.0
        self.files: dict[str, bytes] = {}
        self.base = ""

    def reply(self, *items: dict[str, str]) -> None:
        self.answer = json.dumps({"created": 1, "data": list(items)}).encode()


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeImages]:
    state = FakeImages()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.requests.append((json.loads(body), self.headers.get("Authorization")))
            time.sleep(state.delay)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the skill gave up first (a timeout)
                send(self, state.status, state.answer, "application/json")

        def do_GET(self) -> None:
            if self.path.startswith("/redirect/"):  # /redirect/http://... answers 302 to that address
                return send(self, 302, b"", "text/plain", Location=self.path.removeprefix("/redirect/"))
            data = state.files.get(self.path.removeprefix("/files/"))
            send(self, 200 if data else 404, data or b"gone", "image/png" if data else "text/plain")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("AUTOQWEN_IMAGES_BASE_URL", f"{state.base}/v1/")
    for name in ("AUTOQWEN_IMAGES_API_KEY_ENV", "AUTOQWEN_IMAGES_MODEL", "AUTOQWEN_SESSION_DIR"):
        monkeypatch.delenv(name, raising=False)
    try:
        with use_work_dir(tmp_path / "session"):
            yield state
    finally:
        server.shutdown()
        server.server_close()


def saved(reply: str, folder: Path) -> list[Path]:
    assert reply.startswith("Saved ") and f" to {folder}: " in reply, reply
    return [folder / name for name in reply.rsplit(": ", 1)[1].split(", ")]


def test_base64_images_are_saved_in_the_session_folder(
    fake: FakeImages, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTOQWEN_IMAGES_API_KEY_ENV", "MY_IMAGES_KEY")
    monkeypatch.setenv("MY_IMAGES_KEY", "sk-test")
    monkeypatch.setenv("AUTOQWEN_IMAGES_MODEL", "sd-turbo")
    fake.reply({"b64_json": base64.b64encode(PNG).decode()}, {"b64_json": base64.b64encode(JPEG).decode()})
    reply = generate_image("A red fox, in snow!", size="512x512", n=2)
    first, second = saved(reply, tmp_path / "session")
    assert reply.startswith("Saved 2 images (512x512) to ")
    assert (first.name, second.name) == ("a-red-fox-in-snow.png", "a-red-fox-in-snow.jpg")
    assert (first.read_bytes(), second.read_bytes()) == (PNG, JPEG)
    payload, auth = fake.requests[0]
    assert payload == {"prompt": "A red fox, in snow!", "n": 2, "size": "512x512", "model": "sd-turbo"}
    assert auth == "Bearer sk-test" and "sk-test" not in reply
    again = saved(generate_image("A red fox, in snow!", size="512x512"), tmp_path / "session")
    assert [p.name for p in again] == ["a-red-fox-in-snow-2.png"]  # never overwritten


def test_url_images_are_downloaded_and_checked(fake: FakeImages, tmp_path: Path) -> None:
    fake.files["fox.jpg"] = JPEG
    fake.reply({"url": f"{fake.base}/files/fox.jpg", "revised_prompt": "a fox"})
    (path,) = saved(generate_image("fox"), tmp_path / "session")
    assert path.name == "fox.jpg" and path.read_bytes() == JPEG
    assert fake.requests[0] == ({"prompt": "fox", "n": 1, "size": "1024x1024"}, None)
    fake.reply({"url": f"{fake.base}/files/missing.png"})
    assert generate_image("fox") == f"Error: downloading the image {fake.base}/files/missing.png answered HTTP 404"
    fake.files["page.png"] = b"<html>not a picture</html>"
    fake.reply({"url": f"{fake.base}/files/page.png"})
    assert generate_image("fox").startswith("Error: the image endpoint sent something that is not a PNG or JPEG")


@pytest.mark.parametrize(
    "url",
    ["http://169.254.169.254/latest/meta-data/", "http://metadata.google.internal/x.png", "http://10.0.0.7/a.png"],
)
def test_url_images_from_internal_addresses_are_refused(fake: FakeImages, tmp_path: Path, url: str) -> None:
    fake.reply({"url": url})
    assert generate_image("fox").startswith(f"Error: refused to download the image {url}: ")
    fake.reply({"url": f"{fake.base}/redirect/{url}"})  # a public-looking URL that redirects inside
    assert generate_image("fox").startswith(f"Error: refused to download the image {fake.base}/redirect/{url}: ")
    assert not (tmp_path / "session").exists()  # nothing written


def test_error_responses_are_returned_with_the_endpoint_message(fake: FakeImages) -> None:
    fake.status = 400
    fake.answer = b'{"error": {"message": "Your request was rejected by the safety system.", "type": "x"}}'
    reply = generate_image("fox")
    assert reply == "Error: the image endpoint answered HTTP 400: Your request was rejected by the safety system."
    fake.status, fake.answer = 503, b"model is loading\n\x1b[2J" + b"x" * 1000
    reply = generate_image("fox")
    assert reply.startswith("Error: the image endpoint answered HTTP 503: model is loading") and len(reply) < 400
    fake.status, fake.answer = 200, b'{"data": []}'
    assert generate_image("fox") == "Error: the image endpoint's answer has no images (no `data` list in its JSON)"
    fake.reply({"b64_json": "not base64!"})
    assert generate_image("fox") == "Error: the image endpoint sent b64_json that is not valid base64"
    fake.reply({"b64_json": base64.b64encode(PNG).decode()})
    assert generate_image("fox", max_image_bytes=50) == "Error: an image is larger than 50 bytes"
    fake.reply({"b64_json": base64.b64encode(bytes(200_000)).decode()})
    reply = generate_image("fox", max_image_bytes=50_000)
    assert reply.startswith("Error: the image endpoint's answer is larger than 132202 bytes; ask for fewer")


def test_a_slow_endpoint_times_out_as_a_clear_result(fake: FakeImages) -> None:
    fake.delay = 1.5
    fake.reply({"b64_json": base64.b64encode(PNG).decode()})
    started = time.monotonic()
    assert (
        generate_image("fox", timeout=0.3) == "Error: the image endpoint did not answer within 0.3 s; try again later"
    )
    assert time.monotonic() - started < 1.2


def test_without_an_endpoint_the_model_is_told_in_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("AUTOQWEN_IMAGES_BASE_URL", raising=False)
    reply = load_skills().get("generate_image").call({"prompt": "fox"})
    assert (
        reply.startswith("Error: no image endpoint is configured; set AUTOQWEN_IMAGES_BASE_URL") and "\n" not in reply
    )
    monkeypatch.setenv("AUTOQWEN_IMAGES_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("AUTOQWEN_IMAGES_API_KEY_ENV", "UNSET_IMAGES_KEY")
    monkeypatch.delenv("UNSET_IMAGES_KEY", raising=False)
    assert (
        generate_image("fox")
        == "Error: AUTOQWEN_IMAGES_API_KEY_ENV names UNSET_IMAGES_KEY, but UNSET_IMAGES_KEY is not set"
    )


def test_size_and_n_are_bounded(fake: FakeImages) -> None:
    tool = load_skills().get("generate_image")
    for bad in ({"prompt": "fox", "n": 9}, {"prompt": "fox", "size": "huge"}, {"prompt": ""}):
        with pytest.raises(SkillArgumentError):
            tool.call(bad)
    assert generate_image("fox", size="10x10").startswith("Error: size '10x10' is not WIDTHxHEIGHT")
    assert generate_image("fox", size="big").startswith("Error: size 'big'")
    assert not fake.requests


def test_the_registry_lists_it_as_a_builtin_with_its_schema() -> None:
    registry = load_skills()
    assert "generate_image" in registry.names()
    assert registry.registration("generate_image").source.origin == "autoqwen.skills.builtins.image"
    schema = registry.get("generate_image").parameters
    assert set(schema["properties"]) == {"prompt", "size", "n"} and schema["required"] == ["prompt"]
    assert schema["properties"]["n"]["maximum"] == 4
