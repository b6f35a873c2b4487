"""One sequence's decoding state: sampling, grammar constraint, stop strings and token budget.

The engine feeds it the logits of the sequence's last position; it picks the next token(s), streams text to the
completion and says what to feed the model next:

    seq = Decoding(job, decode, eos_ids=eos, limit=128, matcher=None)
    tokens = job.prompt_ids + seq.start()      # tokens a grammar forces before the first sampled one
    seq.fed, seq.pending = tokens[:-1], tokens[-1:]   # the model holds fed's KV states; pending is fed next
    seq.advance(logits)                        # pending's logits: samples; pending is what to feed next, done when over

When the completion asks for logprobs (`SamplingParams.logprobs`), each generated token's `TokenLogprob` goes to
`job.logprobs` before its text is emitted; without, nothing is computed.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from autoqwen.local_llm import kernels, sampling
from autoqwen.local_llm.errors import LocalLLMError
from autoqwen.local_llm.textstream import TextStream

if TYPE_CHECKING:
    import torch

    from autoqwen.local_llm.completion import Completion
    from autoqwen.local_llm.scheduler import WorkSeconds

__all__ = ["Decoding"]


class Decoding:
    """Decoding state of one completion."""

    def __init__(
        self,
        job: Completion,
        decode: Callable[[Sequence[int]], str],
        *,
        eos_ids: frozenset[int],
        limit: int,
        matcher: Any = None,
        work: WorkSeconds | None = None,
    ) -> None:
        import torch

        p = job.params
        self.job = job
        self.params = p
        self.limit = limit
        self.eos = frozenset() if p.ignore_eos else eos_ids
        self.matcher = matcher
        self.work = work  # where the grammar's seconds add up, if given
        self.generator = torch.Generator().manual_seed(p.seed if p.seed is not None else secrets.randbits(63))
        self.stream = TextStream(decode, p.stop)
        self.generated: list[int] = []
        self.fed: list[int] = []  # tokens whose KV states the model holds for this sequence
        self.pending: list[int] = []  # tokens to feed on the next step
        self.done = False
        self._stopped = False
        self._eos_seen = False

    def start(self) -> list[int]:
        """Tokens the grammar forces at the start (fed with the prompt); may already end the sequence."""
        # Tokens the grammar forces are appended without sampling, in the tokenizer's canonical split ("fast
        # forward"): the model then reads `{"` `name` `":` as it always has, not a spelling it never saw.
        started = time.perf_counter()
        forced = _forced(self.matcher, self.limit)
        self._count(started)
        self._take(forced)
        self._check_done()
        return forced

    def advance(self, logits: torch.Tensor, argmax: int | None = None) -> None:
        """Sample the next token from `logits` (the vocabulary scores of the last fed position); `argmax`, if
        given, is theirs (the engine takes all rows' at once), used where decoding is plain greedy."""
        self.fed.extend(self.pending)
        self.pending = []
        raw = logits  # logprobs are the model's, before the mask and the sampler's adjustments
        if self.matcher is not None:
            started = time.perf_counter()
            logits, argmax = _mask(logits, self.matcher), None
            self._count(started)
        token = sampling.sample(logits, self.generated, self.params, self.generator, argmax)
        started = time.perf_counter()
        if self.matcher is not None and not self.matcher.consume_token(token):
            raise LocalLLMError(f"the grammar rejected token {token}: {self.matcher.get_error()}")
        forced = [] if token in self.eos else _forced(self.matcher, self.limit - len(self.generated) - 1)
        self._count(started)
        if token in self.eos:
            self._eos_seen = True
            self.done = True
            return
        new = [token, *forced]
        top = self.params.logprobs
        self._take(new, sampling.token_logprob(raw, token, top) if top is not None else None)
        self.pending = new
        self._check_done()

    def finish(self) -> None:
        """Flush held-back text and end the completion."""
        grammar_done = self.matcher is not None and self.matcher.is_stopped()
        reason: Literal["stop", "length"] = "stop" if self._stopped or self._eos_seen or grammar_done else "length"
        if tail := self.stream.flush():
            self.job.emit(tail)
        self.job.finish(reason, len(self.generated))

    def _count(self, started: float) -> None:
        """Add the seconds since `started` to the grammar's work, when there is a grammar."""
        if self.matcher is not None and self.work is not None:
            self.work.add(grammar=time.perf_counter() - started)

    def _take(self, tokens: list[int], sampled: sampling.TokenLogprob | None = None) -> None:
        """Add generated tokens and emit their text; `sampled` is the first one's logprob when it was sampled
        (the others were forced by the grammar)."""
        for i, token in enumerate(tokens):
            self.generated.append(token)
            if self.params.logprobs is not None:
                self.job.logprobs.append(
                    sampled if i == 0 and sampled is not None else sampling.TokenLogprob(token, 0.0)
                )
            piece, stopped = self.stream.push(token)
            if piece:
                self.job.emit(piece)
            if stopped:
                self._stopped = True
                return

    def _check_done(self) -> None:
        if (
            self._stopped
            or len(self.generated) >= self.limit
            or self.job.cancelled
            or (self.matcher is not None and self.matcher.is_stopped())
        ):
            self.done = True


def _forced(matcher: Any, room: int) -> list[int]:
    """The tokens the grammar allows as the only way on (at most `room`), already consumed by the matcher."""
    if matcher is None or room <= 0 or matcher.is_stopped():
        return []
    tokens: list[int] = list(matcher.compute_ff_tokens())[:room]
    if tokens and not matcher.consume_tokens(tokens):
        raise LocalLLMError(f"the grammar rejected its own forced tokens: {matcher.get_error()}")
    return tokens


def _mask(logits: torch.Tensor, matcher: Any) -> torch.Tensor:
    """Logits with every token the grammar forbids next set to -inf (tokens past the grammar's vocabulary too)."""
    import numpy as np
    import torch

    bits = matcher.compute_bitmask()  # bytes: token t allowed where bit t % 8 of byte t // 8 is set
    ours = kernels.load("masked_logits")
    if ours is not None and logits.dtype == torch.float32 and logits.dim() == 1 and logits.is_contiguous():
        return ours(logits, torch.frombuffer(bytearray(bits), dtype=torch.uint8))
    unpacked = np.unpackbits(np.frombuffer(bits, dtype=np.uint8), bitorder="little")
    allowed = torch.from_numpy(unpacked[: logits.shape[0]].astype(bool))
    if allowed.shape[0] < logits.shape[0]:
        allowed = torch.cat([allowed, torch.zeros(logits.shape[0] - allowed.shape[0], dtype=torch.bool)])
    return logits.masked_fill(~allowed, float("-inf"))
