"""The batch of sequences decoding together: their KV states in shared buffers, stepped with one forward pass.

Rows are right-aligned in a common width: a row shorter than the batch has masked columns ("holes") on its
left, and a step that feeds rows different numbers of tokens leaves holes before the shorter rows' tokens. A
4-D attention mask hides every hole, and each row keeps its own position ids, so a row's result does not depend
on what else is in the batch.

    batch = Batch(model)
    row = batch.add(kv)                        # kv from a prefill: one (keys, values) per layer, [1, heads, n, dim]
    logits = batch.step([[token_a], [token_b, forced_1]])   # [rows, vocab], each row's last position
    kv, = batch.remove([row])                  # that row's KV, holes left out, e.g. for the prefix cache

Buffers grow by doubling, so a step copies only its new tokens (transformers' DynamicCache re-concatenates the
whole cache on every token).

`SideBySide` reads rows the same way for their logits (the tool scoring): each row's tokens after its own past
states, several rows in one pass.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from autoqwen.local_llm.llama import Lean, logprobs_of
from autoqwen.local_llm.prefix_cache import KV

if TYPE_CHECKING:
    import torch

__all__ = ["Batch", "SideBySide", "all_logits", "forward", "new_cache"]

_RESERVE = 64  # columns a batch's buffers keep spare beyond their tokens, at least


def new_cache(model: Any, kv: KV | None = None, *, reserve: int = 0) -> Any:
    """A transformers Cache for `model` over growable buffers, holding a copy of `kv` if given."""
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    cache.layers[:] = [_buffer_layer(kv[i] if kv else None, reserve=reserve) for i in range(len(cache.layers))]
    return cache


def forward(
    model: Any,
    input_ids: torch.Tensor,
    cache: Any,
    attention_mask: torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Logits of the last position of each row, [rows, vocab], appending the inputs' KV to `cache`.

    Llama-family models run the lean forward pass (`local_llm.llama`); others run transformers' own.
    """
    lean = Lean.of(model)
    if lean is not None:
        return lean(input_ids, cache, attention_mask, position_ids)
    out = model(
        input_ids=input_ids,
        cache=cache,
        use_cache=True,
        logits_to_keep=1,
        attention_mask=None if attention_mask is None else _additive(attention_mask),
        position_ids=position_ids,
    )
    return out.logits[:, -1].float()


def _additive(mask: torch.Tensor) -> torch.Tensor:
    """A boolean 4-D mask (True: attend) as the additive float mask every attention of transformers takes (its
    eager attention adds a mask to the scores: a boolean one would add 0 and 1)."""
    import torch

    return torch.zeros(mask.shape).masked_fill_(~mask, torch.finfo(torch.float32).min)


def all_logits(model: Any, input_ids: torch.Tensor, cache: Any = None) -> torch.Tensor:
    """Logits of every input position, [rows, n, vocab], appending the inputs' KV to `cache` (a new one if None)."""
    cache = new_cache(model) if cache is None else cache
    lean = Lean.of(model)
    if lean is not None:
        return lean(input_ids, cache, last_only=False)
    return model(input_ids=input_ids, cache=cache, use_cache=True).logits.float()


