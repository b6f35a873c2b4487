"""Incremental detokenization with stop strings: turns a stream of token ids into safe-to-send text pieces."""

from __future__ import annotations

from collections.abc import Callable, Sequence

__all__ = ["TextStream"]


class TextStream:
    """Feeds token ids one at a time and returns the new text that can be sent to the client.

    Text that might be the start of a stop string is held back until it is clear it is not one, so a
    streamed reply never shows part of a stop sequence; an unfinished UTF-8 character (decoded as U+FFFD)
    is held back until its last byte arrives.

        stream = TextStream(tokenizer.decode, stop=["\\nUser:"])
        piece, stopped = stream.push(token_id)
    """

    def __init__(self, decode: Callable[[list[int]], str], stop: Sequence[str] = ()) -> None:
        self._decode = decode
        self._stop = [s for s in stop if s]
        self._ids: list[int] = []
        # Incremental detokenization (as vLLM does it): only the last few tokens are decoded on each step, with
        # `_prefix` tokens of context so that tokenizers that drop a leading space decode the same text.
        self._prefix = 0
        self._read = 0
        self._text = ""
        self._sent = 0
        self._stopped = False

    @property
    def text(self) -> str:
        """All text decoded so far, up to (not including) a stop string once one was found."""
        return self._text

    def push(self, token_id: int) -> tuple[str, bool]:
        """Add one token; return (text safe to send now, whether a stop string was reached)."""
        self._ids.append(token_id)
        before = self._decode(self._ids[self._prefix : self._read])
        after = self._decode(self._ids[self._prefix :])
        if after.endswith("\ufffd") or len(after) <= len(before):
            return "", False
        text = self._text + after[len(before) :]
        self._prefix, self._read = self._read, len(self._ids)
        self._text = text
        cut = self._find_stop(text)
        if cut is not None:
            self._text, self._stopped = text[:cut], True
            return self._take(cut), True
        return self._take(len(text) - self._partial_stop_length(text)), False

    def flush(self) -> str:
        """Whatever is left unsent once generation ends: held-back text, and any unfinished character."""
        if self._stopped or not self._ids:
            return ""
        before = self._decode(self._ids[self._prefix : self._read])
        self._text += self._decode(self._ids[self._prefix :])[len(before) :]
        self._read = len(self._ids)
        return self._take(len(self._text))

    def _take(self, end: int) -> str:
        if end <= self._sent:
            return ""
        piece, self._sent = self._text[self._sent : end], end
        return piece

    def _find_stop(self, text: str) -> int | None:
        # A stop string can only be completed by recent text: search from just before the unsent part.
        start = max(0, self._sent - max((len(s) for s in self._stop), default=0))
        hits = [i for s in self._stop if (i := text.find(s, start)) >= 0]
        return min(hits) if hits else None

    def _partial_stop_length(self, text: str) -> int:
        longest = 0
        for stop in self._stop:
            for k in range(min(len(stop) - 1, len(text)), longest, -1):
                if text.endswith(stop[:k]):
                    longest = k
                    break
        return longest
