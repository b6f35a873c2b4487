"""The skills API of the UI, mounted under /api: list and inspect skills, add or remove a user skill file, try one.

GET    /api/v1/skills                         every skill (builtin, plugin, user) and the problems loading them
GET    /api/v1/skills/{name}                  one skill: description, source, parameters schema
POST   /api/v1/skills                         add a skill file (multipart: `file`, `overwrite`), as `skills add`
DELETE /api/v1/skills/{name}                  delete a user skill's file (or a broken file), as `skills remove`
POST   /api/v1/skills/{name}/run              call it, as `skills run`: {"arguments": {...}} → {"result": ...}
GET    /api/v1/skills/tries/{id}/files/{name} a file a try wrote (a chart, a picture)

The skills layer does the work (`load_skills`, `add_skill_file`, `remove_skill`, `Skill.call`); this module maps its
errors to OpenAI-style bodies. Adding a file imports it and trying a skill runs it: the user's own code, or a
builtin that may go to the network (behind its address guard), exactly as the CLI would, behind the UI's guard.
A try runs in a worker thread with a timeout and its own work folder, so the files it writes can be shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import UploadFile

from autoqwen.local_llm.api_errors import APIError
from autoqwen.paths import data_dir, use_work_dir
from autoqwen.skills import (
    MissingSecret,
    Registration,
    SkillArgumentError,
    SkillClash,
    SkillError,
    SkillExists,
    SkillNotFound,
    SkillNotRemovable,
    SkillRegistry,
    add_skill_file,
    remove_skill,
)
from autoqwen.ui.files import IMAGE_TYPES, FileRefused, file_response, open_inside
from autoqwen.ui.pages import Pages
from autoqwen.ui.skills_pages import MAX_UPLOAD_BYTES, SkillInfo, SkillList, load_registry, problem_info, skill_info
from autoqwen.ui.uploads import check_length, form_flag

__all__ = [
    "MAX_RUNNING_TRIES",
    "MAX_UPLOAD_BYTES",
    "SkillFileInfo",
    "TryRequest",
    "TryResult",
    "router",
    "tries_dir",
]

MAX_RUNNING_TRIES = 4  # a try that timed out still holds its slot until it returns
_KEPT_TRIES = 20  # newest try folders kept (with their files); older ones are deleted
_FILE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}\.py")
_TRY_ID = re.compile(r"[0-9a-f]{32}")
_OUTPUT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}")


class SkillFileInfo(BaseModel):
    """What adding or removing a skill file did."""

    file: str
    path: str
    skills: list[str]
    replaced: bool = False


class TryRequest(BaseModel):
    """The arguments of a try (checked against the skill's schema) and how long to wait for it."""

    model_config = ConfigDict(extra="forbid")
    arguments: dict[str, Any] = Field(default_factory=dict)
    timeout_s: float = Field(default=60.0, gt=0, le=600, description="seconds to wait for the skill")


class TryFile(BaseModel):
    """A file the try wrote to its work folder."""

    name: str
    url: str
    bytes: int
    image: bool


class TryResult(BaseModel):
    """What the skill returned (text, or JSON), the time it took, and the files it wrote."""

    skill: str
    result: Any
    seconds: float
    files: list[TryFile]


def tries_dir() -> Path:
    """Where tries write their files: `<data dir>/skill-tries/<id>/`."""
    return data_dir() / "skill-tries"


def router(pages: Pages) -> APIRouter:
    """The /v1/skills routes (the app mounts them under /api)."""
    routes = APIRouter(prefix="/v1", tags=["ui: skills"])
    slots = threading.BoundedSemaphore(MAX_RUNNING_TRIES)

    @routes.get("/skills", summary="Every skill and the problems loading them")
    async def list_all() -> SkillList:
        found = await load_registry()
        return SkillList(data=[skill_info(e) for e in found], problems=[problem_info(p) for p in found.problems])

    @routes.get("/skills/{name}", summary="One skill and its parameters schema")
    async def get_one(name: str) -> SkillInfo:
        return skill_info(_registration(await load_registry(), name))

    @routes.post(
        "/skills",
        status_code=201,
        summary="Add a skill file (as `autoqwen skills add`)",
        openapi_extra={"requestBody": _UPLOAD_DOC},
        responses={200: {"description": "replaced an existing file (overwrite)"}},
    )
    async def add(request: Request, response: Response) -> SkillFileInfo:
        name, data, overwrite = await _upload(request)
        change = await asyncio.to_thread(_add_file, name, data, overwrite)
        response.status_code = 200 if change.replaced else 201
        return change

    @routes.delete("/skills/{name}", summary="Remove a user skill's file (as `autoqwen skills remove`)")
    async def remove(name: str) -> SkillFileInfo:
        try:
            change = await asyncio.to_thread(remove_skill, name)
        except SkillNotRemovable as exc:
            raise APIError(403, str(exc), type="permission_error", param="name", code="skill_not_removable") from None
        except SkillNotFound as exc:
            raise _not_found(exc) from None
        return SkillFileInfo(file=change.path.name, path=str(change.path), skills=change.skills)

    @routes.post("/skills/{name}/run", summary="Call a skill (as `autoqwen skills run`)")
    async def run(name: str, body: TryRequest) -> TryResult:
        item = _registration(await load_registry(), name).skill
        try:
            item.validate(body.arguments)
        except SkillArgumentError as exc:
            raise _bad_arguments(exc) from None
        if not slots.acquire(blocking=False):
            raise APIError(
                503,
                f"{MAX_RUNNING_TRIES} tries are still running (a try that timed out runs on until it returns); "
                "wait for one to end",
                type="server_busy",
                code="too_many_tries",
                headers={"Retry-After": "5"},
            )
        try:
            folder = _new_try_folder()
        except BaseException:
            slots.release()
            raise
        started = time.monotonic()

        def work() -> Any:
            with use_work_dir(folder):
                return item.call(body.arguments)

        try:
            ok, value = await _in_thread(work, body.timeout_s, release=slots.release, name=f"skill-try-{name}")
        except TimeoutError:
            _tidy(folder)
            raise APIError(
                504,
                f"skill {name!r} did not finish within {body.timeout_s:g} s (it goes on in the background until it "
                "returns: a running skill cannot be stopped from outside)",
                type="timeout_error",
                code="skill_timeout",
            ) from None
        _tidy(folder)
        if not ok:
            raise _skill_failure(name, value)
        seconds = round(time.monotonic() - started, 3)
        return TryResult(skill=name, result=_jsonable(value), seconds=seconds, files=_files(folder))

    @routes.get("/skills/tries/{try_id}/files/{file_name}", summary="A file a try wrote")
    async def try_file(try_id: str, file_name: str) -> StreamingResponse:
        try:
            if not (_TRY_ID.fullmatch(try_id) and _OUTPUT_NAME.fullmatch(file_name)):
                raise FileRefused(file_name)
            opened = open_inside(tries_dir() / try_id, file_name)
        except FileRefused:
            raise APIError(404, "no such file", type="invalid_request_error", code="not_found") from None
        return file_response(opened)  # pictures inline; anything else (HTML, SVG, scripts) a download

    return routes


_UPLOAD_DOC: dict[str, Any] = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {"type": "string", "format": "binary", "description": "a NAME.py skill file"},
                    "overwrite": {"type": "boolean", "description": "replace a user skill file of the same name"},
                },
            }
        }
    },
}


