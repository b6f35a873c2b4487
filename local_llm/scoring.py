"""Scoring jobs: log P(continuation | prefix) for pairs of token ids, computed on the engine's worker (the
channel tool selection uses it), reusing and filling the prefix cache.

The pairs are read side by side, up to `ROWS` a batch (`batch.SideBySide`): first what the prefix cache lacks of
the prefixes, in one pass, put in the cache (a request offering the tools of the one before scores the same
prefixes); then each prefix's last token and the continuation. A channel choice among 3 tools and 2 "no tool" heads
is then one pass of ~80 tokens, which the products of a CPU with AMX read far faster than 5 passes of 16
(`Lean.dense`). Only `POSITIONS` positions' logits (rows x tokens, vocabulary-sized each) are held at a time: a long
continuation is read in several passes.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from autoqwen.local_llm.errors import LocalLLMError
from autoqwen.local_llm.prefix_cache import KV, PrefixCache

__all__ = ["POSITIONS", "ROWS", "Scoring", "scope_of", "score"]

ROWS = 16  # pairs read side by side in one batch (their KV states in memory at once)
POSITIONS = 256  # positions whose logits one pass computes (rows x tokens); ~50 MB of floats for a 49k vocabulary


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
    """log P(continuation | prefix) of each pair, read side by side: what the cache lacks of the prefixes first
    (then put in it), then each prefix's last token and its continuation but the last token."""
    import torch

    from autoqwen.local_llm import batch

    step = max(1, POSITIONS // len(pairs))
    pasts = _pasts(model, prefix_cache, [prefix for prefix, _ in pairs], scope)
    fed = [[prefix[-1], *continuation[:-1]] for prefix, continuation in pairs]  # each predicts the token after it
    n = max(len(tokens) for tokens in fed)
    targets = torch.tensor([[*c, *[0] * (n - len(c))] for _, c in pairs])
    real = torch.arange(n)[None, :] < torch.tensor([len(c) for _, c in pairs])[:, None]
    totals = torch.zeros(len(pairs), dtype=torch.float64)
    for start, logits in batch.SideBySide(model, pasts, fed).passes(step):
        end = start + logits.shape[1]
        picked = logits.gather(2, targets[:, start:end, None]).squeeze(2) - logits.logsumexp(-1)
        totals += torch.where(real[:, start:end], picked, 0.0).sum(1)
    return [float(total) for total in totals]


def _pasts(model: Any, prefix_cache: PrefixCache, prefixes: list[list[int]], scope: str) -> list[KV | None]:
    """The KV states of each prefix but its last token: from the cache, or read side by side and put there."""
    from autoqwen.local_llm import batch

    looked_up = [prefix_cache.lookup(prefix, scope=scope) for prefix in prefixes]  # all but the last token at most
    pasts = [kv for _, kv in looked_up]
    unread = [row for row, prefix in enumerate(prefixes) if looked_up[row][0] < len(prefix) - 1]
    if not unread:
        return pasts
    cached = [looked_up[row][0] for row in unread]
    rows = batch.SideBySide(
        model, [pasts[row] for row in unread], [prefixes[row][n:] for row, n in zip(unread, cached, strict=True)]
    )
    for _ in rows.passes(max(1, 4 * POSITIONS // len(unread)), every_position=False):  # no logits: 4x the tokens
        pass
    for i, (row, n) in enumerate(zip(unread, cached, strict=True)):
        prefix = prefixes[row]
        kv = rows.kv(i, len(prefix) - n)
        prefix_cache.put(prefix, kv, scope=scope)  # the next request offering this tool reads its last token only
        pasts[row] = [(k[:, :, : len(prefix) - 1], v[:, :, : len(prefix) - 1]) for k, v in kv]
    return pasts
