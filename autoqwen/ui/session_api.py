"""The sessions and gallery API of the UI, mounted under /api: delete sessions, export them, import an export.

DELETE /api/v1/sessions/{id}          delete a session, its messages and files (409 while it runs), as `sessions delete`
POST   /api/v1/sessions/{id}/export   export one session into the gallery folder, as `autoqwen export ID`
POST   /api/v1/gallery/export         export several: {"session_ids": [...]}
GET    /api/v1/gallery                the gallery folder's index (its exported sessions, newest first)
POST   /api/v1/gallery/import         import an exported session (multipart `file`: its session.json, or the files
                                      of its folder; `replace`), as `autoqwen gallery import`

The folder is the one the Gallery page shows (autoqwen.ui.gallery_pages.gallery_dir). An upload is untrusted: its
names are checked (no `..`, no absolute path, no backslash), its size is capped before it is read, it is staged in a
fresh temporary folder, and autoqwen.workflows.gallery.import_session reads it back with the CLI's own checks.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile

from autoqwen.local_llm.api_errors import APIError
from autoqwen.ui.files import FileRefused, safe_parts
from autoqwen.ui.gallery_pages import gallery_dir
from autoqwen.ui.pages import Pages
from autoqwen.ui.uploads import check_length, form_flag
from autoqwen.workflows.errors import GalleryError, SessionExists, SessionNotFound, SessionRunning, StoreError
from autoqwen.workflows.gallery import GalleryEntry, export_sessions, import_session, read_index, read_record
from autoqwen.workflows.http_api import check_session_id, session_not_found
from autoqwen.workflows.records import Session
from autoqwen.workflows.store import SessionStore

__all__ = [
    "MAX_IMPORT_BYTES",
    "MAX_IMPORT_FILES",
    "MAX_RECORD_BYTES",
    "ExportRequest",
    "GalleryList",
    "SessionDeleted",
    "router",
]

MAX_IMPORT_BYTES = 64 * 1024 * 1024  # a whole upload: session.json and its files
MAX_RECORD_BYTES = 16 * 1024 * 1024  # its session.json alone
MAX_IMPORT_FILES = 500
_FORM_SLACK = 64 * 1024  # multipart headers and boundaries around the files
_CHUNK = 256 * 1024
SessionId = Annotated[str, PathParam(max_length=200)]


class SessionDeleted(BaseModel):
    """The answer to a delete, OpenAI-style."""

    id: str
    object: str = "session.deleted"
    deleted: bool = True


class ExportRequest(BaseModel):
    """Body of POST /v1/gallery/export: the sessions to export."""

    model_config = ConfigDict(extra="forbid")
    session_ids: list[Annotated[str, Field(max_length=200)]] = Field(min_length=1, max_length=1000)


class GalleryList(BaseModel):
    """The gallery folder and sessions in it: the whole index, or those an export just wrote."""

    gallery: str = Field(description="the gallery folder on the server")
    data: list[GalleryEntry]


def router(pages: Pages) -> APIRouter:
    """The /v1 session and gallery routes of the UI (the app mounts them under /api)."""
    routes = APIRouter(prefix="/v1", tags=["ui: sessions and gallery"])
    store = pages.store

    @routes.delete("/sessions/{session_id}", summary="Delete a session, its messages and its files")
    async def delete(session_id: SessionId) -> SessionDeleted:
        check_session_id(session_id)
        if pages.runs.get(session_id) is not None:
            session = _get(store, session_id)
            raise _running(SessionRunning(session.id, pid=os.getpid(), host=socket.gethostname()))
        try:
            await asyncio.to_thread(store.delete_session, session_id)
        except SessionNotFound as exc:
            raise session_not_found(session_id) from exc
        except SessionRunning as exc:
            raise _running(exc) from exc
        return SessionDeleted(id=session_id)

    @routes.post("/sessions/{session_id}/export", summary="Export a session into the gallery folder")
    async def export_one(session_id: SessionId) -> GalleryList:
        return await _export(pages, [session_id])

    @routes.post("/gallery/export", summary="Export sessions into the gallery folder")
    async def export_many(body: ExportRequest) -> GalleryList:
        return await _export(pages, body.session_ids)

    @routes.get("/gallery", summary="The gallery folder's exported sessions, newest first")
    async def gallery() -> GalleryList:
        folder = gallery_dir(pages)
        try:
            index = read_index(folder)
        except GalleryError as exc:
            raise APIError(500, str(exc), type="internal_server_error", code="gallery_invalid") from exc
        return GalleryList(gallery=str(folder), data=list(index.sessions))

    @routes.post("/gallery/import", summary="Import an exported session", openapi_extra={"requestBody": _IMPORT_DOC})
    async def import_upload(request: Request) -> Session:
        too_large = lambda: _too_large(MAX_IMPORT_BYTES, "the upload")  # noqa: E731
        check_length(request, MAX_IMPORT_BYTES + _FORM_SLACK, what="the upload", too_large=too_large)
        staging = Path(tempfile.mkdtemp(prefix="autoqwen-upload-"))
        try:
            folder, replace = await _stage(request, staging)
            return await asyncio.to_thread(_import, store, folder, replace)
        except GalleryError as exc:
            message = str(exc).replace(str(staging / "web-upload"), "upload").replace(str(staging), "upload")
            raise _bad_upload(message, code="invalid_session") from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    return routes


async def _export(pages: Pages, ids: list[str]) -> GalleryList:
    for session_id in ids:
        check_session_id(session_id)
    folder = gallery_dir(pages)
    try:
        await asyncio.to_thread(export_sessions, pages.store, ids, folder)
        index = read_index(folder)
    except SessionNotFound as exc:
        raise session_not_found(exc.session_id) from exc
    except GalleryError as exc:
        raise APIError(500, str(exc), type="internal_server_error", code="export_failed") from exc
    wanted = set(ids)
    return GalleryList(gallery=str(folder), data=[entry for entry in index.sessions if entry.id in wanted])


def _import(store: SessionStore, folder: Path, replace: bool) -> Session:
    """Import the staged folder; a failure after the session was written leaves no half of it behind."""
    record = read_record(folder)
    existed = _exists(store, record.session.id)
    try:
        return import_session(store, folder, replace=replace)
    except SessionExists as exc:
        raise APIError(
            409,
            f"session {exc.session_id!r} is already in the store: import it with replace to overwrite it",
            type="invalid_request_error",
            param="replace",
            code="session_exists",
        ) from exc
    except SessionRunning as exc:
        raise _running(exc) from exc
    except (GalleryError, StoreError):
        if not existed and _exists(store, record.session.id):
            store.delete_session(record.session.id)
        raise


async def _stage(request: Request, staging: Path) -> tuple[Path, bool]:
    """Write the uploaded session.json, and the files it lists, into `staging/web-upload`; that folder and `replace`."""
    folder = staging / "web-upload"  # named so that the session's `imported_from` says where it came from
    try:
        async with request.form(max_files=MAX_IMPORT_FILES, max_fields=8) as form:
            replace = form_flag(form.get("replace"))
            uploads: dict[str, UploadFile] = {}
            for key, value in form.multi_items():
                if key != "file" or not isinstance(value, UploadFile):
                    continue
                name = _upload_name(value.filename)
                if name in uploads:
                    raise _bad_upload(f"the upload holds {name!r} twice")
                uploads[name] = value
            record_name = _record_name(uploads)
            prefix = record_name.removesuffix("session.json")
            budget = [MAX_IMPORT_BYTES]
            await _save(uploads[record_name], folder / "session.json", budget, limit=MAX_RECORD_BYTES)
            for entry in read_record(folder).files:
                upload = uploads.get(f"{prefix}files/{entry.path}")
                if upload is None and "/" not in entry.path:
                    upload = uploads.get(prefix + entry.path)  # picked beside session.json, without its folder
                try:
                    parts = safe_parts(entry.path)
                except FileRefused:
                    continue  # the import refuses it, naming it
                if upload is None or (destination := folder.joinpath("files", *parts)).exists():
                    continue  # the import names what is missing; a path listed twice is staged once
                try:
                    await _save(upload, destination, budget, limit=MAX_IMPORT_BYTES)
                except (FileExistsError, NotADirectoryError):
                    raise _bad_upload(f"session.json lists files/{entry.path} inside another listed file") from None
    except (AssertionError, ValueError) as exc:  # not multipart, or python-multipart refused it
        raise _bad_upload(f"the upload is not a valid form: {exc}") from None
    return folder, replace


def _upload_name(filename: str | None) -> str:
    """An uploaded file's name, which may be a path inside the folder picked (`20250612-1430-7f3a/files/a.png`)."""
    name = filename or ""
    try:
        safe_parts(name)
    except FileRefused:
        raise _bad_upload(
            f"unsafe file name {name[:200]!r} in the upload: names are relative paths without '..', "
            "backslashes or control characters"
        ) from None
    return name


