"""The loaded model's tokenizer as the server needs it: chat prompts, plain text, grammars, special tokens."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from autoqwen.local_llm.errors import InvalidRequest

__all__ = ["Tokenizer"]


class Tokenizer:
    """A transformers tokenizer plus llguidance's view of it (for grammars)."""

    def __init__(self, tokenizer: Any, grammar_tokenizer: Any) -> None:
        self.hf = tokenizer
        self.grammar_tokenizer = grammar_tokenizer

    def encode_chat(self, messages: Sequence[Mapping[str, str]]) -> list[int]:
        """Render messages with the model's own chat template (plus the assistant prompt) into token ids."""
        from jinja2 import TemplateError

        try:
            text = self.hf.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
        except TemplateError as exc:
            raise InvalidRequest(f"the model's chat template rejected the messages: {exc}", param="messages") from exc
        return list(self.hf.encode(text, add_special_tokens=False))

    def encode(self, text: str) -> list[int]:
        """Token ids of plain text (no special tokens)."""
        return list(self.hf.encode(text, add_special_tokens=False))

    def encode_after(self, before: str, text: str) -> list[int] | None:
        """Token ids of `text` where it follows `before`, or None when a token straddles the two."""
        head, ids = self.encode(before), self.encode(before + text)
        if ids[: len(head)] != head or self.decode(ids[len(head) :]) != text:
            return None
        return ids[len(head) :]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of token ids, special tokens left out."""
        return str(self.hf.decode(list(ids), skip_special_tokens=True))

    def is_special_token(self, text: str) -> bool:
        """Whether `text` is one special token of this tokenizer (e.g. Qwen2.5's `<tool_call>`)."""
        return text in self.hf.all_special_tokens or text in getattr(self.hf, "added_tokens_encoder", {})

    def check_grammar(self, grammar: str) -> str | None:
        """Why `grammar` cannot constrain this model's output (an llguidance error message), or None if it can."""
        from llguidance import LLMatcher

        error: str = LLMatcher.validate_grammar(grammar, self.grammar_tokenizer)
        return error or None

    def matcher(self, grammar: str) -> Any:
        """A fresh llguidance matcher that follows `grammar` token by token."""
        from llguidance import LLMatcher

        matcher = LLMatcher(self.grammar_tokenizer, grammar)
        if matcher.is_error():
            raise InvalidRequest(f"invalid grammar: {matcher.get_error()}")
        return matcher
