"""Scoring jobs: log P(continuation | prefix) for pairs of token ids, computed on the engine's worker (the
channel tool selection uses it), reusing and filling the prefix cache."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from autoqwen.local_llm.errors import LocalLLMError
from autoqwen.local_llm.prefix_cache import KV, PrefixCache

__all__ = ["Scoring", "kv_of", "score"]


class Scoring:
    """A request for log-probabilities: for each (prefix, continuation) pair, log P(continuation | prefix)."""

    def __init__(self, pairs: Sequence[tuple[Sequence[int], Sequence[int]]]) -> None:
        self.pairs = [(list(a), list(b)) for a, b in pairs]
        self.scores: list[float] = []
        self.error: BaseException | None = None
        self.done = threading.Event()


def score(model: Any, prefix_cache: PrefixCache, job: Scoring) -> None:
    """Fill `job.scores` (or `job.error`) and set `job.done`."""
    import torch

    from autoqwen.local_llm.batch import all_logits, new_cache

    try:
        for prefix, continuation in job.pairs:
            # Requests offering the same tools score the same prefixes: their KV states come from the cache.
            cached, kv = prefix_cache.lookup(prefix)
            cache = new_cache(model, kv)
            tokens = [*prefix, *continuation]
            logprobs = torch.log_softmax(all_logits(model, torch.tensor([tokens[cached:]]), cache)[0], -1)
            start = len(prefix) - 1 - cached  # the position whose logits predict the continuation's first token
            targets = torch.tensor(continuation)[:, None]
            job.scores.append(float(logprobs[start : start + len(continuation)].gather(1, targets).sum()))
            n = len(prefix)
            prefix_cache.put(prefix, [(k[:, :, :n].contiguous(), v[:, :, :n].contiguous()) for k, v in kv_of(cache)])
    except Exception as exc:
        job.error = LocalLLMError(f"scoring failed: {exc}")
    job.done.set()


def kv_of(cache: Any) -> KV:
    """The (keys, values) of each layer of a transformers cache."""
    return [(layer.keys, layer.values) for layer in cache.layers]
