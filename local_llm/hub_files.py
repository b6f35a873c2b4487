"""Which files of a hub repository make a model, and where the Hugging Face and ModelScope caches keep them.

The one home for the files a download fetches, for GGUF quantisation tags and for the two cache layouts, shared by
resolving (`resolve.py`), pulling (`model_pull.py`) and listing (`model_catalog.py`). Nothing here touches the
network:

    parse_hub_id("Qwen/Qwen2.5-0.5B-Instruct-GGUF:Q4_K_M")   # HubId("Qwen/Qwen2.5-0.5B-Instruct-GGUF", "Q4_K_M")
    model_files(names, None, model=...)                      # configs + tokenizer + weights, or one GGUF quant
    hf_snapshots("Qwen/Qwen1.5-0.5B-Chat")                   # its snapshots in the HF cache, the current one first
    modelscope_folder("qwen/Qwen1.5-0.5B-Chat")              # <MODELSCOPE_CACHE>/models/qwen/Qwen1___5-0___5B-Chat
    cached_model(parse_hub_id(...))                          # a complete local copy (folder, GGUF file), or None
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from autoqwen.local_llm.errors import ModelLoadError

__all__ = [
    "DEFAULT_QUANT",
    "MODEL_PATTERNS",
    "HubId",
    "cached_model",
    "gguf_quant",
    "hf_cache_root",
    "hf_repo_folder",
    "hf_snapshots",
    "is_complete",
    "model_files",
    "modelscope_candidates",
    "modelscope_folder",
    "modelscope_root",
    "parse_hub_id",
    "pick_gguf",
]

# What a Hugging Face model folder needs: configs, tokenizer files, chat templates and safetensors weights
# (`*.bin` only when a repository has no safetensors). Top-level files only: subfolders hold other formats.
MODEL_PATTERNS = ("*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken", "*.jinja")
# The quantisation a GGUF repository gives when the id names none (Ollama's and llama.cpp's `-hf` default).
DEFAULT_QUANT = "Q4_K_M"

_HUB_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)(?::(?P<quant>[\w.-]+))?$")
# A quantisation tag inside a file name: Q4_K_M, IQ4_XS, Q8_0, Q4_0_4_4, F16, BF16, ...
_QUANT = re.compile(r"(?<![a-z0-9])(i?q\d+(?:_[a-z0-9]+)*|bf16|fp16|f16|f32)(?![a-z0-9])", re.IGNORECASE)


@dataclass(frozen=True)
class HubId:
    """A model on a hub: `owner/name`, and for a GGUF repository the quantisation wanted (`owner/name:Q4_K_M`)."""

    repo_id: str
    quant: str | None = None

    def __str__(self) -> str:
        return f"{self.repo_id}:{self.quant}" if self.quant else self.repo_id


def parse_hub_id(spec: str) -> HubId | None:
    """`owner/name` or `owner/name:QUANT` as a HubId; None for anything else (paths, bare names)."""
    match = _HUB_ID.match(spec.strip())
    return HubId(match["repo"], match["quant"]) if match else None


def gguf_quant(filename: str) -> str | None:
    """The quantisation tag a GGUF file name carries (`qwen2.5-0.5b-instruct-q4_k_m.gguf` -> `Q4_K_M`), if any."""
    found = _QUANT.findall(Path(filename).name.removesuffix(".gguf"))
    return found[-1].upper() if found else None


def _has_quant(filename: str, quant: str) -> bool:
    # The tag as a whole word: Q4_0 is not Q4_0_4_4, Q4_XS is not IQ4_XS (an underscore may come before it).
    pattern = rf"(?<![a-z0-9]){re.escape(quant.lower())}(?![a-z0-9_])"
    return re.search(pattern, filename.lower()) is not None


def pick_gguf(names: list[str], quant: str | None, *, model: str) -> list[str]:
    """The GGUF file(s) of one quantisation among a repository's files: `quant`, else Q4_K_M, else the only one.

    Several files come back only for a split GGUF (`-00001-of-00002`). Raises ModelLoadError listing the
    quantisations there are when none fits."""
    ggufs = sorted(n for n in names if n.lower().endswith(".gguf") and "mmproj" not in n.lower())
    if not ggufs:
        raise ModelLoadError(f"{model!r} has no .gguf file", model=model)
    if quant is None and len(ggufs) == 1:
        return ggufs
    chosen = [n for n in ggufs if _has_quant(n, quant or DEFAULT_QUANT)]
    if chosen:
        return chosen
    available = sorted({gguf_quant(n) or Path(n).name for n in ggufs})
    asked = f"no {quant} file" if quant else f"several quantisations and no {DEFAULT_QUANT}"
    raise ModelLoadError(
        f"{model!r} has {asked}: pick one of {', '.join(available)} with `{model.split(':')[0]}:TAG`", model=model
    )


def model_files(names: list[str], quant: str | None, *, model: str) -> list[str]:
    """The files to fetch from a repository listing `names`: one GGUF quantisation when `quant` is given or the
    repository holds only GGUF weights, else its top-level configs, tokenizer and weights; config.json comes last,
    so a folder is never complete (see `is_complete`) before its weights are."""
    top = [n for n in names if "/" not in n]
    has_safetensors = any(n.endswith(".safetensors") for n in top)
    has_bin = any(n.endswith(".bin") for n in top)
    if quant is not None or not (has_safetensors or has_bin):
        if any(n.lower().endswith(".gguf") for n in names):
            return pick_gguf(names, quant, model=model)
        raise ModelLoadError(f"{model!r} has no safetensors, .bin or .gguf weights autoqwen can load", model=model)
    patterns = [*MODEL_PATTERNS, *(() if has_safetensors else ("*.bin",))]
    unused = ".bin.index.json" if has_safetensors else ".safetensors.index.json"
    wanted = [n for n in top if any(fnmatch.fnmatch(n, p) for p in patterns) and not n.endswith(unused)]
    return sorted(wanted, key=lambda n: (n == "config.json", n))


def is_complete(folder: Path) -> bool:
    """Whether `folder` holds a loadable Hugging Face model: config.json and all of its weights (safetensors when it
    has them, else `.bin`; every shard a `*.index.json` names)."""
    if not (folder / "config.json").is_file():
        return False
    for kind in ("safetensors", "bin"):
        indexes = list(folder.glob(f"*.{kind}.index.json"))
        if indexes:
            return all(_shards_present(folder, index) for index in indexes)
        if any(p.is_file() for p in folder.glob(f"*.{kind}")):
            return True
    return False


def _shards_present(folder: Path, index: Path) -> bool:
    try:
        shards = set(json.loads(index.read_text(encoding="utf-8")).get("weight_map", {}).values())
    except (OSError, ValueError, AttributeError):
        return False
    return bool(shards) and all((folder / shard).is_file() for shard in shards)


def hf_cache_root() -> Path:
    """The Hugging Face hub cache (HF_HUB_CACHE, HF_HOME/hub, ~/.cache/huggingface/hub), read when called."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def hf_repo_folder(repo_id: str) -> Path:
    """The folder the Hugging Face cache keeps a model repository in (`models--owner--name`)."""
    return hf_cache_root() / ("models--" + repo_id.replace("/", "--"))


