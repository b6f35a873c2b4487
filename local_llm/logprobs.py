"""A completion's token log-probabilities, read in step with its text and written in OpenAI's shapes.

    reader = LogprobReader(completion, engine.token_bytes)
    async for piece in completion:
        tokens = reader.feed(piece)          # the tokens whose text begins in what has been sent so far
    tokens += reader.feed("")                # once it has ended: trailing tokens without text (special ones)
    content = chat_logprobs(tokens)          # chat / Responses shape; protocol_completions has the legacy one

The engine records a `TokenLogprob` per generated token (`SamplingParams.logprobs`); its text may be held back
(a possible stop string, an unfinished character) or never sent (inside a stop string). The reader hands out a
token once its text has begun to go out, so a stream's logprobs match its text, and the tokens of a stop string
are left out as their text is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from autoqwen.local_llm.completion import Completion
from autoqwen.local_llm.protocol_logprobs import TokenLogprobInfo, TopLogprob
from autoqwen.local_llm.sampling import TokenLogprob

__all__ = ["LogprobReader", "TokenText", "chat_logprobs", "token_string"]

# A token id's bytes and whether it is a special token (Engine.token_bytes).
TokenBytes = Callable[[Sequence[int]], list[tuple[bytes, bool]]]


@dataclass(frozen=True)
class TokenText:
    """A generated token with its bytes, its character offset in the generated text, and its alternatives."""

    entry: TokenLogprob
    data: bytes
    special: bool
    offset: int  # characters of generated text before this token (before its character, if it starts inside one)
    top: tuple[tuple[bytes, float], ...]  # the alternatives' bytes and logprobs, most likely first


class LogprobReader:
    """Reads the `TokenLogprob` entries of one completion as its text is sent."""

    def __init__(self, completion: Completion, token_bytes: TokenBytes) -> None:
        self._completion = completion
        self._token_bytes = token_bytes
        self._read = 0  # entries handed out
        self._start = 0  # byte offset in the text of the next entry's token
        self._chars = 0  # character offset of the same
        self._sent = 0  # bytes of text sent so far

    def feed(self, piece: str) -> list[TokenText]:
        """The tokens whose text begins within the text sent so far, `piece` included (in order, each once); a
        token without text (a special one) once the text before it has gone out."""
        self._sent += len(piece.encode("utf-8"))
        out: list[TokenText] = []
        entries = self._completion.logprobs
        while self._read < len(entries):
            entry = entries[self._read]
            described = self._token_bytes([entry.token, *(token for token, _ in entry.top)])
            data, special = described[0]
            size = 0 if special else len(data)  # a special token's text is not part of the generated text
            if self._start > self._sent or (self._start == self._sent and size > 0):
                break
            top = tuple((alt, logprob) for (alt, _), (_, logprob) in zip(described[1:], entry.top, strict=True))
            inside = size > 0 and data[0] & 0xC0 == 0x80  # starts inside a character: that character's offset
            out.append(TokenText(entry, data, special, self._chars - inside, top))
            self._read += 1
            self._start += size
            if not special:  # one lead byte per character: exact even where a character spans tokens
                self._chars += sum(1 for byte in data if byte & 0xC0 != 0x80)
        return out


def token_string(data: bytes) -> str:
    """A token's text as OpenAI writes it: the text, or `bytes:\\xe4\\xbd` for bytes that are part of a character."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return "bytes:" + "".join(f"\\x{byte:02x}" for byte in data)


def chat_logprobs(tokens: Sequence[TokenText]) -> list[TokenLogprobInfo]:
    """Tokens in the chat completions (and Responses) shape: `logprobs.content` of a choice or chunk."""
    return [
        TokenLogprobInfo(
            token=token_string(t.data),
            logprob=t.entry.logprob,
            bytes=list(t.data),
            top_logprobs=[TopLogprob(token=token_string(d), logprob=lp, bytes=list(d)) for d, lp in t.top],
        )
        for t in tokens
    ]
