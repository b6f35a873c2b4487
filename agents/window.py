"""The model's context window as agents budget it: its size, a token estimate the server's replies calibrate, and
where trims are reported.

    window = ContextWindow(tokens=4096, on_trim=lambda agent, note: print(agent, note))
    window.estimate.tokens("some text")        # an estimate that errs towards more tokens

A server tells how many tokens each prompt took (`usage.prompt_tokens`), so the estimate learns its bytes per token
from every reply; a "context length exceeded" answer makes it more careful for the rest of the run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["DEFAULT_CONTEXT_WINDOW", "MESSAGE_OVERHEAD", "ContextWindow", "TokenEstimate"]

# What agents assume of a server that does not say: LM Studio's and Ollama's usual window; a workflow can say more.
DEFAULT_CONTEXT_WINDOW = 4096
# Tokens a chat template adds around each message (`<|im_start|>role\n ... <|im_end|>\n` in ChatML).
MESSAGE_OVERHEAD = 6
_FIRST_BYTES_PER_TOKEN = 2.0  # before any reply: cautious (English runs at ~4 bytes per token, code and CJK lower)
_MARGIN = 0.9  # estimates run this much over what the server last measured
_MIN_BYTES_PER_TOKEN, _MAX_BYTES_PER_TOKEN = 0.5, 6.0


@dataclass
class TokenEstimate:
    """Tokens of a text, estimated from its UTF-8 size; `calibrate` and `shrink` adjust the bytes per token."""

    bytes_per_token: float = _FIRST_BYTES_PER_TOKEN
    ceiling: float = _MAX_BYTES_PER_TOKEN

    def tokens(self, text: str) -> int:
        """The estimated tokens of `text`."""
        return int(len(text.encode("utf-8")) / self.bytes_per_token) + 1

    def calibrate(self, sent_bytes: int, messages: int, prompt_tokens: int) -> None:
        """Learn from a prompt of `sent_bytes` bytes in `messages` messages that took the server `prompt_tokens`."""
        content_tokens = prompt_tokens - MESSAGE_OVERHEAD * messages
        if content_tokens < 32 or sent_bytes < 64:  # too small to say anything about the text
            return
        measured = sent_bytes / content_tokens * _MARGIN
        self.bytes_per_token = max(_MIN_BYTES_PER_TOKEN, min(measured, self.ceiling))

    def shrink(self) -> None:
        """The server refused a prompt this estimate let through: count a quarter more tokens from now on."""
        self.bytes_per_token = max(_MIN_BYTES_PER_TOKEN, self.bytes_per_token * 0.75)
        self.ceiling = self.bytes_per_token


@dataclass
class ContextWindow:
    """The model's window in tokens, the run's shared estimate, and who hears of trims (`on_trim(agent, note)`)."""

    tokens: int = DEFAULT_CONTEXT_WINDOW
    on_trim: Callable[[str, str], None] | None = None
    estimate: TokenEstimate = field(default_factory=TokenEstimate)

    def reserve(self, max_tokens: int | None) -> int:
        """Tokens kept free for a reply of at most `max_tokens` (a quarter of the window, at most, when unset)."""
        if max_tokens is None:
            return min(512, self.tokens // 4)
        return min(max_tokens, self.tokens // 2)

    def report(self, agent: str, note: str) -> None:
        """Tell the run what was done to `agent`'s exchange with the model (a trim, a repeated call not made)."""
        if self.on_trim is not None:
            self.on_trim(agent, note)