def hf_snapshots(repo_id: str) -> list[Path]:
    """The repository's snapshots in the HF cache: the one `refs/main` names first, then the newest."""
    repo = hf_repo_folder(repo_id)
    snapshots = sorted((repo / "snapshots").glob("*"), key=lambda p: p.stat().st_mtime, reverse=True)
    try:
        current = repo / "snapshots" / (repo / "refs" / "main").read_text().strip()
    except OSError:
        return snapshots
    return sorted(snapshots, key=lambda p: p != current)


def modelscope_root() -> Path:
    """ModelScope's cache: MODELSCOPE_CACHE, else ~/.cache/modelscope/hub."""
    return Path(os.environ.get("MODELSCOPE_CACHE") or Path.home() / ".cache" / "modelscope" / "hub").expanduser()


def modelscope_folder(repo_id: str) -> Path:
    """Where the ModelScope SDK (and `autoqwen models pull`) keeps a model: `models/<owner>/<name, dots as ___>`."""
    owner, name = repo_id.split("/")
    return modelscope_root() / "models" / owner / name.replace(".", "___")


def modelscope_candidates(repo_id: str) -> list[Path]:
    """Every folder a ModelScope SDK, old or new, may have put `repo_id` in."""
    root = modelscope_root()
    owner, name = repo_id.split("/")
    found = [root / owner / name, root / owner.lower() / name]
    # ModelScope escapes dots in folder names ("Qwen1___5-0___5B-Chat") and keeps them under models/ lately.
    found += [c.parent / c.name.replace(".", "___") for c in found]
    found += [root / "models" / c.relative_to(root) for c in list(found)]
    return list(dict.fromkeys(found))


def _gguf_names(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.gguf") if p.is_file())


def cached_model(hub: HubId) -> tuple[Path, str | None] | None:
    """A complete local copy of `hub` in the HF or ModelScope cache: (folder, None) for a model folder, (folder,
    file name) for a GGUF file; None when there is none."""
    for folder in [*hf_snapshots(hub.repo_id), *modelscope_candidates(hub.repo_id)]:
        if hub.quant is None and is_complete(folder):
            return folder, None
        names = _gguf_names(folder) if folder.is_dir() else []
        if names:
            try:
                chosen = pick_gguf(names, hub.quant, model=str(hub))[0]
            except ModelLoadError:
                continue
            return (folder / chosen).parent, Path(chosen).name
    return None
