"""Gallery export and import: sessions as static folders that open in a browser from disk (no server, no network).

    export_sessions(store, ["20250612-143005-7f3a"], Path("gallery"))   # gallery/<id>/ + gallery/index.html
    import_session(store, Path("gallery/20250612-143005-7f3a"))         # back into the store, same id

Layout: `DIR/<id>/{session.json, transcript.md, index.html, files/…}`, plus `DIR/index.html` and `DIR/index.json`
listing every exported session. A session folder is written beside its final place, then swapped in; the index is
read, merged and replaced under a lock file, so concurrent exports into one folder never drop each other's sessions.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

import jinja2
from filelock import FileLock
from pydantic import BaseModel, ConfigDict, ValidationError, computed_field, field_validator

from autoqwen.workflows.errors import GalleryError
from autoqwen.workflows.records import (
    LOCAL_FIELDS,
    RECORD_SCHEMA_VERSION,
    SESSION_ID_PATTERN,
    FileEntry,
    Session,
    SessionRecord,
)
from autoqwen.workflows.store import SessionStore

__all__ = [
    "GALLERY_INDEX_VERSION",
    "GalleryEntry",
    "GalleryIndex",
    "export_sessions",
    "import_session",
    "read_index",
    "read_record",
]

log = logging.getLogger(__name__)

GALLERY_INDEX_VERSION = 1
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp"})
LABELS = {
    "text": "message",
    "tool_call": "tool call",
    "tool_result": "tool result",
    "handoff": "handoff",
    "system": "system",
    "other": "event",
}


class GalleryEntry(BaseModel):
    """One exported session as `DIR/index.json` lists it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    title: str
    workflow: str
    status: str
    model: str = ""
    started_at: datetime
    ended_at: datetime | None = None
    tags: tuple[str, ...] = ()
    summary: str | None = None
    message_count: int = 0
    turns: int = 0
    tokens: int = 0

    @field_validator("id")
    @classmethod
    def _folder_name(cls, value: str) -> str:
        if not SESSION_ID_PATTERN.match(value):
            raise ValueError(f"{value!r} is not a session id (letters, digits, - and _)")
        return value

    @computed_field  # type: ignore[prop-decorator]
    @property
    def href(self) -> str:
        """The session's page, relative to the gallery: built from the validated id, never read from index.json."""
        return f"{quote(self.id)}/index.html"

    @classmethod
    def of(cls, session: Session) -> GalleryEntry:
        """The index entry of a session."""
        return cls(**session.model_dump(include=set(cls.model_fields) - {"tokens"}), tokens=session.tokens)


