"""The prefix cache finds the longest cached prefix of a lookup, whether entries differ from it in their first
tokens (compared without torch) or later."""

from __future__ import annotations

import random

import pytest
import torch

from autoqwen.local_llm.prefix_cache import PrefixCache


def states(n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(torch.zeros(1, 1, n, 2), torch.zeros(1, 1, n, 2))]


@pytest.mark.parametrize("seed", range(20))
def test_a_lookup_finds_the_longest_common_prefix(seed: int) -> None:
    rng = random.Random(seed)
    base = [rng.randrange(5) for _ in range(30)]
    entries = [base[: rng.randrange(1, 30)] + [rng.randrange(5) for _ in range(rng.randrange(0, 10))] for _ in range(8)]
    cache = PrefixCache(budget_bytes=1 << 30)
    for tokens in entries:
        cache.put(tokens, states(len(tokens)))
    query = base[: rng.randrange(1, 30)] + [rng.randrange(5) for _ in range(rng.randrange(0, 10))]

    def common(a: list[int], b: list[int]) -> int:
        return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))

    limit = len(query) - 1  # the last token is left to compute
    expected = max(common(query[:limit], e) for e in entries)  # an entry dropped by put is a prefix of one kept
    n, kv = cache.lookup(query)
    assert n == expected
    assert (kv is None) if n == 0 else kv[0][0].shape[2] == n
