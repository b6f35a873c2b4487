"""The `generate_image` skill: pictures from an OpenAI-compatible images endpoint, saved in the session's files folder.

AUTOQWEN_IMAGES_BASE_URL=https://api.openai.com/v1   # POST {base}/images/generations; unset: the skill says so
AUTOQWEN_IMAGES_API_KEY_ENV=OPENAI_API_KEY           # the variable that holds the key (sent as a Bearer token)
AUTOQWEN_IMAGES_MODEL=dall-e-3                       # sent as `model` when set; else the server's default
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import os
import re
import time
import warnings
from pathlib import Path
from typing import Annotated, Any

import httpx
from pydantic import Field

from autoqwen.addresses import AddressRefused
from autoqwen.paths import current_work_dir
from autoqwen.skills._schema import Injected
from autoqwen.skills._skill import skill
from autoqwen.skills.builtins._http import BodyRefused, guarded_client, read_capped

__all__ = ["DEFAULT_TIMEOUT", "MAX_IMAGE_BYTES", "generate_image"]

DEFAULT_TIMEOUT = 120.0  # a local diffusion model may take a minute per image
MAX_IMAGE_BYTES = 20_000_000
USER_AGENT = "autoqwen-generate-image/0.1"
_SIZE = r"^(auto|[1-9][0-9]{1,3}x[1-9][0-9]{1,3})$"
_FORMATS = {"PNG": ".png", "JPEG": ".jpg"}


class _ImageProblem(Exception):
    """A failure the model can act on; generate_image returns its message instead of raising."""


def _settings() -> tuple[str | None, str | None, str | None]:
    # Read at each call (like AUTOQWEN_ARXIV_URL), so a session or a test may change them.
    base = os.environ.get("AUTOQWEN_IMAGES_BASE_URL", "").strip().rstrip("/") or None
    key_env = os.environ.get("AUTOQWEN_IMAGES_API_KEY_ENV", "").strip()
    key = os.environ.get(key_env, "").strip() if key_env else None
    if key_env and not key:
        raise _ImageProblem(f"AUTOQWEN_IMAGES_API_KEY_ENV names {key_env}, but {key_env} is not set")
    return base, key, os.environ.get("AUTOQWEN_IMAGES_MODEL", "").strip() or None


@skill
def generate_image(
    prompt: Annotated[str, "What the picture shows, in detail", Field(min_length=1, max_length=4000)],
    size: Annotated[str, "WIDTHxHEIGHT in pixels, e.g. 1024x1024, 1792x1024, or auto", Field(pattern=_SIZE)] = (
        "1024x1024"
    ),
    n: Annotated[int, "How many pictures", Field(ge=1, le=4)] = 1,
    *,
    client: Injected[httpx.Client | None] = None,
    timeout: Injected[float] = DEFAULT_TIMEOUT,
    max_image_bytes: Injected[int] = MAX_IMAGE_BYTES,
) -> str:
    """Generate pictures from a text prompt, save them in the session's files folder, return their file names."""
    try:
        base, key, model = _settings()
        if base is None:
            return (
                "Error: no image endpoint is configured; set AUTOQWEN_IMAGES_BASE_URL to an OpenAI-compatible "
                "server (and AUTOQWEN_IMAGES_API_KEY_ENV to the variable holding its key) to generate images."
            )
        if not re.fullmatch(_SIZE, size) or any(not 64 <= int(d) <= 4096 for d in re.findall(r"\d+", size)):
            return f"Error: size {size!r} is not WIDTHxHEIGHT with each side 64-4096 (e.g. 1024x1024) or 'auto'."
        # No response_format: gpt-image models reject it, and every server answers with b64_json or url.
        payload = {"prompt": prompt, "n": n, "size": size} | ({"model": model} if model else {})
        headers = {"User-Agent": USER_AGENT} | ({"Authorization": f"Bearer {key}"} if key else {})
        items = _request(f"{base}/images/generations", payload, headers, client, timeout, cap=max_image_bytes * n)
        deadline = time.monotonic() + timeout  # for the downloads of url answers, all together
        images = [_image(item, deadline=deadline, cap=max_image_bytes) for item in items]
    except _ImageProblem as exc:
        return f"Error: {exc}"
    folder = current_work_dir()
    names = []
    for data, suffix in images:
        path = _free_path(folder, prompt, suffix)
        path.write_bytes(data)
        names.append(path.name)
    return f"Saved {len(names)} image{'s' if len(names) > 1 else ''} ({size}) to {folder}: {', '.join(names)}"


