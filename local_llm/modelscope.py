"""Downloads from ModelScope (the seed's `qwen/...` ids) through its public file API, over httpx: no SDK needed.

    MODELSCOPE_ENDPOINT=https://www.modelscope.cn    # the default; MODELSCOPE_DOMAIN=host works too, as in the SDK

The routes are those the modelscope SDK uses (`hub/api.py`, `hub/file_download.py`):

    GET {endpoint}/api/v1/models/{id}/repo/files?Revision=master&Recursive=True   the listing: Path, Size, Sha256
    GET {endpoint}/api/v1/models/{id}/repo?Revision=master&FilePath={path}        one file; Range resumes it

Each file is written to `<cache>/._____temp/<owner>/<name>/<path>.part` (the SDK's temporary folder), resumed from
there by a later pull, and checked against the listed size and SHA-256. Only when every file of the model is
complete are they moved into `<cache>/models/<owner>/<name>` (the layout the SDK writes and `resolve.py` reads),
config.json last: the model folder never holds a partial file, nor looks complete before it is.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from autoqwen.local_llm.errors import ModelLoadError
from autoqwen.local_llm.hub_files import HubId, model_files, modelscope_folder, modelscope_root
from autoqwen.local_llm.pull_progress import PullProgress

if TYPE_CHECKING:
    import httpx

__all__ = ["DEFAULT_ENDPOINT", "RemoteFile", "endpoint", "list_files", "pull"]

DEFAULT_ENDPOINT = "https://www.modelscope.cn"
REVISION = "master"
_TEMP = "._____temp"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class RemoteFile:
    """One file of a ModelScope model, as its listing gives it (size and SHA-256 when known)."""

    path: str
    size: int | None
    sha256: str | None


def endpoint() -> str:
    """ModelScope's base URL: MODELSCOPE_ENDPOINT, else https://$MODELSCOPE_DOMAIN, else www.modelscope.cn."""
    if url := os.environ.get("MODELSCOPE_ENDPOINT", "").strip():
        return url.rstrip("/")
    if domain := os.environ.get("MODELSCOPE_DOMAIN", "").strip():
        return f"https://{domain.strip('/')}"
    return DEFAULT_ENDPOINT


def pull(hub: HubId, progress: PullProgress) -> tuple[Path, str | None]:
    """Download `hub` into the ModelScope cache: (model folder, GGUF file inside it or None). Two pulls of one
    model take turns (a lock file beside its temporary folder)."""
    import httpx
    from filelock import FileLock

    base = endpoint()
    headers = {"User-Agent": "autoqwen (modelscope file API)"}
    timeout = httpx.Timeout(30.0, read=120.0)
    current: list[str] = []
    staging = _staging(hub.repo_id)
    staging.parent.mkdir(parents=True, exist_ok=True)
    try:
        with (
            FileLock(str(staging) + ".lock"),
            httpx.Client(base_url=base, headers=headers, timeout=timeout, follow_redirects=True) as client,
        ):
            return _fetch(client, hub, staging, progress, current)
    except httpx.ConnectError as exc:
        raise ModelLoadError(
            f"cannot reach {base} to download {str(hub)!r} from ModelScope (offline?): {_reason(exc)}", model=str(hub)
        ) from exc
    except httpx.TransportError as exc:
        raise ModelLoadError(
            f"the download of {current[-1] if current else str(hub)} from {base} was interrupted ({_reason(exc)}): "
            "run the same pull again to resume it",
            model=str(hub),
        ) from exc
    except httpx.HTTPStatusError as exc:
        raise ModelLoadError(
            f"ModelScope ({base}) answered {exc.response.status_code} for {current[-1] if current else str(hub)}",
            model=str(hub),
        ) from exc


def _fetch(
    client: httpx.Client, hub: HubId, staging: Path, progress: PullProgress, current: list[str]
) -> tuple[Path, str | None]:
    """List, download into `staging` (each file's name appended to `current` as it starts), then move into place."""
    files = {f.path: f for f in list_files(client, hub)}
    wanted = [files[name] for name in model_files(list(files), hub.quant, model=str(hub))]
    final = modelscope_folder(hub.repo_id)
    todo = [f for f in wanted if not _present(final / f.path, f)]
    progress.start(str(hub), sum((f.size or 0) - _partial(staging, f) for f in todo))
    for f in todo:
        current.append(f.path)
        progress.file(f.path)
        _download(client, hub, f, staging, progress)
    for f in sorted(todo, key=lambda f: f.path == "config.json"):  # config.json last: see hub_files.is_complete
        (final / f.path).parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / f.path, final / f.path)
    shutil.rmtree(staging, ignore_errors=True)
    gguf = next((f.path for f in wanted if f.path.lower().endswith(".gguf")), None)
    return final, gguf