class GalleryIndex(BaseModel):
    """`DIR/index.json`: every session exported into a gallery folder, newest first."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    schema_version: int = GALLERY_INDEX_VERSION
    sessions: tuple[GalleryEntry, ...] = ()


def export_sessions(store: SessionStore, ids: Iterable[str], gallery_dir: Path) -> list[Path]:
    """Export sessions into a gallery folder (replacing earlier exports of them) and return their folders."""
    records = [store.get_record(session_id) for session_id in dict.fromkeys(ids)]  # unknown id: nothing written
    gallery_dir = Path(gallery_dir)
    with _gallery_errors(gallery_dir):
        gallery_dir.mkdir(parents=True, exist_ok=True)
        staged: list[Path] = []
        try:
            for record in records:
                staged.append(_stage(store, record, gallery_dir))
            with FileLock(gallery_dir / ".lock"):  # released by the OS if the process dies
                for record, staging in zip(records, staged, strict=True):
                    _swap_in(staging, gallery_dir / record.session.id)
                entries = _merged_entries(gallery_dir, [GalleryEntry.of(record.session) for record in records])
                index = GalleryIndex(sessions=tuple(entries))
                _write_atomic(gallery_dir / "index.json", index.model_dump_json(indent=2) + "\n")
                _write_atomic(gallery_dir / "index.html", _render("index.html", entries=entries))
        finally:
            for staging in staged:
                shutil.rmtree(staging, ignore_errors=True)  # left only when something failed
    return [gallery_dir / record.session.id for record in records]


def import_session(store: SessionStore, folder: Path, *, replace: bool = False) -> Session:
    """Read an exported session folder (session.json + files/) back into the store, keeping its id.

    The session is marked imported (from the folder's absolute path): its workflow snapshot is someone else's, so
    a resume neither runs code nor reaches the model server it names without the user's say-so. Only regular files
    are copied: a symlink or a device anywhere in a listed path is refused, so a link to a private file cannot
    be pulled into the store (and published by the next export).
    """
    folder = Path(folder).absolute()
    record = read_record(folder)
    sources = [(entry, _regular_file(folder, _safe_relative(entry.path, folder))) for entry in record.files]
    store.restore(record, imported_from=str(folder), replace=replace)
    target = store.work_dir(record.session.id)
    with _gallery_errors(folder):
        for entry, source in sources:
            destination = target / entry.path
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination, follow_symlinks=False)
    return store.get_session(record.session.id)


def read_record(folder: Path) -> SessionRecord:
    """The SessionRecord in an exported session folder's session.json; GalleryError if it is not one."""
    path = Path(folder) / "session.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise GalleryError(f"{folder} is not an exported session: it has no {path.name}", path=path) from exc
    except OSError as exc:
        raise GalleryError(f"cannot read {path}: {exc}", path=path) from exc
    except ValueError as exc:
        raise GalleryError(f"{path} is not valid JSON: {exc}", path=path) from exc
    version = data.get("schema_version") if isinstance(data, dict) else None
    if not isinstance(version, int) or version > RECORD_SCHEMA_VERSION:
        raise GalleryError(
            f"{path} has schema_version {version!r}; this autoqwen reads up to {RECORD_SCHEMA_VERSION}", path=path
        )
    try:
        record = SessionRecord.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise GalleryError(f"{path} is not a valid session record: {where}: {first['msg']}", path=path) from exc
    if not SESSION_ID_PATTERN.match(record.session.id):
        raise GalleryError(f"{path} has an invalid session id {record.session.id!r}", path=path)
    return record


def read_index(gallery_dir: Path) -> GalleryIndex:
    """The gallery's index.json (empty when there is none yet)."""
    path = Path(gallery_dir) / "index.json"
    if not path.exists():
        return GalleryIndex()
    try:
        return GalleryIndex.model_validate_json(path.read_bytes())
    except (OSError, ValidationError) as exc:
        raise GalleryError(f"{path} is not a gallery index: {exc}", path=path) from exc


def _stage(store: SessionStore, record: SessionRecord, gallery_dir: Path) -> Path:
    """Write a session's folder next to its final place, under a hidden temporary name."""
    session = record.session
    staging = gallery_dir / f".{session.id}.{secrets.token_hex(4)}.tmp"
    (staging / "files").mkdir(parents=True)
    try:
        source = store.work_dir(session.id)
        for entry in record.files:
            destination = staging / "files" / entry.path
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / entry.path, destination)
        # Where this store got the session from is its own business, not part of the record it publishes.
        published = record.model_dump_json(indent=2, exclude={"session": set(LOCAL_FIELDS)})
        (staging / "session.json").write_text(published + "\n", encoding="utf-8")
        views = [_file_view(entry) for entry in record.files]
        context = {"s": session, "messages": record.messages, "files": views, "labels": LABELS}
        (staging / "transcript.md").write_text(_render("transcript.md", **context), encoding="utf-8")
        (staging / "index.html").write_text(_render("session.html", **context), encoding="utf-8")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging


def _swap_in(staging: Path, final: Path) -> None:
    old = final.with_name(f".{final.name}.{secrets.token_hex(4)}.old")
    if final.exists():
        final.rename(old)
    staging.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def _merged_entries(gallery_dir: Path, exported: list[GalleryEntry]) -> list[GalleryEntry]:
    """The index after this export: what was listed, plus exported sessions, plus unlisted session folders."""
    try:
        entries = {entry.id: entry for entry in read_index(gallery_dir).sessions}
    except GalleryError as exc:
        log.warning("%s; rebuilding it from the session folders", exc)
        entries = {}
    entries.update((entry.id, entry) for entry in exported)
    for child in sorted(gallery_dir.iterdir()):
        if child.name not in entries and SESSION_ID_PATTERN.match(child.name) and (child / "session.json").is_file():
            try:
                entries[child.name] = GalleryEntry.of(read_record(child).session)
            except GalleryError as exc:
                log.warning("not listing %s in the gallery index: %s", child, exc)
    present = [entry for entry in entries.values() if (gallery_dir / entry.id / "session.json").is_file()]
    return sorted(present, key=lambda entry: (entry.started_at, entry.id), reverse=True)