def _request(
    url: str, payload: dict[str, Any], headers: dict[str, str], client: httpx.Client | None, timeout: float, cap: int
) -> list[dict[str, Any]]:
    http = client or httpx.Client()  # the endpoint is the user's own configuration: trusted, proxies apply
    limit = cap * 4 // 3 + 65_536  # the images in base64, plus the JSON around them
    try:
        with http.stream("POST", url, json=payload, headers=headers, timeout=timeout) as response:
            body, truncated = read_capped(response, max_bytes=limit, deadline=time.monotonic() + timeout)
            status = response.status_code
    except httpx.TimeoutException:
        raise _ImageProblem(f"the image endpoint did not answer within {timeout:g} s; try again later") from None
    except (httpx.HTTPError, BodyRefused) as exc:
        raise _ImageProblem(f"could not reach the image endpoint {url} ({type(exc).__name__}: {exc})") from None
    finally:
        if client is None:
            http.close()
    if truncated:
        raise _ImageProblem(
            f"the image endpoint's answer is larger than {limit} bytes; ask for fewer or smaller images"
        )
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if status >= 400:
        raise _ImageProblem(f"the image endpoint answered HTTP {status}: {_error_message(answer, body)}")
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, list) or not data or not all(isinstance(item, dict) for item in data):
        raise _ImageProblem("the image endpoint's answer has no images (no `data` list in its JSON)")
    return data[: payload["n"]]


def _error_message(answer: object, body: bytes) -> str:
    error = answer.get("error", answer.get("detail")) if isinstance(answer, dict) else None
    if isinstance(error, dict):
        error = error.get("message")
    text = str(error) if error else body.decode("utf-8", errors="replace")
    text = " ".join(text.split()) or "no message"
    return text if len(text) <= 300 else text[:300] + " …"


def _image(item: dict[str, Any], *, deadline: float, cap: int) -> tuple[bytes, str]:
    if isinstance(item.get("b64_json"), str):
        try:
            data = base64.b64decode(item["b64_json"], validate=True)
        except (binascii.Error, ValueError):
            raise _ImageProblem("the image endpoint sent b64_json that is not valid base64") from None
        if len(data) > cap:
            raise _ImageProblem(f"an image is larger than {cap} bytes")
    elif isinstance(item.get("url"), str):
        data = _download(item["url"], deadline=deadline, cap=cap)
    else:
        raise _ImageProblem("the image endpoint sent an image with neither b64_json nor url")
    return data, _suffix(data)


def _download(url: str, *, deadline: float, cap: int) -> bytes:
    """GET an image URL from the endpoint's answer through the guarded client: public addresses only."""
    if httpx.URL(url).scheme not in ("http", "https"):
        raise _ImageProblem(f"the image endpoint sent an image URL that is not http(s): {url[:200]!r}")
    http = guarded_client(deadline=deadline, user_agent=USER_AGENT)
    http.max_redirects = 5
    try:
        with http.stream("GET", url, follow_redirects=True, timeout=max(deadline - time.monotonic(), 0.001)) as got:
            if got.status_code >= 400:
                raise _ImageProblem(f"downloading the image {url} answered HTTP {got.status_code}")
            data, truncated = read_capped(got, max_bytes=cap, deadline=deadline)
    except httpx.TimeoutException:
        raise _ImageProblem(f"downloading the image {url} timed out") from None
    except AddressRefused as exc:
        raise _ImageProblem(f"refused to download the image {url}: {exc}") from None
    except (httpx.HTTPError, BodyRefused) as exc:
        raise _ImageProblem(f"could not download the image {url} ({type(exc).__name__}: {exc})") from None
    finally:
        http.close()
    if truncated:
        raise _ImageProblem(f"the image at {url} is larger than {cap} bytes")
    return data


def _suffix(data: bytes) -> str:
    """The file suffix of a PNG or JPEG image; anything else (or a broken image) is an _ImageProblem."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=list(_FORMATS)) as picture:
                picture.verify()
                return _FORMATS[str(picture.format)]
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise _ImageProblem(
            f"the image endpoint sent something that is not a PNG or JPEG image ({len(data)} bytes)"
        ) from None


def _free_path(folder: Path, prompt: str, suffix: str) -> Path:
    stem = re.sub(r"[^0-9A-Za-z_-]+", "-", prompt[:40]).strip("-").lower() or "image"
    path, number = folder / f"{stem}{suffix}", 2
    while path.exists():
        path, number = folder / f"{stem}-{number}{suffix}", number + 1
    return path