def list_files(client: httpx.Client, hub: HubId) -> list[RemoteFile]:
    """Every file of the model at ModelScope's default revision."""
    route = f"/api/v1/models/{hub.repo_id}/repo/files"
    response = client.get(route, params={"Revision": REVISION, "Recursive": "True"})
    if response.status_code == 404:
        raise ModelLoadError(f"ModelScope ({endpoint()}) has no model {hub.repo_id!r}", model=str(hub))
    response.raise_for_status()
    try:
        body = response.json()
        if body.get("Code", 200) != 200 or body.get("Success") is False:
            raise ModelLoadError(
                f"ModelScope ({endpoint()}) cannot list {hub.repo_id!r}: {body.get('Message') or body.get('Code')}",
                model=str(hub),
            )
        entries = body["Data"]["Files"]
        return [
            RemoteFile(_safe_path(e["Path"], hub), e.get("Size"), e.get("Sha256") or None)
            for e in entries
            if e.get("Type", "blob") != "tree"
        ]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelLoadError(
            f"ModelScope ({endpoint()}) sent a file listing autoqwen cannot read", model=str(hub)
        ) from exc


def _safe_path(path: str, hub: HubId) -> str:
    """A listed path, refused if it would land outside the model's folder."""
    parts = PurePosixPath(path).parts
    if not parts or PurePosixPath(path).is_absolute() or ".." in parts or "\\" in path:
        raise ModelLoadError(f"ModelScope listed an unsafe file path for {hub.repo_id!r}: {path!r}", model=str(hub))
    return path


def _staging(repo_id: str) -> Path:
    owner, name = repo_id.split("/")
    return modelscope_root() / _TEMP / owner / name.replace(".", "___")


def _present(path: Path, f: RemoteFile) -> bool:
    return path.is_file() and (f.size is None or path.stat().st_size == f.size)


def _partial(staging: Path, f: RemoteFile) -> int:
    """Bytes of `f` already downloaded by an earlier pull (a finished staged file, or its `.part`)."""
    for candidate in (staging / f.path, staging / (f.path + ".part")):
        if candidate.is_file():
            return candidate.stat().st_size
    return 0


def _download(client: httpx.Client, hub: HubId, f: RemoteFile, staging: Path, progress: PullProgress) -> None:
    """Fetch `f` into `staging` (resuming its `.part`), check it, and rename it complete."""
    done, part = staging / f.path, staging / (f.path + ".part")
    if _present(done, f):
        return
    part.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.is_file() else 0
    if f.size is not None and have > f.size:
        have = 0
    digest = hashlib.sha256()
    if have:
        with open(part, "rb") as existing:
            for block in iter(lambda: existing.read(_CHUNK), b""):
                digest.update(block)
    if f.size is None or have < f.size:
        route = f"/api/v1/models/{hub.repo_id}/repo"
        ranged = {"Range": f"bytes={have}-"} if have else {}
        with client.stream("GET", route, params={"Revision": REVISION, "FilePath": f.path}, headers=ranged) as r:
            r.raise_for_status()
            if have and r.status_code != 206:  # the server sent the whole file: start over
                progress.advance(-have)
                have, digest = 0, hashlib.sha256()
            with open(part, "ab" if have else "wb") as out:
                for chunk in r.iter_bytes():  # as the bytes arrive: a dropped connection loses none
                    out.write(chunk)
                    digest.update(chunk)
                    progress.advance(len(chunk))
    size = part.stat().st_size
    if f.size is not None and size != f.size:
        part.unlink()
        raise ModelLoadError(
            f"{f.path} of {hub.repo_id!r} came with {size} bytes where ModelScope lists {f.size}: refused and "
            "removed; pull again",
            model=str(hub),
        )
    if f.sha256 and digest.hexdigest() != f.sha256.lower():
        part.unlink()
        raise ModelLoadError(
            f"{f.path} of {hub.repo_id!r} does not match the SHA-256 ModelScope lists: refused and removed; pull again",
            model=str(hub),
        )
    os.replace(part, done)


def _reason(exc: Exception) -> str:
    """The first line of an exception's message, or its class name."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
