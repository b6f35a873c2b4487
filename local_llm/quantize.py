"""Weight-only quantisation for CPU decoding: 4-bit linear layers (groups of 32 along the input, a scale and an
offset per group, the layout of GGUF's Q4_1) and an 8-bit output head.

Decoding one token reads every weight once, so on a CPU it is bound by memory traffic: 4-bit weights read 8x
fewer bytes than float32. The products are our kernels (`local_llm.kernels`) where the CPU has AVX-512: `q4mm`
(bfloat16 inputs, float32 sums) and `q8mm` for the head (inputs kept to ~16 bits); elsewhere PyTorch's
`_weight_int4pack_mm_for_cpu` and `_weight_int8pack_mm` (bfloat16 inputs) with the same quantised weights.

    quantize(model)                            # in place; returns the number of layers replaced
    is_4bit_gguf(Path("model.Q4_1.gguf"))      # True: its linear weights are 4-bit already, so int4 loses little
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import torch

__all__ = ["GROUP_SIZE", "Int4Product", "fuse", "is_4bit_gguf", "q4_weights", "quantize"]

log = logging.getLogger(__name__)

GROUP_SIZE = 32
_PACK_ROWS = 64  # PyTorch's 4-bit CPU kernel packs weights in blocks of 64 output rows
_BLOCK = 32  # ours, in blocks of 32 (kernels.cpp)
_FOUR_BIT = {"Q4_0", "Q4_1", "Q4_K", "IQ4_NL", "IQ4_XS"}


def is_4bit_gguf(path: Path) -> bool:
    """Whether most of a GGUF file's matrices are stored with 4-bit quantisation."""
    from gguf import GGUFReader

    kinds = [t.tensor_type.name for t in GGUFReader(path).tensors if len(t.shape) == 2]
    return bool(kinds) and sum(k in _FOUR_BIT for k in kinds) * 2 > len(kinds)


def quantize(model: Any) -> int:
    """Replace the model's linear layers by 4-bit ones (the output head by an 8-bit one), in place.

    Only the products round their inputs; norms, rotary embeddings and attention keep the model's float32
    (PyTorch's CPU attention is much slower in bfloat16).
    """
    import torch

    int4_linear, int8_linear = _classes()
    head = model.get_output_embeddings()
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, torch.nn.Linear):
                continue
            if child is head:
                setattr(parent, name, int8_linear(child))
            elif child.in_features % GROUP_SIZE == 0 and child.out_features % 16 == 0:
                setattr(parent, name, int4_linear(child))
            else:
                continue
            replaced += 1
    return replaced


def fuse(linears: list[Any]) -> Callable[[torch.Tensor], torch.Tensor]:
    """One product computing the outputs of `linears` (layers reading the same inputs) side by side.

    The product maps float32 [m, k] to [m, sum of outputs], rounding as the separate layers would (PyTorch's 4-bit
    kernel returns bfloat16, which float32 arithmetic promotes exactly). The layers' own weights become views of
    the fused ones, so fusing takes no memory twice.
    """
    import torch
    import torch.nn.functional as F

    int4_linear, _ = _classes()
    if all(isinstance(linear, int4_linear) for linear in linears) and _stackable(linears):
        kernel = linears[0].q4mm
        packed = _stacked(linears, "packed")  # packed in blocks of rows: stacking them stacks rows
        if kernel is not None:  # ours: [blocks, groups, 2, 32], blocks of rows again
            scale_zero = _stacked(linears, "scale_zero")
        else:  # PyTorch's: [groups, rows, 2]
            scale_zero = torch.cat([linear.scale_zero for linear in linears], dim=1)
        return Int4Product(
            kernel, packed, scale_zero, _bias(linears, torch.float32 if kernel is not None else torch.bfloat16)
        )
    if all(type(linear) is torch.nn.Linear for linear in linears):
        weight = torch.cat([linear.weight.detach() for linear in linears])
        for linear, part in zip(linears, _rows(weight, linears), strict=True):
            linear.weight.data = part
        float_bias = _bias(linears, weight.dtype)
        return lambda x: F.linear(x, weight, float_bias)
    # Layers the 4-bit kernel cannot stack, or of mixed kinds (quantize() leaves odd shapes in float32): one by one.
    return lambda x: torch.cat([linear(x) for linear in linears], dim=-1)


