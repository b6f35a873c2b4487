"""A cache of GGUF models converted to a Hugging Face folder, so later starts skip the slow GGUF conversion.

transformers de-quantizes a GGUF file and rebuilds its tokenizer on every load (most of a first start); the
converted folder (safetensors + tokenizer.json) loads in a fraction of that. Entries are keyed by
the GGUF file's SHA-256, so a changed file never reuses a stale conversion.

    AUTOQWEN_CACHE_DIR=/tmp/c autoqwen serve      # default: the platform's user cache dir, e.g. ~/.cache/autoqwen
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from autoqwen.local_llm.resolve import ModelSource
from autoqwen.paths import cache_dir

__all__ = ["converted_folder", "gguf_is_4bit", "save_converted"]

log = logging.getLogger(__name__)
_DONE = "autoqwen-converted.ok"
_FOUR_BIT = "autoqwen-4bit.txt"


def converted_folder(source: ModelSource) -> Path:
    """The cache folder for a GGUF source (it may not exist yet)."""
    assert source.gguf_file is not None, "only GGUF sources are converted"
    digest = hashlib.sha256()
    with open(source.path / source.gguf_file, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return cache_dir() / f"{Path(source.gguf_file).stem}-{digest.hexdigest()[:16]}"


def is_complete(folder: Path) -> bool:
    """Whether a conversion finished writing (a marker file is written last)."""
    return (folder / _DONE).is_file()


def save_converted(folder: Path, model: Any, tokenizer: Any) -> None:
    """Write model and tokenizer to `folder` atomically; a failure only costs the next start its speed."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".converting-", dir=folder.parent))
        # save_pretrained refuses models loaded from GGUF ("not serializable"), though the weights are plain fp32
        # tensors by now: write them with safetensors and the configs beside them.
        from safetensors.torch import save_model

        save_model(model, str(staging / "model.safetensors"))
        config = model.config.to_dict()
        config.pop("quantization_config", None)  # the weights are de-quantized: load them as plain safetensors
        type(model.config).from_dict(config).save_pretrained(staging)
        model.generation_config.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / _DONE).write_text("ok\n")
        try:
            staging.rename(folder)
        except OSError:  # another process finished first: keep theirs
            shutil.rmtree(staging, ignore_errors=True)
    except Exception as exc:  # caching is an optimisation: never fail a load over it
        log.warning("could not cache the converted model in %s: %s", folder, exc)


def gguf_is_4bit(source: ModelSource, folder: Path) -> bool:
    """Whether most of the GGUF file's matrices are 4-bit, kept in its converted folder once known: reading it
    from the file parses all of the file's metadata, a large part of a later start."""
    assert source.gguf_file is not None, "only GGUF sources have GGUF tensor types"
    marker = folder / _FOUR_BIT
    if marker.is_file():
        return marker.read_text().strip() == "yes"
    from autoqwen.local_llm.quantize import is_4bit_gguf

    answer = is_4bit_gguf(source.path / source.gguf_file)
    if is_complete(folder):
        try:
            marker.write_text("yes\n" if answer else "no\n")
        except OSError as exc:  # an optimisation: never fail a load over it
            log.warning("could not write %s: %s", marker, exc)
    return answer