def _registration(registry: SkillRegistry, name: str) -> Registration:
    try:
        return registry.registration(name)
    except SkillNotFound as exc:
        raise _not_found(exc) from None


def _not_found(exc: SkillNotFound) -> APIError:
    return APIError(404, str(exc), type="invalid_request_error", param="name", code="skill_not_found")


def _skill_failure(name: str, exc: BaseException) -> APIError:
    """What a try that raised reports: a missing secret or bad arguments as 400, the skill's own failure as 500."""
    if isinstance(exc, MissingSecret):
        return APIError(400, str(exc), type="invalid_request_error", code="missing_secret")
    if isinstance(exc, SkillArgumentError):
        return _bad_arguments(exc)
    message = f"skill {name!r} failed: {type(exc).__name__}: {exc}"
    return APIError(500, message, type="skill_error", code="skill_failed")


def _bad_arguments(exc: SkillArgumentError) -> APIError:
    """400 naming the first bad argument (`arguments.NAME`), from the skills layer's validation error."""
    param = "arguments"
    cause = exc.__cause__
    if isinstance(cause, ValidationError) and cause.errors():
        loc = cause.errors()[0]["loc"]
        param = f"arguments.{loc[0]}" if loc else param  # the argument, not the path inside its union types
    return APIError(400, str(exc), type="invalid_request_error", param=param, code="invalid_arguments")


