"""A GGUF file's metadata (architecture, context window, file type, chat template), read without its tensors.

    meta = read_gguf_metadata(path)            # {"general.architecture": "llama", "llama.context_length": 8192, ...}
    file_type_name(meta["general.file_type"])  # "Q4_1"
    context_length(meta)                       # 8192

gguf's own GGUFReader parses every field, the tokenizer's 50k-150k vocabulary strings included, which takes
seconds; listing models needs a handful of values, so this reads the key-value section and skips long arrays
(keeping their length). The value types and file types come from the `gguf` package.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

__all__ = ["LongArray", "context_length", "file_type_name", "read_gguf_metadata"]

_MAGIC = b"GGUF"
_SHORT_ARRAY = 64  # arrays up to this many items are read; longer ones (vocabularies) keep only their length


@dataclass(frozen=True)
class LongArray:
    """An array value too long to be worth reading (a tokenizer's vocabulary): its item count."""

    length: int


def read_gguf_metadata(path: Path, *, keys: frozenset[str] | None = None) -> dict[str, Any]:
    """The key-value metadata of the GGUF file at `path`; stops early once every key in `keys` is read.

    Raises ValueError for a file that is not GGUF."""
    from gguf.constants import GGUFValueType

    scalar = {
        GGUFValueType.UINT8: "B",
        GGUFValueType.INT8: "b",
        GGUFValueType.UINT16: "H",
        GGUFValueType.INT16: "h",
        GGUFValueType.UINT32: "I",
        GGUFValueType.INT32: "i",
        GGUFValueType.FLOAT32: "f",
        GGUFValueType.BOOL: "?",
        GGUFValueType.UINT64: "Q",
        GGUFValueType.INT64: "q",
        GGUFValueType.FLOAT64: "d",
    }
    with open(path, "rb") as f:
        if f.read(4) != _MAGIC:
            raise ValueError(f"{path} is not a GGUF file")
        order = "<"
        (version,) = struct.unpack("<I", f.read(4))
        if version & 0xFFFF == 0:  # a big-endian file reads as a huge little-endian version
            order = ">"
        count = "I" if struct.unpack(order + "I", struct.pack("<I", version))[0] == 1 else "Q"

        def read(fmt: str) -> Any:
            return struct.unpack(order + fmt, _exact(f, struct.calcsize(fmt)))[0]

        def read_str() -> str:
            return _exact(f, read(count)).decode("utf-8", errors="replace")

        def read_value(kind: int) -> Any:
            if kind == GGUFValueType.STRING:
                return read_str()
            if kind == GGUFValueType.ARRAY:
                item, length = read("I"), read(count)
                if length <= _SHORT_ARRAY:
                    return [read_value(item) for _ in range(length)]
                if item == GGUFValueType.STRING:
                    for _ in range(length):
                        f.seek(read(count), 1)
                elif item in scalar:
                    f.seek(length * struct.calcsize(scalar[GGUFValueType(item)]), 1)
                else:  # arrays of arrays: read through them
                    for _ in range(length):
                        read_value(item)
                return LongArray(length)
            return read(scalar[GGUFValueType(kind)])

        read(count)  # tensor count
        found: dict[str, Any] = {}
        for _ in range(read(count)):
            key = read_str()
            found[key] = read_value(read("I"))
            if keys is not None and keys <= found.keys():
                break
    return found


def _exact(f: IO[bytes], size: int) -> bytes:
    data = f.read(size)
    if len(data) != size:
        raise ValueError("the GGUF file ends inside its metadata")
    return data


def file_type_name(value: object) -> str | None:
    """`general.file_type` as llama.cpp names it (3 -> "Q4_1", 15 -> "Q4_K_M"); None when unknown."""
    from gguf.constants import LlamaFileType

    try:
        name = LlamaFileType(int(value)).name  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None
    return None if name == "GUESSED" else name.removeprefix("MOSTLY_").removeprefix("ALL_")


def context_length(meta: dict[str, Any]) -> int | None:
    """The context window the model was trained for (`<architecture>.context_length`)."""
    value = meta.get(f"{meta.get('general.architecture')}.context_length")
    return int(value) if isinstance(value, int) else None
