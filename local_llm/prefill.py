"""Prompts read in chunks, so that a long prompt does not hold up the streams already running: the scheduler reads
a chunk (or several short prompts) between two decode steps of the batch. Read in one pass, a 4000-token prompt
held every running stream for seconds.

    reading = Reading(seq, tokens, cached, kv, model)   # tokens[:cached] come from the prefix cache (kv)
    while not reading.done:
        end = reading.next_end()                          # where the next chunk ends, a function of the prompt alone
        logits = reading.read(end)                        # [vocab] of its last token once the prompt is read
    seq.advance(logits)

A chunk's size is set by its work, in multiply-adds (`CHUNK_WORK`): the products cost the same for every token,
attention grows with the tokens before it, so chunks shrink as a prompt goes on, and a larger model reads fewer
tokens per chunk. The chunk boundaries depend on the prompt and the model alone, never on timing or on what else is
waiting, so the same request always computes the same thing; with our attention kernel (`prompt_attention`) they
do not change a bit of the result either, as each token's arithmetic is that of a decode step.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from autoqwen.local_llm.prefix_cache import KV

if TYPE_CHECKING:
    import torch

    from autoqwen.local_llm.decoding import Decoding

__all__ = ["ATTENTION_RATE", "CHUNK_WORK", "Reading", "chunk_end", "costs"]

# Multiply-adds one chunk may cost: SmolLM2-135M reads ~110 tokens at the start of a prompt, ~26 at 4000 tokens in,
# ~80-100 ms a chunk on 2 cores, so a running stream's tokens stay under 150 ms apart, also when a long prompt's row
# joins the batch (a copy of its KV states, ~30 ms at 4000 tokens). 4000 tokens took ~3 % longer in such chunks than
# in one pass; 25 % more work per chunk cost nothing, but gaps reached 150 ms. A 0.5B model reads ~33 tokens at the
# start.
CHUNK_WORK = 12e9
# Attention's multiply-adds run at less than half the rate of the products' (on the bundled model, 2 cores: ~0.45 on
# its own, less beside a server; a lower rate here keeps the chunks late in a long prompt from running longer).
ATTENTION_RATE = 0.4


def chunk_end(start: int, total: int, per_token: float, per_context: float, budget: float) -> int:
    """Where a chunk from token `start` ends (at most `total`, at least one token on): as many tokens as `budget`
    pays for (inf: all), each costing `per_token` plus `per_context` for every token before it and itself."""
    if math.isinf(budget):
        return total
    # n tokens cost n per_token + per_context (n start + n (n + 1) / 2): the largest n within budget.
    a, b = per_context / 2, per_token + per_context * (start + 0.5)
    n = int((-b + math.sqrt(b * b + 4 * a * budget)) / (2 * a)) if a > 0 else int(budget // max(b, 1.0))
    return min(total, start + max(1, n))


def costs(model: Any) -> tuple[float, float]:
    """(multiply-adds per token in the layers' products, per token of context in attention at the products'
    rate) of a transformers model, from its config."""
    config = model.config
    hidden, layers = config.hidden_size, config.num_hidden_layers
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    inner = getattr(config, "intermediate_size", None) or 4 * hidden
    products = hidden * (heads + 2 * kv_heads) * head_dim + heads * head_dim * hidden + 3 * hidden * inner
    return float(layers * products), layers * 2 * heads * head_dim / ATTENTION_RATE


class Reading:
    """A prompt being read: its decoding state, its tokens and the KV cache of those read so far."""

    def __init__(self, seq: Decoding, tokens: list[int], cached: int, kv: KV | None, model: Any) -> None:
        from autoqwen.local_llm.batch import new_cache

        self.seq = seq
        self.tokens = tokens
        self.model = model
        self.cached = cached  # tokens that came from the prefix cache
        self.position = cached  # tokens whose KV states the cache holds
        # Room for the whole prompt at once: the buffers are not regrown (and copied) chunk after chunk.
        self.cache = new_cache(model, kv, reserve=len(tokens) - cached + 64)
        self.per_token, self.per_context = costs(model)

    @property
    def job(self) -> Any:
        return self.seq.job

    @property
    def done(self) -> bool:
        return self.position == len(self.tokens)

    def next_end(self) -> int:
        """Where the next chunk ends."""
        return chunk_end(self.position, len(self.tokens), self.per_token, self.per_context, CHUNK_WORK)

    def cost(self, end: int) -> float:
        """Multiply-adds of reading up to `end` from here (as chunk_end counts them)."""
        n, start = end - self.position, self.position
        return n * self.per_token + self.per_context * (n * start + n * (n + 1) / 2)

    def read(self, end: int) -> torch.Tensor:
        """Read tokens up to `end`; returns the logits [vocab] of the last one."""
        import torch

        from autoqwen.local_llm.batch import forward

        logits = forward(self.model, torch.tensor([self.tokens[self.position : end]]), self.cache)[0]
        self.position = end
        return logits

    def kv(self) -> KV:
        """The KV states read so far (views of the cache's buffers)."""
        return [(layer.keys, layer.values) for layer in self.cache.layers]
