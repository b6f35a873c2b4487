"""The workflow editor's API, mounted under /api: check, read, save, copy and delete workflow YAML files.

POST   /api/v1/workflows/validate          {"yaml", "name"?} → {"ok", "errors": [{line, field, message}], "spec"}
GET    /api/v1/workflows/{name}/yaml       the file's text (text/plain), with its ETag
PUT    /api/v1/workflows/{name}            {"yaml", "overwrite"?} → save to the user workflows folder, if valid
POST   /api/v1/workflows/{name}/duplicate  {"new_name"} → a copy in the user folder, `name:` rewritten
DELETE /api/v1/workflows/{name}            delete a user workflow's file
POST   /api/v1/workflows/parse-form        {"yaml"} → {"form"}: the form view's fields
POST   /api/v1/workflows/form              {"yaml", "form"} → {"yaml", "form"}: the YAML with the form's changes

Validation is the loader's (`check_workflow_text`: the rules and messages of `autoqwen workflows validate`).
Builtin workflows are never written: saving under a builtin's name is 409 `builtin_workflow` (duplicate it
instead), deleting one 403. A save never replaces an existing file unless asked to (`"overwrite": true`, or an
`If-Match` naming the file's ETag, which also refuses with 412 a file changed since it was read); the file is
written to a temporary file and moved into place.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import tempfile
import threading
from contextlib import suppress
from pathlib import Path
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ValidationError

from autoqwen.local_llm.api_errors import APIError, validation_error
from autoqwen.local_llm.protocol import ErrorResponse
from autoqwen.paths import user_workflows_dir
from autoqwen.skills import load_skills
from autoqwen.ui.editor_models import (
    DuplicateBody,
    FormAnswer,
    FormBody,
    InvalidWorkflow,
    Problem,
    SaveBody,
    SavedWorkflow,
    SpecSummary,
    Validation,
    YamlBody,
)
from autoqwen.ui.pages import Pages
from autoqwen.ui.workflow_form import apply_form, read_form, renamed
from autoqwen.workflows.catalog import BUILTIN_DIR, list_workflows
from autoqwen.workflows.errors import SpecError
from autoqwen.workflows.loader import MAX_YAML_BYTES, check_workflow_text, read_bounded, read_yaml_text
from autoqwen.workflows.spec import WorkflowSpec

__all__ = ["NAME_PATTERN", "etag_of", "router"]

NAME_PATTERN = r"[a-z0-9][a-z0-9_-]{0,63}"
_NAME = re.compile(NAME_PATTERN)
_RESERVED = frozenset({"new"})  # /workflows/new is the editor's page for a new workflow
_MAX_BODY = 8 * MAX_YAML_BYTES  # JSON escapes may grow the YAML up to 6 times; the YAML itself is checked after
_INVALID = "invalid_request_error"
M = TypeVar("M", bound=BaseModel)


def router(pages: Pages) -> APIRouter:
    """The editor's /v1/workflows routes (the app mounts them under /api)."""
    routes = APIRouter(prefix="/v1/workflows", tags=["ui: workflow editor"])
    lock = threading.Lock()  # one check-and-write at a time, so two saves cannot both see "no file yet"

    @routes.post("/validate", summary="Check a workflow's YAML", openapi_extra=_body_doc(YamlBody))
    async def validate(request: Request) -> Validation:
        body = await _body(request, YamlBody)
        name = _name(body.name, "name") if body.name is not None else None
        return await asyncio.to_thread(_validation, _yaml(body.yaml), name)

    @routes.post(
        "/parse-form", summary="The form view's fields of a workflow's YAML", openapi_extra=_body_doc(YamlBody)
    )
    async def parse_form(request: Request) -> FormAnswer:
        body, where = await _body(request, YamlBody), _where(None)
        try:
            return FormAnswer(form=read_form(_yaml(body.yaml), path=where))
        except SpecError as exc:
            raise _Invalid([_problem(exc, where)]) from None

    @routes.post("/form", summary="A workflow's YAML with the form's changes", openapi_extra=_body_doc(FormBody))
    async def from_form(request: Request) -> FormAnswer:
        body, where = await _body(request, FormBody), _where(None)
        try:
            text = apply_form(_yaml(body.yaml), body.form, path=where)
            return FormAnswer(form=read_form(text, path=where), yaml=text)
        except SpecError as exc:
            raise _Invalid([_problem(exc, where)]) from None

    @routes.get("/{name}/yaml", summary="A workflow's YAML", response_class=PlainTextResponse)
    async def get_yaml(name: str) -> PlainTextResponse:
        path = _active(_name(name))
        raw = _read(path)
        headers = {"ETag": etag_of(raw), "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}
        return PlainTextResponse(raw.decode("utf-8", errors="replace"), headers=headers)

    @routes.put(
        "/{name}",
        response_model=SavedWorkflow,
        summary="Save a workflow to the user folder",
        openapi_extra=_body_doc(SaveBody),
    )
    async def save(request: Request, name: str) -> JSONResponse:
        name = _name(name)
        body = await _body(request, SaveBody)
        text, if_match = _yaml(body.yaml), request.headers.get("if-match")
        _refuse_builtin(name)
        result = await asyncio.to_thread(_validation, text, name)
        if not result.ok:
            raise _Invalid(result.errors)

        def write() -> SavedWorkflow:
            with lock:
                return _write(name, text, replace=body.overwrite or if_match is not None, if_match=if_match)

        saved = await asyncio.to_thread(write)
        return JSONResponse(saved.model_dump(), status_code=201 if saved.created else 200, headers=_tag(saved))

    @routes.post(
        "/{name}/duplicate",
        status_code=201,
        response_model=SavedWorkflow,
        summary="Copy a workflow",
        openapi_extra=_body_doc(DuplicateBody),
    )
    async def duplicate(request: Request, name: str) -> JSONResponse:
        source = _active(_name(name))
        new_name = _name((await _body(request, DuplicateBody)).new_name, "new_name")
        _refuse_builtin(new_name, "new_name")
        text = _read(source).decode("utf-8", errors="replace")
        try:
            read_yaml_text(text, path=source)  # safe to compose: no aliases, not too large
            copied = renamed(text, new_name)
        except SpecError as exc:
            raise APIError(400, f"cannot copy {name!r}: {exc}", type=_INVALID, code="workflow_invalid") from None

        def write() -> SavedWorkflow:
            with lock:
                return _write(new_name, copied, replace=False, if_match=None, param="new_name")

        saved = await asyncio.to_thread(write)
        return JSONResponse(saved.model_dump(), status_code=201, headers=_tag(saved))

    @routes.delete("/{name}", summary="Delete a user workflow's file")
    async def delete(request: Request, name: str) -> SavedWorkflow:
        path = user_workflows_dir() / f"{_name(name)}.yaml"
        with lock:
            if not path.is_file():
                _refuse_builtin(name, status=403, verb="deleted")
                raise _not_found(name)
            _check_match(path, request.headers.get("if-match"))
            path.unlink()
        return SavedWorkflow(name=name, path=str(path))

    return routes


def _validation(text: str, name: str | None) -> Validation:
    """The loader's verdict on `text` as the user workflow `name` (skills checked against those installed)."""
    where = _where(name)
    spec, problems = check_workflow_text(text, path=where, skills=load_skills(warn=False))
    errors = [_problem(exc, where) for exc in problems]
    if spec is not None and name is not None and spec.name != name:
        line = next((n for n, row in enumerate(text.splitlines(), 1) if re.match(r"name\s*:", row)), 1)
        message = f"the YAML says name: {spec.name}, but this is the workflow {name!r}; make them the same"
        errors.append(Problem(line=line, field="name", message=message))
    if errors:
        return Validation(ok=False, errors=errors)
    assert spec is not None
    return Validation(ok=True, errors=[], spec=_summary(spec), taken=_taken(spec.name))


def _summary(spec: WorkflowSpec) -> SpecSummary:
    return SpecSummary(
        name=spec.name,
        description=spec.description,
        agents=[agent.name for agent in spec.agents],
        team=spec.team.type,
        max_turns=spec.team.max_turns,
        skills=spec.skill_names(),
    )


def _problem(exc: SpecError, where: Path) -> Problem:
    """A loader error as the editor shows it: its line and field, and its message without `file:line: field: `.

    An error in an agent file (`ref:`) is about that file's lines: it keeps its whole message and no line."""
    if exc.path is not None and exc.path != where:
        return Problem(line=None, message=str(exc))
    message = str(exc).removeprefix(f"{where}:{exc.line}: ").removeprefix(f"{where}: ")
    if exc.field:
        message = message.removeprefix(f"{exc.field}: ")
    return Problem(line=exc.line, field=_field(exc.field), message=message)


def _field(loc: str | None) -> str | None:
    """The loader's `agents.1.system_message` as `agents[1].system_message`."""
    if not loc:
        return None
    return re.sub(r"\.(\d+)(?=\.|$)", r"[\1]", loc)


def _where(name: str | None) -> Path:
    """Where a workflow's text is (or would be) saved: the name its messages give and the folder of its refs."""
    return user_workflows_dir() / f"{name or 'workflow'}.yaml"


def _taken(name: str) -> str | None:
    if (BUILTIN_DIR / f"{name}.yaml").is_file():
        return "builtin"
    return "user" if (user_workflows_dir() / f"{name}.yaml").is_file() else None


def _name(name: str, param: str = "name") -> str:
    """`name` if it is a safe workflow name (it becomes a file name), else 400."""
    if not _NAME.fullmatch(name) or name in _RESERVED:
        why = f"{name!r} is reserved" if name in _RESERVED else f"{name[:100]!r} is not a workflow name"
        message = f"{why}: use lower-case letters, digits, '-' and '_' (at most 64, starting with a letter or digit)"
        raise APIError(400, message, type=_INVALID, param=param, code="invalid_name")
    return name


def _active(name: str) -> Path:
    """The file of the workflow called `name` (a builtin wins over a user file of the same name); else 404."""
    entry = next((e for e in list_workflows() if e.name == name and e.problem is None), None)
    if entry is None:
        raise _not_found(name)
    return entry.path


def _refuse_builtin(name: str, param: str = "name", *, status: int = 409, verb: str = "changed") -> None:
    """409 (or `status`) when `name` is a builtin workflow's: those files are never written or deleted."""
    if (BUILTIN_DIR / f"{name}.yaml").is_file():
        message = (
            f"{name!r} is a builtin workflow and cannot be {verb}: duplicate it "
            f"(POST /api/v1/workflows/{name}/duplicate) and edit the copy"
        )
        if param != "name":
            message = f"a builtin workflow is named {name!r}: choose another name"
        raise APIError(status, message, type="permission_error", param=param, code="builtin_workflow")


def _not_found(name: str) -> APIError:
    message = f"no workflow named {name[:100]!r}"
    return APIError(404, message, type=_INVALID, param="name", code="workflow_not_found")


def _read(path: Path) -> bytes:
    try:
        return read_bounded(path, MAX_YAML_BYTES, SpecError, "a workflow file is far smaller")
    except SpecError as exc:
        raise APIError(400, str(exc), type=_INVALID, code="workflow_unreadable") from None


def _write(name: str, text: str, *, replace: bool, if_match: str | None, param: str = "name") -> SavedWorkflow:
    """Write the user workflow `name` through a temporary file: moved over the old file when `replace`, else
    linked into place, which fails (409) rather than replace a file made meanwhile."""
    folder = user_workflows_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}.yaml"
    _check_match(target, if_match)
    exists = target.exists()
    if exists and not replace:
        raise _exists(name, param)
    handle, temp = tempfile.mkstemp(prefix=f".{name}-", suffix=".tmp", dir=folder)  # not *.yaml: never listed
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temp, 0o644)
        if replace:
            os.replace(temp, target)
        else:
            try:
                os.link(temp, target)
            except FileExistsError:
                raise _exists(name, param) from None
            except OSError:  # no hard links on this file system: the lock still keeps our own saves apart
                if target.exists():
                    raise _exists(name, param) from None
                os.replace(temp, target)
    finally:
        with suppress(FileNotFoundError):
            os.unlink(temp)
    return SavedWorkflow(name=name, path=str(target), created=not exists, etag=etag_of(text.encode("utf-8")))