def _file_view(entry: FileEntry) -> dict[str, Any]:
    return {
        "path": entry.path,
        "size": entry.size,
        "href": "files/" + quote(entry.path),
        "image": PurePosixPath(entry.path).suffix.lower() in IMAGE_SUFFIXES,
    }


def _regular_file(folder: Path, relative: PurePosixPath) -> Path:
    """`folder/files/relative`, checked to be a regular file reached through real folders (no symlink on the way)."""
    chain = [folder / "files"]
    for part in relative.parts:
        chain.append(chain[-1] / part)
    mode = 0
    for path in chain:
        try:
            mode = path.lstat().st_mode
        except FileNotFoundError:
            raise GalleryError(f"{folder} lists files/{relative} but it is missing", path=path) from None
        except OSError as exc:
            raise GalleryError(f"cannot read {path}: {exc.strerror}", path=path) from exc
        if stat.S_ISLNK(mode):
            raise GalleryError(f"{path} is a symlink; gallery import copies only regular files", path=path)
        if path != chain[-1] and not stat.S_ISDIR(mode):
            raise GalleryError(f"{path} is not a folder, but session.json lists files inside it", path=path)
    if not stat.S_ISREG(mode):
        raise GalleryError(
            f"{chain[-1]} is not a regular file; gallery import copies only regular files", path=chain[-1]
        )
    return chain[-1]


def _safe_relative(path: str, folder: Path) -> PurePosixPath:
    relative = PurePosixPath(path)
    if relative.is_absolute() or ".." in relative.parts or "\\" in path or not relative.parts:
        raise GalleryError(f"{folder}/session.json lists an unsafe file path {path!r}", path=folder)
    return relative


def _write_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


@contextmanager
def _gallery_errors(path: Path) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise GalleryError(f"gallery {path}: {exc}", path=path) from exc
    except jinja2.TemplateError as exc:
        raise GalleryError(f"gallery template failed: {exc}", path=path) from exc


def _render(template: str, **context: Any) -> str:
    return _environment().get_template(template).render(**context)


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("autoqwen.workflows", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters.update(
        when=lambda moment: moment.strftime("%Y-%m-%d %H:%M UTC"),
        clock=lambda moment: moment.strftime("%H:%M:%S"),
        duration=_duration,
        filesize=_filesize,
        pretty_json=_pretty_json,
        fence=_fence,
        inline=_inline,
        code=_code_span,
        plural=lambda count, noun: f"{count} {noun}{'' if count == 1 else 's'}",
    )
    return env


def _duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes} min {seconds} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def _filesize(size: int) -> str:
    for unit in ("B", "KB", "MB"):
        if size < 1024:
            return f"{size} {unit}"
        size //= 1024
    return f"{size} GB"


def _pretty_json(text: str) -> str:
    """Tool arguments are JSON text written by the model: indent them when they parse, else show them as they are."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if not isinstance(value, dict) or not value:
        return json.dumps(value, ensure_ascii=False)
    # One argument a line, each value compact: short lists stay on their line.
    lines = [
        f"  {json.dumps(key, ensure_ascii=False)}: {json.dumps(item, ensure_ascii=False)}"
        for key, item in value.items()
    ]
    return "{\n" + ",\n".join(lines) + "\n}"


# What can start Markdown markup inside a line: HTML (<, &), links and images ([ ] !), code, emphasis, tables.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>&!|~#])")


def _inline(value: object) -> str:
    """Text from a session, shown as written on one line of Markdown: no raw HTML, links or headings can form."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(str(value).split()))


def _code_span(value: object) -> str:
    """Text from a session as a Markdown code span that it cannot close (a name: a tool, an input)."""
    text = " ".join(str(value).split())
    ticks = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def _fence(text: str, language: str = "") -> str:
    """A Markdown code block that the text itself cannot close (the fence is longer than any backtick run in it)."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{text}\n{fence}"