class Int4Product:
    """A fused 4-bit product (see fuse): the packed weights, scales and offsets, bias, and the kernel that runs it."""

    def __init__(self, kernel: Callable[..., Any] | None, packed: Any, scale_zero: Any, bias: Any) -> None:
        self.kernel, self.packed, self.scale_zero, self.bias = kernel, packed, scale_zero, bias

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = _int4_product(self.kernel, x, self.packed, self.scale_zero)
        return y if self.bias is None else y + self.bias

    @property
    def dense_bytes(self) -> int:
        """The memory of `dense()`'s weights: bfloat16, rows x inputs."""
        blocks, groups = self.packed.shape[:2]
        return blocks * _BLOCK * groups * GROUP_SIZE * 2

    def dense(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """This product with a bfloat16 copy of its weights, for many rows at once (our kernel only: `kernel`).

        The copy holds the weights our kernel multiplies by, (q - 8) scale + zero (`q4_weights`), rounded to
        bfloat16 and laid out once for oneDNN's products (`_laid_out`: `F.linear` lays a weight out again on every
        call, ~30 % of a product of ~80 rows); the inputs are rounded to bfloat16 as our kernel rounds them, and
        the outputs are bfloat16 too (float32 after a bias: the arithmetic that adds them promotes them exactly).
        On a CPU with AMX it reads ~80 rows 4x faster.
        """
        import torch

        assert self.kernel is not None
        linear, bias = _laid_out(q4_weights(self.packed, self.scale_zero).to(torch.bfloat16)), self.bias

        def product(x: torch.Tensor) -> torch.Tensor:
            y = linear(x.to(torch.bfloat16))
            return y if bias is None else y + bias

        return product


def q4_weights(packed: torch.Tensor, scale_zero: torch.Tensor) -> torch.Tensor:
    """The float32 weights [rows, inputs] our 4-bit kernel multiplies by, (q - 8) scale + zero, from its layouts
    (`_pack_q4`, and scales and offsets [blocks, groups, 2, 32] as bfloat16 bits); to float32 rounding, the same
    as reading them back through the kernel from the identity matrix, 100x faster."""
    import torch

    blocks, groups = packed.shape[:2]
    n, k = blocks * _BLOCK, groups * GROUP_SIZE
    # Byte 32h + 2c + u of chunk t holds row 32b + 16h + c, inputs 32g + 4t + u (low nibble) and + 2 (high).
    bytes_ = packed.view(blocks, groups, 8, 2, 16, 2).permute(0, 3, 4, 1, 2, 5)
    q = torch.stack([bytes_ & 15, bytes_ >> 4], dim=-2).reshape(n, groups, GROUP_SIZE).float()
    scale, zero = scale_zero.view(torch.bfloat16).float().permute(0, 3, 1, 2).reshape(n, groups, 2).unbind(-1)
    return ((q - 8) * scale[..., None] + zero[..., None]).view(n, k)


def _laid_out(weight: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """x -> F.linear(x, weight) for bfloat16 `weight` [outputs, inputs], with the weight laid out for oneDNN once
    (`_reorder_linear_weight`, for ~128 rows: the same sums as `F.linear`'s up to a few hundred) where PyTorch has
    its oneDNN products."""
    import torch
    import torch.nn.functional as F

    ops = torch.ops.mkldnn
    if not (torch.backends.mkldnn.is_available() and hasattr(ops, "_reorder_linear_weight")):
        return lambda x: F.linear(x, weight)
    packed = ops._reorder_linear_weight(weight, 128)
    return lambda x: ops._linear_pointwise(x, packed, None, "none", [], "")


def _stacked(linears: list[Any], name: str) -> torch.Tensor:
    """The layers' buffers `name` stacked along the first dimension; each layer's own becomes a view of it."""
    import torch

    whole = torch.cat([getattr(linear, name) for linear in linears])
    for linear, part in zip(linears, whole.split([len(getattr(linear, name)) for linear in linears]), strict=True):
        setattr(linear, name, part)
    return whole


def _stackable(linears: list[Any]) -> bool:
    """Whether 4-bit layers' packed weights stack into one: the same kernel, and whole blocks of rows."""
    kernel = linears[0].q4mm
    rows = _PACK_ROWS if kernel is None else _BLOCK
    same_kernel = all(linear.q4mm is kernel for linear in linears)
    return same_kernel and all(linear.out_features % rows == 0 for linear in linears[:-1])


def _int4_product(kernel: Callable[..., Any] | None, x: torch.Tensor, packed: Any, scale_zero: Any) -> torch.Tensor:
    import torch

    if kernel is not None:
        return kernel(x.float().contiguous(), packed, scale_zero)
    return torch._weight_int4pack_mm_for_cpu(x.to(torch.bfloat16), packed, GROUP_SIZE, scale_zero)


def _rows(fused: torch.Tensor, linears: list[Any]) -> list[torch.Tensor]:
    """Each layer's rows of a fused weight, as views."""
    return list(fused.split([linear.out_features for linear in linears]))


def _bias(linears: list[Any], dtype: torch.dtype) -> torch.Tensor | None:
    """The layers' biases side by side (zeros for a layer without one), or None if none has one."""
    import torch

    if all(linear.bias is None for linear in linears):
        return None
    return torch.cat(
        [
            torch.zeros(linear.out_features, dtype=dtype) if linear.bias is None else linear.bias.detach().to(dtype)
            for linear in linears
        ]
    )


@functools.cache
def _classes() -> tuple[type, type]:
    """(Int4Linear, Int8Linear), defined on first use so that importing this module does not import torch."""
    import torch

    class QuantizedLinear(torch.nn.Module):
        """y = x W^T + b, W held in fewer bits (the product rounds its inputs); output in the input's dtype."""

        def __init__(self, linear: torch.nn.Linear, bias_dtype: torch.dtype = torch.bfloat16) -> None:
            super().__init__()
            self.out_features = linear.out_features
            self.bias = None if linear.bias is None else torch.nn.Parameter(linear.bias.detach().to(bias_dtype))

        def product(self, rows: torch.Tensor) -> torch.Tensor:
            raise NotImplementedError

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.product(x.reshape(-1, x.shape[-1]))
            if self.bias is not None:
                y = y + self.bias
            return y.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    class Int4Linear(QuantizedLinear):
        """W in 4 bits: per group of 32 inputs, w = q * scale + min, q in 0..15."""

        def __init__(self, linear: torch.nn.Linear) -> None:
            from autoqwen.local_llm import kernels

            n, k = linear.weight.shape
            kernel = kernels.load("q4mm") if n % _BLOCK == 0 else None
            super().__init__(linear, torch.float32 if kernel is not None else torch.bfloat16)
            self.q4mm = kernel
            w = linear.weight.detach().float()
            groups = w.reshape(n, k // GROUP_SIZE, GROUP_SIZE)
            low, high = groups.amin(-1, keepdim=True), groups.amax(-1, keepdim=True)
            scale = ((high - low) / 15).clamp(min=1e-10)
            q = torch.round((groups - low) / scale).clamp(0, 15).reshape(n, k).to(torch.int32)
            # Both kernels compute (q - 8) * scale + zero, so zero = min + 8 * scale; layout [k / group, n, 2].
            scale_zero = torch.cat([scale, low + 8 * scale], dim=-1).transpose(0, 1).to(torch.bfloat16)
            if kernel is not None:
                self.register_buffer("packed", _pack_q4(q))
                split = scale_zero.reshape(k // GROUP_SIZE, n // _BLOCK, _BLOCK, 2).permute(1, 0, 3, 2)
                self.register_buffer("scale_zero", split.contiguous().view(torch.int16))
            else:
                self.register_buffer("packed", torch._convert_weight_to_int4pack_for_cpu(q, 2))
                self.register_buffer("scale_zero", scale_zero.contiguous())

        def product(self, rows: torch.Tensor) -> torch.Tensor:
            # One kernel for prompts and decode steps alike: a dense bfloat16 copy would prefill faster but round
            # the weights differently, so a prompt read from the prefix cache could decode differently.
            return _int4_product(self.q4mm, rows, self.packed, self.scale_zero)

    class Int8Linear(QuantizedLinear):
        """W in 8 bits, one scale per output row."""

        def __init__(self, linear: torch.nn.Linear) -> None:
            from autoqwen.local_llm import kernels

            n, k = linear.weight.shape
            kernel = kernels.load("q8mm") if n % 16 == 0 and k % GROUP_SIZE == 0 else None
            super().__init__(linear, torch.float32 if kernel is not None else torch.bfloat16)
            self.q8mm = kernel
            w = linear.weight.detach().float()
            scale = (w.abs().amax(dim=1) / 127).clamp(min=1e-10)
            q = torch.round(w / scale[:, None]).clamp(-127, 127)
            if self.q8mm is not None:
                # q + 128 as uint8, in blocks of 16 rows and groups of 32 inputs, 4 inputs of each row side by side
                split = (q + 128).to(torch.uint8).view(n // 16, 16, k // GROUP_SIZE, 8, 4).permute(0, 2, 3, 1, 4)
                self.register_buffer("weight_q8", split.reshape(n // 16, k // GROUP_SIZE, 8, 64).contiguous())
                self.register_buffer("scale", scale.contiguous())
            else:
                self.register_buffer("weight_int8", q.to(torch.int8))
                self.register_buffer("scale", scale.to(torch.bfloat16))

        def product(self, rows: torch.Tensor) -> torch.Tensor:
            if self.q8mm is not None:
                return self.q8mm(rows.float().contiguous(), self.weight_q8, self.scale)
            return torch.ops.aten._weight_int8pack_mm(rows.to(torch.bfloat16), self.weight_int8, self.scale)

        @property
        def dense_bytes(self) -> int:
            """The memory of `dense()`'s weights: rows x inputs in 8 bits twice (AMX's tiles and rows), else in
            bfloat16 and 8 bits."""
            groups = int(cast(torch.Tensor, self.weight_q8).shape[1])
            copies = 2 if _amx_head(self.out_features, groups * GROUP_SIZE) is not None else 3
            return self.out_features * groups * GROUP_SIZE * copies

        def dense(self, exact: int = 32) -> DenseHead:
            """This layer (without its bias; our kernel only: `q8mm`) for many rows at once, from its 8-bit
            integers (`DenseHead`)."""
            assert self.q8mm is not None and self.bias is None
            blocks, groups = self.weight_q8.shape[:2]
            n, inputs = blocks * 16, groups * GROUP_SIZE
            # q8mm's layout undone (see __init__): q + 128 in blocks of 16 rows and groups of 32 inputs
            stored = self.weight_q8.view(blocks, groups, 8, 16, 4).permute(0, 3, 1, 2, 4).reshape(n, inputs)
            integers = (stored.to(torch.int16) - 128).to(torch.int8).contiguous()
            return DenseHead(integers, self.scale, exact)

    return Int4Linear, Int8Linear


def _amx_head(n: int, k: int) -> Callable[..., Any] | None:
    """`head_logprobs_amx` where it runs and takes a head of n outputs and k inputs, else None."""
    return _head_logprobs_amx() if n % 32 == 0 and k % 64 == 0 else None


@functools.cache
def _head_logprobs_amx() -> Callable[..., Any] | None:
    """`head_logprobs_amx` if it runs here: the CPU lists AMX's 8-bit tiles, and Linux lets this process use them
    (it does not before 5.16, nor in a sandbox that refuses the request): tried once on a head of 32 outputs."""
    import torch

    from autoqwen.local_llm import kernels

    ours = kernels.load("head_logprobs_amx")
    if ours is None:
        return None
    try:
        ours(torch.zeros(1, 64), torch.zeros(2, 1, 16, 64, dtype=torch.int8), torch.ones(32), torch.zeros(1).long())
    except RuntimeError as exc:
        log.info("the 8-bit head's log-probabilities without AMX tiles: %s", exc)
        return None
    return ours


class DenseHead:
    """An 8-bit head's copy for many rows at once (`Int8Linear.dense`): `head.logprobs(x, targets)` each row's
    log-probability of its target token, in one call of ours, and `head(x)` the logits.

    On a CPU with AMX's 8-bit tiles, `logprobs` sums the rows' inputs as 16-bit integers with the integers laid out
    for the tiles, about as exact as the 8-bit head's own product, and writes no logits (`head_logprobs_amx`, 1.4-1.8x
    faster at 70-117 rows, docs/engine.md#scoring). Elsewhere, and for `head(x)` (built then, and not counted in
    `Int8Linear.dense_bytes` beside the tiles: the scoring asks only for log-probabilities), a bfloat16 copy of the
    integers (exact in bfloat16) is multiplied in oneDNN's products (`_laid_out`), then by the row scales; inputs and
    outputs are rounded to bfloat16 (2**-9 of each), so each row's `exact` largest outputs, which make most of a
    log-sum-exp over them, are computed again in float32 from the integers, and `logprobs` reads them in one call
    (`head_logprobs`) where PyTorch runs six operations over [rows, vocabulary] floats."""

    def __init__(self, integers: torch.Tensor, scale: torch.Tensor, exact: int) -> None:
        from autoqwen.local_llm import kernels

        self.integers, self.scale, self.exact = integers, scale, min(exact, len(scale))
        ours = kernels.load("head_logprobs")  # in the library of q8mm, which an 8-bit head's copy needs
        assert ours is not None
        self.ours = ours
        n, k = integers.shape
        self.amx, self.tiles = _amx_head(n, k), None
        if self.amx is not None:  # 16 outputs' 4 consecutive inputs side by side in each 64-byte tile row
            quads = integers.view(n // 16, 16, k // 64, 16, 4).permute(0, 2, 3, 1, 4)
            self.tiles = quads.reshape(n // 16, k // 64, 16, 64)

    @functools.cached_property
    def linear(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """The bfloat16 copy's product (built on first use: `logprobs` needs none where AMX's tiles read the head)."""
        import torch

        return _laid_out(self.integers.to(torch.bfloat16))

    def _product(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows of x as float32 [m, inputs], and their bfloat16 product with the integers [m, vocabulary]."""
        import torch

        rows = self._rows(x)
        return rows, self.linear(rows.to(torch.bfloat16))

    def _rows(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(-1, self.integers.shape[1]).float().contiguous()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        rows, y = self._product(x)
        logits = y.float() * self.scale
        top = logits.topk(self.exact, dim=-1).indices  # [rows, exact]
        again = torch.einsum("mk,mjk->mj", rows, self.integers[top].float()) * self.scale[top]
        return logits.scatter_(1, top, again).view(*x.shape[:-1], -1)

    def logprobs(self, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """log P(targets[i]) after each row x[i] (x [m, inputs], targets [m]): float32 [m]."""
        if self.amx is not None:
            return self.amx(self._rows(x), self.tiles, self.scale, targets.contiguous())
        rows, y = self._product(x)
        return self.ours(y.contiguous(), self.scale, rows, self.integers, targets.contiguous(), self.exact)


def _pack_q4(q: torch.Tensor) -> torch.Tensor:
    """4-bit values q [n, k] (int, 0..15) in q4mm's layout: uint8 [n / 32, k / 32, 8, 64] (see kernels.cpp)."""
    import torch

    n, k = q.shape
    # Row 32b + 16h + c, input 32g + 4t + 2s + u -> block b, group g, chunk t, byte 32h + 2c + u, nibble s.
    nibbles = q.to(torch.uint8).view(n // _BLOCK, 2, 16, k // GROUP_SIZE, 8, 2, 2)
    bytes_ = nibbles[..., 0, :] | (nibbles[..., 1, :] << 4)
    return bytes_.permute(0, 3, 4, 1, 2, 5).reshape(n // _BLOCK, k // GROUP_SIZE, 8, 64).contiguous()
