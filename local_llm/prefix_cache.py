"""Prefix cache: the KV states of recent sequences, so a request that repeats a known prefix skips recomputing it.

Agent workflows resend the whole conversation every turn; with this cache turn N only computes its new tokens.

    cache = PrefixCache(budget_bytes=1 << 30)
    cache.put(tokens, kv)                      # kv: one (keys, values) pair per layer, shape [1, heads, len, dim]
    n, kv = cache.lookup(new_tokens)           # the longest cached prefix of new_tokens (n tokens; kv sliced to n)
    cache.put(tokens, kv, scope="key-a")       # only lookups with scope="key-a" can find this entry

Entries are read-only: lookup returns views (or the entry's own tensors), and the engine copies before it appends.
Eviction is least recently used, bounded by the bytes the tensors hold. A scope (the server passes a digest of the
client's API key) keeps one client's prefixes from another: a hit would show in `cached_tokens`, and in the time to
the first token.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["KV", "PrefixCache", "kv_bytes"]

KV = list[tuple["torch.Tensor", "torch.Tensor"]]


def kv_bytes(kv: KV) -> int:
    """Bytes held by the keys and values of every layer."""
    return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in kv)


_HEAD = 8  # first tokens kept as a tuple too: most entries differ from a lookup in these, found without torch


@dataclass
class _Entry:
    tokens: torch.Tensor  # int64 [len]
    head: tuple[int, ...]  # its first _HEAD tokens
    kv: KV
    nbytes: int
    scope: str | None


class PrefixCache:
    """LRU of KV states keyed by their token ids, bounded by a memory budget (0 turns it off)."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self.nbytes = 0
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self._next_key = 0
        self._lock = threading.Lock()  # the worker writes, /metrics reads

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, tokens: Sequence[int], *, keep_last: int = 1, scope: str | None = None) -> tuple[int, KV | None]:
        """The longest prefix of `tokens` cached under `scope`, leaving at least `keep_last` tokens to compute (for
        their logits).

        Returns (n, kv) with kv holding n positions, or (0, None) on a miss.
        """
        import torch

        limit = len(tokens) - keep_last
        if limit <= 0 or not self._entries:
            return 0, None
        query: torch.Tensor | None = None  # the lookup's tokens as a tensor, made for the first entry that needs it
        head = tuple(tokens[: min(limit, _HEAD)])
        best_n, best_key = 0, None
        with self._lock:
            for key, entry in self._entries.items():
                if entry.scope != scope:
                    continue
                n = _common_head(head, entry.head)
                if n == _HEAD:
                    query = torch.tensor(tokens[:limit], dtype=torch.long) if query is None else query
                    n = _common_prefix(query, entry.tokens)
                if n > best_n:
                    best_n, best_key = n, key
            if best_key is None:
                return 0, None
            self._entries.move_to_end(best_key)
            entry = self._entries[best_key]
        if best_n == len(entry.tokens):  # all of it (the tool scoring's descriptions): no views to make
            return best_n, list(entry.kv)
        return best_n, [(k[:, :, :best_n], v[:, :, :best_n]) for k, v in entry.kv]

    def put(self, tokens: Sequence[int], kv: KV, *, scope: str | None = None) -> None:
        """Remember the KV states of `tokens` (contiguous tensors the cache now owns), for lookups under `scope`."""
        import torch

        if not tokens:
            return
        nbytes = kv_bytes(kv)
        if nbytes > self.budget_bytes:
            return
        ids = torch.tensor(tokens, dtype=torch.long)
        with self._lock:
            # An entry that is a prefix of the new one adds nothing: a growing conversation keeps one entry.
            head = tuple(tokens[:_HEAD])
            mine = [(k, e) for k, e in self._entries.items() if e.scope == scope and head[: len(e.head)] == e.head]
            for key in [k for k, e in mine if _common_prefix(e.tokens, ids) == len(e.tokens)]:
                self.nbytes -= self._entries.pop(key).nbytes
            self._entries[self._next_key] = _Entry(ids, tuple(tokens[:_HEAD]), kv, nbytes, scope)
            self._next_key += 1
            self.nbytes += nbytes
            while self.nbytes > self.budget_bytes:
                _, evicted = self._entries.popitem(last=False)
                self.nbytes -= evicted.nbytes

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.nbytes = 0


def _common_head(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    """How many first tokens two heads share (_HEAD: as many as a head holds, so the rest must be compared)."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return min(len(a), len(b))


def _common_prefix(a: torch.Tensor, b: torch.Tensor) -> int:
    n = min(len(a), len(b))
    if n == 0:
        return 0
    differ = (a[:n] != b[:n]).nonzero()
    return int(differ[0, 0]) if len(differ) else n