def _record_name(uploads: dict[str, UploadFile]) -> str:
    """The one session.json of the upload (in the folder picked, or a folder below; not among a session's files)."""
    if not uploads:
        raise _bad_upload("send an exported session as the form field `file`: its session.json, or its folder")
    found = [name for name in uploads if name.split("/")[-1] == "session.json" and "files" not in name.split("/")[:-1]]
    if not found:
        raise _bad_upload("the upload has no session.json: pick the session.json of an exported session, or its folder")
    if len(found) > 1:
        raise _bad_upload(f"the upload holds {len(found)} sessions ({', '.join(sorted(found))}): import one at a time")
    return found[0]


async def _save(upload: UploadFile, destination: Path, budget: list[int], *, limit: int) -> None:
    """Copy an upload into the staging folder, counting its bytes against the upload's `budget` and `limit`."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with destination.open("xb") as out:  # staging is ours and fresh: nothing there to follow or overwrite
        while chunk := await upload.read(_CHUNK):
            written += len(chunk)
            budget[0] -= len(chunk)
            if written > limit or budget[0] < 0:
                raise _too_large(limit if written > limit else MAX_IMPORT_BYTES, upload.filename or "")
            out.write(chunk)


def _get(store: SessionStore, session_id: str) -> Session:
    try:
        return store.get_session(session_id)
    except SessionNotFound as exc:
        raise session_not_found(session_id) from exc


def _exists(store: SessionStore, session_id: str) -> bool:
    try:
        store.get_session(session_id)
    except SessionNotFound:
        return False
    return True


def _running(exc: SessionRunning) -> APIError:
    return APIError(409, str(exc), type="invalid_request_error", param="session_id", code="session_running")


def _bad_upload(message: str, *, code: str = "invalid_upload") -> APIError:
    return APIError(400, message, type="invalid_request_error", param="file", code=code)


def _too_large(limit: int, name: str) -> APIError:
    return APIError(
        413,
        f"{name[:200]} is too large: an import may hold at most {limit // (1024 * 1024)} MiB",
        type="invalid_request_error",
        param="file",
        code="upload_too_large",
    )


_IMPORT_DOC: dict[str, Any] = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {
                        "type": "array",
                        "items": {"type": "string", "format": "binary"},
                        "description": "session.json of an exported session, or the files of its folder, each named "
                        "by its path in the folder (`files/chart.png`)",
                    },
                    "replace": {"type": "boolean", "description": "overwrite a session with the same id"},
                },
            }
        }
    },
}
