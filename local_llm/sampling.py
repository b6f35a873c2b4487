"""How to sample one completion (`SamplingParams`), the sampler that picks each next token (`sample`), and the
log-probabilities reported for it when a client asks (`token_logprob`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = [
    "GREEDY_TEMPERATURE",
    "MAX_TOP_LOGPROBS",
    "SamplingParams",
    "TokenLogprob",
    "choice_seed",
    "sample",
    "token_logprob",
]

# Temperatures below this decode greedily: dividing logits by 1e-300 overflows to inf and softmax gives NaN, and
# far above that the distribution is already one-hot in float32 (vLLM uses the same cut-off).
GREEDY_TEMPERATURE = 1e-5
# The most alternatives a token's log-probability comes with (OpenAI's chat limit; its legacy completions take 5).
MAX_TOP_LOGPROBS = 20


@dataclass(frozen=True)
class SamplingParams:
    """How to sample one completion; temperature 0 (or below GREEDY_TEMPERATURE) means greedy.

    SamplingParams(max_tokens=64, temperature=0.7, top_p=0.9, seed=42, stop=("\\n\\n",))
    """

    max_tokens: int | None = None
    temperature: float = 0.7
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: Mapping[int, float] = field(default_factory=dict)
    ignore_eos: bool = False
    grammar: str | None = None  # llguidance (Lark) grammar the output must follow; see local_llm.grammars
    # Record each generated token's log-probability and this many top alternatives (None: record nothing).
    logprobs: int | None = None


@dataclass(frozen=True)
class TokenLogprob:
    """A generated token's log-probability under the model, with the `top` most likely tokens at its position.

    The distribution is the model's own: log-softmax (float32) of the raw logits, before logit bias, penalties,
    temperature, top_p and any grammar mask, as OpenAI reports it (and vLLM by default): the same text has the
    same log-probabilities whatever the sampling settings. A token a grammar forced (no choice was sampled) has
    logprob 0.0 and no alternatives: it was certain under the constraint, and no logits were computed for it.
    """

    token: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()  # (token id, logprob), most likely first


def sample(
    logits: torch.Tensor, generated: list[int], p: SamplingParams, generator: torch.Generator, argmax: int | None
) -> int:
    """Pick the next token: logit bias, presence/frequency penalties, temperature, then nucleus (top_p).

    `argmax`, if given, is the logits' argmax computed beforehand (used where decoding is plain greedy)."""
    import torch

    if p.logit_bias or ((p.presence_penalty or p.frequency_penalty) and generated):
        argmax = None
        logits = logits.clone()
        for token, bias in p.logit_bias.items():
            if 0 <= token < logits.shape[0]:
                logits[token] += bias
        if generated:
            counts = torch.bincount(torch.tensor(generated), minlength=logits.shape[0])[: logits.shape[0]]
            logits -= p.frequency_penalty * counts + p.presence_penalty * (counts > 0)
    if p.temperature < GREEDY_TEMPERATURE:
        return argmax if argmax is not None else int(torch.argmax(logits))
    probs = torch.softmax(logits.float() / p.temperature, dim=-1)
    if p.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        outside = torch.cumsum(sorted_probs, dim=-1) - sorted_probs > p.top_p
        sorted_probs[outside] = 0.0
        return int(order[torch.multinomial(sorted_probs, 1, generator=generator)])
    return int(torch.multinomial(probs, 1, generator=generator))


def token_logprob(logits: torch.Tensor, token: int, top: int) -> TokenLogprob:
    """`token`'s log-probability under `logits` (the raw vocabulary scores of its position) and the `top` most
    likely tokens there; see `TokenLogprob` for which distribution this is."""
    import torch

    logprobs = torch.log_softmax(logits.float(), dim=-1)
    best: tuple[tuple[int, float], ...] = ()
    if top > 0:
        values, ids = torch.topk(logprobs, min(top, logprobs.shape[0]))
        best = tuple(zip(ids.tolist(), values.tolist(), strict=True))
    return TokenLogprob(token, float(logprobs[token]), best)


def choice_seed(seed: int | None, choice: int) -> int | None:
    """The seed of choice `choice` (0, 1, ...) of a request that asks for several with `seed`: `seed + choice`,
    wrapped into the 64-bit range, so each choice draws differently and the same request gives the same choices
    (the first one what a single choice with that seed gives)."""
    if seed is None:
        return None
    return seed + choice if seed + choice < 2**64 else seed + choice - 2**64
