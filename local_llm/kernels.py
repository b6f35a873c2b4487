"""Our CPU kernels (`kernels.cpp`, `attention.cpp`, `decode_step.cpp`, `head_logprobs.cpp`, AVX-512): built once
per machine with the system's compiler, cached, loaded.

- `q4mm`: the 4-bit layers' product (needs AVX-512 BF16 too). Each 4-bit weight becomes a bfloat16 number by
  setting its exponent bits, and vdpbf16ps sums two products per lane, exactly, in float32; PyTorch's
  `_weight_int4pack_mm_for_cpu` converts every weight to float32 first: the same quantised weights and bfloat16
  inputs, float32 results, faster (docs/benchmarks.md).
- `q8mm`: the 8-bit output head's product. Its inputs are rounded per group of 32 to two 8-bit integers (~16 bits)
  and summed exactly in integers (vpdpbusd): closer to float32 than PyTorch's `_weight_int8pack_mm` with
  bfloat16 inputs, and faster (docs/engine.md, exactness).
- `decode_attention`: attention of one new token per row, the batch's holes skipped without building a mask; also
  of several tokens a row, each over the columns its own mask says (the tool scoring's rows side by side), its
  output rounded to bfloat16 there (the next product's input).
- `prompt_attention`: attention of a prompt's new tokens (causal, after any cached ones), each token's arithmetic
  that of `decode_attention`: a prompt read at once, in chunks or token by token gets the same bits.
- `decode_step` (`decode_step.cpp`): a decode step's layers on 4-bit weights in one call and one parallel region,
  the lean forward pass's arithmetic (local_llm/llama.py), from the other kernels' pieces (`kernels.h`).
- `rotary` (`decode_step.cpp`): the rotary embedding of many tokens' heads in one call, the bits of the four
  PyTorch operations it replaces in the lean forward pass.
- `add_rms_norm`, `silu_mul`: the lean pass's steps between its products (a residual addition and the next norm;
  silu(gate) x up), each one call with PyTorch's bits, their outputs rounded to bfloat16 for bfloat16 products
  (silu with Sleef's exponential, which PyTorch's library exports: a torch without it cannot load ours, and the
  loader logs that and falls back to PyTorch's kernels).
- `masked_logits`: a grammar's forbidden tokens' logits set to -inf straight from llguidance's bitmask.
- `head_logprobs` (`head_logprobs.cpp`): log P(token) at many positions from the 8-bit head's bfloat16 logits,
  the largest computed again in float32, without the [positions, vocabulary] floats PyTorch's operations write.
- `head_logprobs_amx` (`head_logprobs.cpp`, needs AMX's 8-bit tiles): the same from the head's 8-bit integers and
  the positions' inputs as 16-bit integers, summed exactly in AMX tiles, no logits written out at all.

The sources are compiled side by side against the installed torch with `$CXX` (else `c++`; ~30 s on two cores)
into `<cache dir>/kernels/`, keyed by the sources, torch version and flags, with OpenMP so that their parallel
loops run on torch's own threads (the loader reuses torch's libgomp). Where a kernel cannot run (the CPU lacks its
instructions, no compiler, `AUTOQWEN_KERNEL=torch`), `load()` returns None and callers use PyTorch's kernels.

    q8mm = load("q8mm")                        # None: use torch.ops.aten._weight_int8pack_mm
    y = q8mm(x, weight, scale)                 # float32 [m, k] -> float32 [m, n]; layouts in kernels.cpp
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from autoqwen.paths import cache_dir

__all__ = ["amx", "build", "load"]

log = logging.getLogger(__name__)

SOURCES = [
    Path(__file__).with_name(name) for name in ("kernels.cpp", "attention.cpp", "decode_step.cpp", "head_logprobs.cpp")
]
HEADERS = [Path(__file__).with_name("kernels.h")]  # what decode_step.cpp calls in the other two
_CPU_FLAGS = {"avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512_vnni"}
# Beyond _CPU_FLAGS; compiled with function target attributes.
_KERNEL_FLAGS = {"q4mm": {"avx512_bf16"}, "decode_step": {"avx512_bf16"}, "head_logprobs_amx": {"amx_tile", "amx_int8"}}
_OPTIONAL = {"head_logprobs_amx"}  # built only by compilers that know AMX (GCC 11, Clang 12 and later)
_COMPILE_FLAGS = ["-O3", "-std=c++20", "-fPIC", "-shared", "-fopenmp"]
_COMPILE_FLAGS += sorted(f"-m{flag.replace('_', '')}" for flag in _CPU_FLAGS)


def load(name: str) -> Callable[..., Any] | None:
    """The compiled operator `name` (built on first use), or None where it cannot run here."""
    if os.environ.get("AUTOQWEN_KERNEL", "").lower() == "torch" or _library() is None:
        return None
    if not _cpu_flags() >= _KERNEL_FLAGS.get(name, set()):
        return None
    import torch

    if name in _OPTIONAL and not hasattr(torch.ops.autoqwen, name):
        return None  # left out of the build: a compiler without AMX's instructions
    return getattr(torch.ops.autoqwen, name)


def amx() -> bool:
    """Whether this CPU multiplies bfloat16 matrices in AMX tiles (PyTorch's bfloat16 products use them)."""
    return "amx_bf16" in _cpu_flags()


@functools.cache
def _library() -> Path | None:
    """The compiled library, loaded into torch, or None where it cannot run here."""
    if not _cpu_flags() >= _CPU_FLAGS:
        log.info("using PyTorch's kernels: this CPU lacks AVX-512 VNNI")
        return None
    import torch

    try:
        library = build()
        torch.ops.load_library(str(library))
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        log.warning("using PyTorch's (slower) kernels: building ours failed: %s", detail.strip()[-500:])
        return None
    return library


@functools.cache
def _cpu_flags() -> frozenset[str]:
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def build(sources: list[Path] | None = None, headers: list[Path] | None = None) -> Path:
    """The compiled library of `sources` (default: ours) and the `headers` they include, built now if the cache has
    none for these sources, torch and flags."""
    sources, headers = (SOURCES, HEADERS) if sources is None else (sources, headers or [])
    import torch
    from torch.utils import cpp_extension

    compiler = os.environ.get("CXX") or "c++"
    if shutil.which(compiler) is None:
        raise OSError(f"no C++ compiler ({compiler!r}) on PATH")
    digest = hashlib.sha256(b"".join(source.read_bytes() for source in [*sources, *headers]))
    digest.update(" ".join([torch.__version__, compiler, *_COMPILE_FLAGS]).encode())
    target = cache_dir() / "kernels" / f"kernels-{digest.hexdigest()[:16]}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("building our CPU kernels (once; ~30 s): %s", target)
    includes = [f"-I{path}" for path in cpp_extension.include_paths()]
    libraries = [f"-L{path}" for path in cpp_extension.library_paths()] + ["-lc10", "-ltorch_cpu"]
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        objects = [Path(scratch) / f"{source.stem}.o" for source in sources]
        compile_flags = [flag for flag in _COMPILE_FLAGS if flag != "-shared"]
        compiles: list[subprocess.Popen[str]] = []
        try:  # side by side: one source's templates take most of the time
            for source, obj in zip(sources, objects, strict=True):
                command = [compiler, *compile_flags, *includes, "-c", str(source), "-o", str(obj)]
                compiles.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
            for process in compiles:
                stdout, stderr = process.communicate()
                if process.returncode:
                    raise subprocess.CalledProcessError(process.returncode, process.args, stdout, stderr)
        finally:  # one failed: the others stop before their scratch folder goes
            for process in compiles:
                if process.poll() is None:
                    process.kill()
                    process.communicate()
        built = Path(scratch) / target.name
        command = [compiler, *_COMPILE_FLAGS, *map(str, objects), "-o", str(built), *libraries]
        subprocess.run(command, check=True, capture_output=True, text=True)
        os.replace(built, target)  # atomic: a process building beside us finds a whole file or none
    return target
