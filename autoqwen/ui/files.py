"""Files from a folder, served safely: only regular files inside it, never through a symlink, never run as a page.

    opened = open_inside(store.work_dir(session_id), "charts/plot.png")   # FileRefused unless a regular file
    return file_response(opened)                                          # PNG inline; HTML, SVG, ... downloads

The folder is walked one name at a time with `O_NOFOLLOW` from an open folder handle (`dir_fd`), so no symlink,
`..` or path swapped in between a check and the open can lead outside it. Raster images (PNG, JPEG, GIF, WebP) are
shown inline; anything else, HTML and SVG included, is a download (`Content-Disposition: attachment`). Every answer
carries `X-Content-Type-Options: nosniff` and a Content-Security-Policy that allows nothing, so a file an agent or
an imported session wrote never runs in the UI's origin.
"""

from __future__ import annotations

import mimetypes
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import quote

from fastapi.responses import StreamingResponse

from autoqwen.ui.errors import UIError

__all__ = [
    "FILE_CSP",
    "IMAGE_TYPES",
    "FileRefused",
    "OpenedFile",
    "file_response",
    "open_inside",
    "safe_parts",
]

IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
}
# A file is data, never a document: if a browser ever rendered one anyway, it could load and run nothing.
FILE_CSP = "default-src 'none'; sandbox"
_MAX_PATH = 1024
_CHUNK = 64 * 1024
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW | _CLOEXEC
# O_NONBLOCK: opening a FIFO must not hang the server; it is refused just after, as not a regular file.
_FILE_FLAGS = os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0) | _CLOEXEC


class FileRefused(UIError):
    """`path` is not a regular file inside the folder (missing, a symlink, a folder, a device, or an unsafe name)."""

    def __init__(self, path: str) -> None:
        super().__init__(f"no file {path[:200]!r}")
        self.path = path


@dataclass
class OpenedFile:
    """A regular file opened for reading: its handle, its size in bytes and its name (the last part of its path)."""

    file: BinaryIO
    size: int
    name: str


def safe_parts(path: str, *, hidden: bool = True) -> list[str]:
    """The names of a relative `/`-separated path, or FileRefused: no `..`, `.` or empty part, no backslash or
    control character, not absolute; with `hidden=False`, no name starting with a dot either."""
    if not path or len(path) > _MAX_PATH or "\\" in path or any(ord(c) < 32 or ord(c) == 127 for c in path):
        raise FileRefused(path)
    parts = path.split("/")
    for part in parts:
        if part in ("", ".", "..") or len(part) > 255 or (not hidden and part.startswith(".")):
            raise FileRefused(path)
    return parts


def open_inside(root: os.PathLike[str] | str, path: str, *, hidden: bool = True) -> OpenedFile:
    """Open `root/path` for reading if it is a regular file reached through real folders; else FileRefused.

    `root` itself is trusted (it may be a symlink); nothing below it is followed. See `safe_parts` for `hidden`.
    """
    parts = safe_parts(path, hidden=hidden)
    try:
        folder = os.open(root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _CLOEXEC)
    except OSError:
        raise FileRefused(path) from None
    try:
        for part in parts[:-1]:
            inner = os.open(part, _DIR_FLAGS, dir_fd=folder)  # ELOOP or ENOTDIR on a symlink or a file
            os.close(folder)
            folder = inner
        handle = os.open(parts[-1], _FILE_FLAGS, dir_fd=folder)
    except OSError:
        raise FileRefused(path) from None
    finally:
        os.close(folder)
    info = os.fstat(handle)
    if not stat.S_ISREG(info.st_mode):
        os.close(handle)
        raise FileRefused(path)
    return OpenedFile(file=os.fdopen(handle, "rb"), size=info.st_size, name=parts[-1])


def file_response(
    opened: OpenedFile, *, media_type: str | None = None, inline: bool = False, csp: str = FILE_CSP
) -> StreamingResponse:
    """The answer serving `opened`: a raster image inline, anything else as a download, unless the caller vouches
    for the file (`inline=True`, with its `media_type` and `csp`), as for the gallery's own generated pages."""
    suffix = os.path.splitext(opened.name)[1].lower()
    headers = {
        "Content-Length": str(opened.size),
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": csp,
        "Cache-Control": "no-store",
    }
    if media_type is None and suffix in IMAGE_TYPES:
        media_type, inline = IMAGE_TYPES[suffix], True
    if media_type is None:
        media_type = mimetypes.guess_type(opened.name, strict=False)[0] or "application/octet-stream"
    if not inline:
        headers["Content-Disposition"] = _attachment(opened.name)
    return StreamingResponse(_chunks(opened.file, opened.size), media_type=media_type, headers=headers)


def _attachment(name: str) -> str:
    """A Content-Disposition that downloads the file under its name (RFC 6266, with an ASCII fallback)."""
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\;' else "_" for c in name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def _chunks(file: BinaryIO, size: int) -> Iterator[bytes]:
    """The file's first `size` bytes (its size when opened: what Content-Length promised, even if it grows)."""
    try:
        while size > 0 and (chunk := file.read(min(_CHUNK, size))):
            size -= len(chunk)
            yield chunk
    finally:
        file.close()