def _exists(name: str, param: str) -> APIError:
    message = (
        f"a user workflow named {name!r} already exists: open it to edit it (or save with overwrite), "
        "or choose another name"
    )
    return APIError(409, message, type=_INVALID, param=param, code="workflow_exists")


def _check_match(path: Path, if_match: str | None) -> None:
    """412 unless the file is as the client last read it (`If-Match: "<etag>"`, or `*`: it exists)."""
    if if_match is None:
        return
    current = etag_of(path.read_bytes()) if path.is_file() else None
    tags = {tag.strip().removeprefix("W/") for tag in if_match.split(",")}
    if current is None or not ("*" in tags or current in tags):
        message = "the workflow file changed since you opened it (or was deleted): reload it, then make your change"
        raise APIError(412, message, type=_INVALID, code="precondition_failed")


def etag_of(raw: bytes) -> str:
    """The ETag of a workflow file's bytes (the editor sends it back as If-Match)."""
    return f'"{hashlib.sha256(raw).hexdigest()[:32]}"'


def _tag(saved: SavedWorkflow) -> dict[str, str]:
    return {"ETag": saved.etag} if saved.etag else {}


def _yaml(text: str) -> str:
    """The YAML of a request, at most the loader's limit (else 413)."""
    if len(text.encode("utf-8", errors="replace")) > MAX_YAML_BYTES:
        raise _too_large()
    return text