async def _upload(request: Request) -> tuple[str, bytes, bool]:
    """The uploaded file's name and bytes and the overwrite flag, size-checked before anything is read."""
    check_length(request, MAX_UPLOAD_BYTES + 16_384, what="the skill file", too_large=_too_large)
    try:
        async with request.form(max_files=1, max_fields=4) as form:
            upload = form.get("file")
            overwrite = form_flag(form.get("overwrite"))
            if not isinstance(upload, UploadFile):
                raise APIError(
                    400,
                    "send the skill file as the form field `file`",
                    type="invalid_request_error",
                    param="file",
                    code="missing_file",
                )
            data = await upload.read(MAX_UPLOAD_BYTES + 1)
            filename = Path(upload.filename or "").name
    except (AssertionError, ValueError) as exc:  # not multipart, or python-multipart refused it
        raise APIError(400, f"the upload is not a valid form: {exc}", type="invalid_request_error") from None
    if len(data) > MAX_UPLOAD_BYTES:
        raise _too_large()
    if not _FILE_NAME.fullmatch(filename):
        raise APIError(
            400,
            f"{filename[:100]!r} is not a skill file name: NAME.py, with letters, digits, '_' and '-' in NAME",
            type="invalid_request_error",
            param="file",
            code="invalid_skill_file",
        )
    return filename, data, overwrite


def _too_large() -> APIError:
    return APIError(
        413,
        f"a skill file may hold at most {MAX_UPLOAD_BYTES} bytes",
        type="invalid_request_error",
        param="file",
        code="file_too_large",
    )


def _add_file(name: str, data: bytes, overwrite: bool) -> SkillFileInfo:
    """`add_skill_file` on a copy of the upload, with its errors as API errors naming the file, not the copy."""
    with tempfile.TemporaryDirectory(prefix="autoqwen-upload-") as scratch:
        source = Path(scratch) / name
        source.write_bytes(data)

        def said(exc: Exception) -> str:
            return str(exc).replace(str(source), name).replace(scratch, "")

        try:
            change = add_skill_file(source, force=overwrite)
        except SkillExists as exc:
            message = (
                f"a user skill file named {name!r} already exists; tick “overwrite” (overwrite=true) to replace it"
            )
            raise APIError(409, message, type="invalid_request_error", param="overwrite", code="skill_exists") from exc
        except SkillClash as exc:
            raise APIError(409, said(exc), type="invalid_request_error", param="file", code="skill_clash") from exc
        except SkillError as exc:  # does not import, defines no skill, a schema that does not build
            raise APIError(
                400, said(exc), type="invalid_request_error", param="file", code="invalid_skill_file"
            ) from exc
    return SkillFileInfo(file=change.path.name, path=str(change.path), skills=change.skills, replaced=change.replaced)


async def _in_thread(
    work: Callable[[], Any], timeout: float, *, release: Callable[[], None], name: str
) -> tuple[bool, Any]:
    """Run `work` in a daemon thread and wait up to `timeout` s: (True, what it returned) or (False, what it raised).

    TimeoutError leaves it running (a thread cannot be stopped); `release` is called whenever it ends.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[tuple[bool, Any]] = loop.create_future()

    def settle(outcome: tuple[bool, Any]) -> None:
        if not future.done():
            future.set_result(outcome)

    def run() -> None:
        try:
            outcome: tuple[bool, Any] = (True, work())
        except BaseException as exc:  # the skill's own failure, SystemExit included: reported, not raised
            outcome = (False, exc)
        finally:
            release()
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(settle, outcome)

    threading.Thread(target=run, name=name, daemon=True).start()
    return await asyncio.wait_for(future, timeout)


def _new_try_folder() -> Path:
    root = tries_dir()
    root.mkdir(parents=True, exist_ok=True)
    old = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in old[_KEPT_TRIES - 1 :]:
        shutil.rmtree(stale, ignore_errors=True)
    folder = root / uuid.uuid4().hex
    folder.mkdir()
    return folder


def _tidy(folder: Path) -> None:
    """Drop a try's folder when it wrote nothing."""
    with contextlib.suppress(OSError):
        folder.rmdir()


def _files(folder: Path) -> list[TryFile]:
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.iterdir()):
        if path.is_file() and not path.is_symlink() and _OUTPUT_NAME.fullmatch(path.name):
            url = f"/api/v1/skills/tries/{folder.name}/files/{path.name}"
            image = path.suffix.lower() in IMAGE_TYPES
            found.append(TryFile(name=path.name, url=url, bytes=path.stat().st_size, image=image))
    return found


def _jsonable(value: Any) -> Any:
    """What a skill returned, as JSON: text as is, anything else through json (unknown types as their str)."""
    if isinstance(value, str):
        return value
    return json.loads(json.dumps(value, default=str))
