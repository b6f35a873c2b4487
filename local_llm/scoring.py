"""Scoring jobs: log P(continuation | prefix) for pairs of token ids, computed on the engine's worker (the
channel tool selection uses it), reusing and filling the prefix cache.

Only the positions that predict a continuation token need logits: the prefix is read in one pass that keeps its
last position's, and the continuation in chunks of `CHUNK` tokens whose logits give their tokens' log-probabilities
and are dropped. A long continuation therefore costs `CHUNK` rows of vocabulary-sized logits at a time, not one
row per token of the whole text.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from autoqwen.local_llm.errors import LocalLLMError
from autoqwen.local_llm.prefix_cache import KV, PrefixCache

if TYPE_CHECKING:
    import torch

__all__ = ["CHUNK", "Scoring", "kv_of", "score"]

CHUNK = 128  # continuation tokens read per forward pass (that many rows of logits at once)
MERGE_TAIL = 32  # an uncached prefix tail up to this long is read in the same pass as the continuation


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
    import torch

    from autoqwen.local_llm import batch

    try:
        for prefix, continuation in job.pairs:
            # Requests offering the same tools score the same prefixes: their KV states come from the cache.
            cached, kv = prefix_cache.lookup(prefix, scope=job.scope)
            cache = batch.new_cache(model, kv)
            n, tail = len(prefix), len(prefix) - cached
            if tail <= MERGE_TAIL:
                # The prefix's uncached tail and the first chunk of the continuation in one pass: the tail's
                # last position predicts the first continuation token, each fed continuation token the next.
                done = min(len(continuation) - 1, CHUNK)
                fed = [*prefix[cached:], *continuation[:done]]
                logits = batch.all_logits(model, torch.tensor([fed]), cache)[0, tail - 1 :]
                total = _token_logprobs(logits, continuation[: done + 1])
            else:
                done = 0
                first = batch.forward(model, torch.tensor([prefix[cached:]]), cache)  # [1, vocab]: the first token
                total = _token_logprobs(first, continuation[:1])
            prefix_kv = None  # with a tail of one token the cache holds this prefix already: nothing to put
            if tail > 1:
                prefix_kv = [(k[:, :, :n].contiguous(), v[:, :, :n].contiguous()) for k, v in kv_of(cache)]
            for start in range(done, len(continuation) - 1, CHUNK):
                # Each fed token's logits predict the token after it; the last token predicts nothing needed.
                fed = continuation[start : min(start + CHUNK, len(continuation) - 1)]
                logits = batch.all_logits(model, torch.tensor([fed]), cache)[0]
                total += _token_logprobs(logits, continuation[start + 1 : start + 1 + len(fed)])
            job.scores.append(total)
            if prefix_kv is not None:
                prefix_cache.put(prefix, prefix_kv, scope=job.scope)
    except Exception as exc:
        job.error = LocalLLMError(f"scoring failed: {exc}")
    job.done.set()


def _token_logprobs(logits: torch.Tensor, targets: Sequence[int]) -> float:
    """Sum of log-softmax(logits[i])[targets[i]] over the rows given targets, without a log-softmax of them all."""
    import torch

    rows = logits[: len(targets)].float()
    picked = rows.gather(1, torch.tensor(targets)[:, None]).squeeze(1)
    return float((picked - rows.logsumexp(-1)).sum())


def kv_of(cache: Any) -> KV:
    """The (keys, values) of each layer of a transformers cache."""
    return [(layer.keys, layer.values) for layer in cache.layers]