class _Invalid(APIError):
    """400 for a workflow that does not validate; the shared handler sends `body()`, which lists the problems."""

    def __init__(self, errors: list[Problem]) -> None:
        first = errors[0]
        where = f"line {first.line}: " if first.line else ""
        field = f"{first.field}: " if first.field else ""
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        message = f"the workflow is not valid: {where}{field}{first.message}{more}"
        super().__init__(400, message, type=_INVALID, param=first.field, code="workflow_invalid")
        self.errors = errors

    def body(self) -> ErrorResponse:
        return InvalidWorkflow(error=self.info, errors=self.errors)


def _too_large() -> APIError:
    message = f"a workflow's YAML may hold at most {MAX_YAML_BYTES // 1024} KiB"
    return APIError(413, message, type=_INVALID, param="yaml", code="yaml_too_large")


async def _body(request: Request, model: type[M]) -> M:
    """The JSON body as `model`, read up to a cap (413 beyond), invalid JSON or fields 400."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > _MAX_BODY:
        raise _too_large()
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > _MAX_BODY:
            raise _too_large()
        chunks.append(chunk)
    try:
        return model.model_validate_json(b"".join(chunks))
    except ValidationError as exc:
        raise validation_error(exc) from None


def _body_doc(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI request body of a route that reads its JSON itself (to cap its size)."""
    schema = model.model_json_schema()  # nested models stay in its own $defs (OpenAPI 3.1 is JSON Schema)
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}