class SideBySide:
    """Rows read side by side for their logits (the tool scoring): each row's `fed` tokens after its own past KV
    states (None: none), several rows in one pass, the logits of each row's tokens from its `first` on.

    Pasts are right-aligned and a row with fewer tokens is padded after them; no token attends to a pad or to
    another row's states, and each keeps its own positions. The lean pass's products read the tokens, not the
    padding, so a prefix read whole next to one read from the cache costs its tokens only. Llama-family models
    read with bfloat16 copies of 4-bit weights where that pays (`Lean.dense`): scores then move by rounding.

        rows = SideBySide(model, pasts, fed, first)
        for row, column, logprobs in rows.passes(targets, tokens=1024, logits=256):  # of targets[row, column]
            ...
        kv = rows.kv(0, 5)                         # row 0's past and its first 5 fed tokens' states
    """

    def __init__(
        self, model: Any, pasts: Sequence[KV | None], fed: Sequence[Sequence[int]], first: Sequence[int]
    ) -> None:
        import torch

        self.model = model
        self.lengths = torch.tensor([_columns(kv) for kv in pasts])
        self.width, n = int(self.lengths.max()), max(len(tokens) for tokens in fed)
        self.cache = _side_by_side(model, pasts, self.width, room=n)
        self.past_real = torch.arange(self.width)[None, :] >= (self.width - self.lengths)[:, None]  # [rows, width]
        self.fed_real = torch.arange(n)[None, :] < torch.tensor([len(tokens) for tokens in fed])[:, None]
        self.wanted = self.fed_real & (torch.arange(n)[None, :] >= torch.tensor(first)[:, None])
        self.ids = torch.tensor([[*tokens, *[0] * (n - len(tokens))] for tokens in fed])

    def passes(
        self, targets: torch.Tensor, *, tokens: int, logits: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Read the rows' tokens in passes of at most `tokens` tokens and `logits` wanted logits (at least one
        column a pass); yields (rows, columns, logprobs [k]): log P(targets[rows[i], columns[i]]) after
        fed[rows[i]][columns[i]], every wanted one once, in order (targets: token ids [rows, fed columns])."""
        import torch

        lean = Lean.of(self.model)
        rows, n = self.ids.shape
        # What a column costs: its tokens and wanted logits; transformers' own forward reads the padding too, and
        # computes every place's logits.
        costs = [self.fed_real.sum(0).tolist(), self.wanted.sum(0).tolist()] if lean else [[rows] * n] * 2
        start = 0
        while start < n:
            end = _end(start, costs, (tokens, logits))
            queries, columns = torch.arange(start, end)[:, None], torch.arange(end)[None, :]
            seen = (self.fed_real[:, None, :end] & (columns <= queries)[None]) | (columns == queries)[None]
            mask = torch.cat([self.past_real[:, None, :].expand(-1, end - start, -1), seen], dim=2)[:, None]
            positions = self.lengths[:, None] + torch.arange(start, end)[None, :]
            ids, real, wanted = self.ids[:, start:end], self.fed_real[:, start:end], self.wanted[:, start:end]
            row, column = wanted.nonzero(as_tuple=True)  # row-major, as the tokens are read
            picked = targets[row, column + start]
            if lean is not None:
                at = wanted[real].nonzero().squeeze(1)
                out = lean.dense()(ids, self.cache, mask, positions, tokens=real, at=at, targets=picked)
            else:
                kwargs = {"attention_mask": _additive(mask), "position_ids": positions}
                out = self.model(input_ids=ids, cache=self.cache, use_cache=True, **kwargs).logits[row, column]
                out = logprobs_of(out, picked)
            if len(row):
                yield row, column + start, out
            start = end

    def kv(self, row: int, end: int) -> KV:
        """The KV states of `row`'s past and of its first `end` fed tokens, contiguous: read already (after the
        passes that read them; the columns after hold nothing before). Views of one [layers, 2, 1, heads, n, dim]
        copy, which `_side_by_side` reads back at once (`_stacked`)."""
        import torch

        first, last = self.width - int(self.lengths[row]), self.width + end
        parts = [
            part[row : row + 1, :, first:last] for layer in self.cache.layers for part in (layer.keys, layer.values)
        ]
        whole = torch.stack(parts).view(len(parts) // 2, 2, *parts[0].shape)  # [layers, 2, 1, heads, n, dim]
        return [(whole[i, 0], whole[i, 1]) for i in range(len(whole))]


def _end(start: int, costs: Sequence[Sequence[int]], budgets: Sequence[int]) -> int:
    """The end of the columns from `start` whose summed costs stay within the budgets (one column at least)."""
    end, spent = start, [0] * len(budgets)
    while end < len(costs[0]):
        more = [total + cost[end] for total, cost in zip(spent, costs, strict=True)]
        if end > start and any(total > budget for total, budget in zip(more, budgets, strict=True)):
            break
        spent, end = more, end + 1
    return end


def _columns(kv: KV | None) -> int:
    return int(kv[0][0].shape[2]) if kv else 0


def _side_by_side(model: Any, pasts: Sequence[KV | None], width: int, *, room: int) -> Any:
    """A cache of `pasts` as rows right-aligned in `width` columns (zeros before a shorter one), with `room` more
    (written by the passes before they read it): one buffer for every layer's keys and values, each row's states
    copied in at once."""
    import torch

    if not width:
        return new_cache(model, reserve=room)
    like = next(kv for kv in pasts if kv and _columns(kv))
    (_, heads, _, dim), layers = like[0][0].shape, len(like)
    out = torch.empty(layers, 2, len(pasts), heads, width + room, dim, dtype=like[0][0].dtype)  # room: written
    for row, kv in enumerate(pasts):
        if (n := _columns(kv)) < width:
            out[:, :, row, :, : width - n] = 0  # a shorter row's hole
        if kv and n:
            out[:, :, row, :, width - n : width] = _stacked(kv)
    return _cache_over([(out[i, 0], out[i, 1]) for i in range(layers)], width)


def _stacked(kv: KV) -> torch.Tensor:
    """`kv`'s states as one [layers, 2, heads, n, dim] tensor: a view where they lie in one storage at even steps,
    keys then values, layer after layer (`SideBySide.kv`'s views of one copy, as the prefix cache's lookups slice
    them: no copy), else stacked."""
    import torch

    parts = [part for pair in kv for part in pair]
    first, last = parts[0], parts[-1]
    if len(kv) > 1 and first.shape[0] == 1 and first.untyped_storage().data_ptr() == last.untyped_storage().data_ptr():
        start, size = first.data_ptr(), first.element_size()
        half, layer = (parts[1].data_ptr() - start) // size, (parts[2].data_ptr() - start) // size
        at = [start + (i // 2 * layer + i % 2 * half) * size for i in range(len(parts))]
        shaped = len({(p.shape, p.stride()) for p in parts}) == 1
        if half > 0 and layer > 0 and shaped and [p.data_ptr() for p in parts] == at:  # between the first and last
            return first.as_strided((len(kv), 2, *first.shape[1:]), (layer, half, *first.stride()[1:]))
    return torch.stack([part[0] for part in parts]).view(len(kv), 2, *first.shape[1:])


class Batch:
    """Sequences that decode together, one row each."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.cache: Any = None
        self.real: torch.Tensor | None = None  # bool [rows, width]: which columns hold a row's tokens
        self.positions: list[int] = []  # next position id of each row

    @property
    def rows(self) -> int:
        return len(self.positions)

    @property
    def width(self) -> int:
        return 0 if self.real is None else int(self.real.shape[1])

    def add(self, kv: KV | None) -> int:
        """Append a row holding `kv` (n positions; None: none yet); returns its row index."""
        import torch

        n = 0 if kv is None else int(kv[0][0].shape[2])
        width = max(self.width, n)
        real = torch.zeros(self.rows + 1, width, dtype=torch.bool)
        if self.real is not None:
            real[: self.rows, width - self.width :] = self.real
        real[self.rows, width - n :] = True
        before = [(layer.keys, layer.values) for layer in self.cache.layers] if self.width else None
        layers: KV = []
        for i in range(len(before or kv or [])):
            k0, v0 = before[i] if before else (None, None)
            k1, v1 = kv[i] if kv else (None, None)
            layers.append((_stack(k0, self.rows, k1, width), _stack(v0, self.rows, v1, width)))
        # No columns yet: the first step sizes the buffers.
        self.cache = _cache_over(layers, width) if width else new_cache(self.model)
        self.real = real
        self.positions.append(n)
        return self.rows - 1

    def remove(self, rows: Sequence[int]) -> list[KV]:
        """Drop rows; returns each one's KV states (contiguous, holes left out), in the order given. The other rows
        keep their order; their buffers are rebuilt once, without the columns that only held the dropped rows."""
        import torch

        assert self.real is not None
        cache_layers = self.cache.layers if self.width else []
        out: list[KV] = []
        for row in rows:
            mine = self.real[row].nonzero().squeeze(1)
            out.append([(c.keys[row : row + 1, :, mine], c.values[row : row + 1, :, mine]) for c in cache_layers])
        gone = set(rows)
        kept = [i for i in range(self.rows) if i not in gone]
        self.positions = [self.positions[i] for i in kept]
        if not kept:
            self.cache, self.real = None, None
            return out
        real = self.real[torch.tensor(kept)]
        # Compact: every row right-aligned without holes, the width that of the longest row.
        lengths = real.sum(dim=1)
        width, old = int(lengths.max()), real.shape[1]
        self.real = torch.arange(width)[None, :] >= (width - lengths)[:, None]
        if not width:
            self.cache = new_cache(self.model)
            return out
        columns = None  # rows that are right-aligned already keep their last `width` columns as they are
        if real[:, : old - width].any() or not torch.equal(real[:, old - width :], self.real):
            # Holes between tokens: each row's real columns in order (holes, -1, sorted first).
            columns = torch.where(real, torch.arange(old), -1).sort(dim=1).values[:, old - width :]
            columns = columns.clamp(min=0)[:, None, :, None]
        layers = [
            (_compact(c.keys, kept, width, columns), _compact(c.values, kept, width, columns)) for c in cache_layers
        ]
        self.cache = _cache_over(layers, width)
        return out

    def step(self, tokens: list[list[int]]) -> torch.Tensor:
        """Feed each row its tokens (at least one each); returns logits of each row's last token, [rows, vocab]."""
        import torch

        assert self.real is not None and len(tokens) == self.rows
        p = max(len(t) for t in tokens)
        # Built as lists, then one tensor each: a few operations per step rather than a few per row.
        pads = [p - len(t) for t in tokens]
        ids = torch.tensor([[0] * pad + t for pad, t in zip(pads, tokens, strict=True)])
        new_real = torch.tensor([[False] * pad + [True] * (p - pad) for pad in pads])
        starts = self.positions
        positions = torch.tensor([[s] * pad + list(range(s, s + p - pad)) for pad, s in zip(pads, starts, strict=True)])
        self.positions = [s + p - pad for pad, s in zip(pads, starts, strict=True)]
        width = self.width
        real = torch.cat([self.real, new_real], dim=1)
        if (p == 1 or self.rows == 1) and bool(real.all()):
            mask = None  # nothing to hide: plain causal attention (for one row, after its cached tokens)
        else:
            columns = torch.arange(width + p)
            queries = torch.arange(width, width + p)
            causal = columns[None, :] <= queries[:, None]
            mask = (real[:, None, :] & causal[None]) | (columns[None, :] == queries[:, None])[None]
            mask = mask[:, None]  # [rows, 1, p, width + p]; each query always sees itself, so no row is all hidden
        self.real = real
        return forward(self.model, ids, self.cache, attention_mask=mask, position_ids=positions)


