"""Scoring jobs: log P(continuation | prefix) for pairs of token ids, computed on the engine's worker (the
channel tool selection uses it), reusing and filling the prefix cache.

The pairs are read side by side, up to `ROWS` a batch (`batch.SideBySide`): each row what the prefix cache lacks
of its prefix (all but its last token put in the cache after, which every reading feeds: a request offering the
tools of the one before scores the same prefixes) and the continuation, in one pass. A channel choice among 3
tools and the "no tool" head is then one pass of ~64 tokens, which the products of a CPU with AMX read far faster
than 4 passes of 16 (`Lean.dense`). Only `POSITIONS` positions' logits (vocabulary-sized each) and `TOKENS`
tokens are read a pass: a long continuation takes several.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from autoqwen.local_llm.errors import LocalLLMError
from autoqwen.local_llm.prefix_cache import PrefixCache

__all__ = ["POSITIONS", "ROWS", "TOKENS", "Scoring", "scope_of", "score"]

ROWS = 16  # pairs read side by side in one batch (their KV states in memory at once)
POSITIONS = 256  # positions whose logits one pass computes; ~50 MB of floats for a 49k vocabulary
TOKENS = 4 * POSITIONS  # tokens one pass reads


class Scoring:
    """A request for log-probabilities: for each (prefix, continuation) pair, log P(continuation | prefix).

    `scope` is the prefix cache scope the job reads and fills (see PrefixCache).
    """

    def __init__(self, pairs: Sequence[tuple[Sequence[int], Sequence[int]]], *, scope: str | None = None) -> None:
        self.pairs = [(list(a), list(b)) for a, b in pairs]
        self.scope = scope
        self.scores: list[float] = []
        self.error: BaseException | None = None
        self.done = threading.Event()


def score(model: Any, prefix_cache: PrefixCache, job: Scoring) -> None:
    """Fill `job.scores` (or `job.error`) and set `job.done`."""
    try:
        for start in range(0, len(job.pairs), ROWS):
            job.scores.extend(_read(model, prefix_cache, job.pairs[start : start + ROWS], scope_of(job.scope)))
    except Exception as exc:
        job.error = LocalLLMError(f"scoring failed: {exc}")
    job.done.set()


def scope_of(scope: str | None) -> str:
    """The prefix cache scope of scoring's prefixes: apart from the prompts', whose states are read by our 4-bit
    kernel (a prompt that began like a scored prefix must decode as if read afresh; scope digests are hex)."""
    return f"scoring:{scope or ''}"


def _read(model: Any, prefix_cache: PrefixCache, pairs: list[tuple[list[int], list[int]]], scope: str) -> list[float]:
    """log P(continuation | prefix) of each pair, read side by side: what the cache lacks of each prefix (then put
    in it) and its continuation but the last token, in the same passes."""
    import torch

    from autoqwen.local_llm import batch

    looked_up = [prefix_cache.lookup(prefix, scope=scope) for prefix, _ in pairs]  # all but the last token at most
    cached = [n for n, _ in looked_up]
    fed = [[*prefix[n:], *continuation[:-1]] for (prefix, continuation), n in zip(pairs, cached, strict=True)]
    first = [len(prefix) - n - 1 for (prefix, _), n in zip(pairs, cached, strict=True)]  # the prefix's last token
    width = max(len(tokens) for tokens in fed)
    targets = torch.tensor(  # the token each fed token predicts
        [[*[0] * f, *c, *[0] * (width - f - len(c))] for (_, c), f in zip(pairs, first, strict=True)]
    )
    totals = torch.zeros(len(pairs), dtype=torch.float64)
    rows = batch.SideBySide(model, [kv for _, kv in looked_up], fed, first)
    for row, _, logprobs in rows.passes(targets, tokens=TOKENS, logits=POSITIONS):
        totals.index_add_(0, row, logprobs.double())
    for i, ((prefix, _), n) in enumerate(zip(pairs, cached, strict=True)):
        if n < len(prefix) - 1:  # all but the last token, which every reading feeds for its logits
            prefix_cache.put(prefix[:-1], rows.kv(i, len(prefix) - 1 - n), scope=scope)
    return [float(total) for total in totals]