def _room(width: int, reserve: int = _RESERVE) -> int:
    """Columns to allocate for `width` tokens: room to grow into (double, and at least `reserve` spare)."""
    return max(2 * width, width + reserve)


def _stack(batch: torch.Tensor | None, rows: int, row: torch.Tensor | None, width: int) -> torch.Tensor:
    """A buffer holding `batch` [rows, h, w, d] with `row` [1, h, n, d] appended, both right-aligned in its first
    `width` columns (None: no columns); the holes are zeros."""
    import torch

    like = row if batch is None else batch
    assert like is not None
    out = torch.empty(rows + 1, like.shape[1], _room(width), like.shape[3], dtype=like.dtype)
    w = 0 if batch is None else batch.shape[2]
    n = 0 if row is None else row.shape[2]
    out[:rows, :, : width - w].zero_()
    out[rows, :, : width - n].zero_()
    if batch is not None:
        out[:rows, :, width - w : width] = batch
    if row is not None:
        out[rows, :, width - n : width] = row[0]
    return out


def _compact(states: torch.Tensor, kept: list[int], width: int, columns: torch.Tensor | None) -> torch.Tensor:
    """A buffer holding the `kept` rows of states [rows, h, w, d] in its first `width` columns: their last `width`
    columns (columns None), or each row's columns in the order `columns` [kept, 1, width, 1] gives."""
    import torch

    out = torch.empty(len(kept), states.shape[1], _room(width), states.shape[3], dtype=states.dtype)
    if columns is None:
        for i, row in enumerate(kept):  # one copy each: long contexts make this the cost of a removal
            out[i, :, :width] = states[row, :, states.shape[2] - width :]
    else:
        picked = states[torch.tensor(kept)]
        out[:, :, :width] = picked.gather(2, columns.expand(-1, picked.shape[1], -1, picked.shape[3]))
    return out


def _cache_over(buffers: KV, length: int) -> Any:
    """A transformers Cache whose layers use `buffers` (per layer keys and values [rows, h, room, d], their first
    `length` columns filled) as they are, without copying them. Not made from a model's config: that builds a layer
    of its own for each model layer first (~0.5 ms, ~2 % of a tool scoring pass)."""
    from transformers import DynamicCache

    cache = DynamicCache()
    cache.layers[:] = [_buffer_layer_class()(_RESERVE).adopt(k, v, length) for k, v in buffers]
    return cache


def _buffer_layer(kv: tuple[torch.Tensor, torch.Tensor] | None, *, reserve: int) -> Any:
    """A transformers cache layer over a buffer with spare room, holding a copy of `kv` if given."""
    layer = _buffer_layer_class()(reserve)
    if kv is not None:
        layer.update(*kv)
    return layer


@functools.cache
def _buffer_layer_class() -> type:
    from transformers.cache_utils import DynamicLayer

    class BufferLayer(DynamicLayer):
        """DynamicLayer whose appends copy only the new tokens (the buffer doubles when full)."""

        is_croppable = False

        def __init__(self, reserve: int) -> None:
            super().__init__()
            self.length = 0
            self.reserve = reserve
            self.buffers: tuple[torch.Tensor, torch.Tensor] | None = None

        @property
        def keys(self) -> torch.Tensor | None:
            return None if self.buffers is None else self.buffers[0].narrow(2, 0, self.length)

        @keys.setter
        def keys(self, value: torch.Tensor | None) -> None:  # the base class's __init__ sets None; nothing else may
            assert value is None

        @property
        def values(self) -> torch.Tensor | None:
            return None if self.buffers is None else self.buffers[1].narrow(2, 0, self.length)

        @values.setter
        def values(self, value: torch.Tensor | None) -> None:
            assert value is None

        def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *_args: Any, **_kwargs: Any) -> Any:
            n = key_states.shape[2]
            if self.buffers is None:
                rows, heads, _, dim = key_states.shape
                self.buffers = self._grown(rows, heads, dim, key_states.dtype, n)
            k, v = self.room(n)
            k.narrow(2, self.length, n).copy_(key_states)
            v.narrow(2, self.length, n).copy_(value_states)
            self.length += n
            self.is_initialized = True
            return k.narrow(2, 0, self.length), v.narrow(2, 0, self.length)

        def room(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
            """The buffers, grown if they have no room for n more columns (they must exist)."""
            assert self.buffers is not None
            k = self.buffers[0]
            if self.length + n > k.shape[2]:
                rows, heads, _, dim = k.shape
                grown = self._grown(rows, heads, dim, k.dtype, n)
                for new, old in zip(grown, self.buffers, strict=True):
                    new[:, :, : self.length] = old[:, :, : self.length]
                self.buffers = grown
            return self.buffers

        def _grown(self, rows: int, heads: int, dim: int, dtype: torch.dtype, n: int) -> tuple[Any, Any]:
            import torch

            room = _room(self.length + n, self.reserve)
            return (torch.empty(rows, heads, room, dim, dtype=dtype), torch.empty(rows, heads, room, dim, dtype=dtype))

        def adopt(self, keys: torch.Tensor, values: torch.Tensor, length: int) -> Any:
            """Use `keys` and `values` [rows, h, room, d] as the buffers, their first `length` columns filled."""
            self.buffers, self.length = (keys, values), length
            self.is_initialized = True
            return self

        def get_seq_length(self) -> int:
            return self.length

        def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
            return self.length + query_length, 0

    return BufferLayer
