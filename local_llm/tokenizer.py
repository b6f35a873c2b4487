"""The loaded model's tokenizer as the server needs it: chat prompts, plain text, grammars, special tokens."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any

from autoqwen.local_llm.chat_template import ChatPrompt, renders_tools
from autoqwen.local_llm.errors import InvalidRequest

__all__ = ["CHECKED_GRAMMARS", "KEPT_GRAMMARS", "Tokenizer"]

KEPT_GRAMMARS = 16  # compiled grammars kept between a request's check and its decoding (requests in flight)
# Validation results kept: a client sends the same tools, and so the same schemas to check, with every request.
CHECKED_GRAMMARS = 256


class Tokenizer:
    """A transformers tokenizer plus llguidance's view of it (for grammars)."""

    def __init__(self, tokenizer: Any, grammar_tokenizer: Any) -> None:
        self.hf = tokenizer
        self.grammar_tokenizer = grammar_tokenizer
        self._kept: OrderedDict[str, Any] = OrderedDict()  # grammars compiled by check_grammar(keep=True), newest last
        self._checked: OrderedDict[bytes, str | None] = OrderedDict()  # check_grammar's answers by digest, newest last
        self._lock = threading.Lock()  # requests' threads check, the engine's worker decodes

    @cached_property
    def native_tools(self) -> bool:
        """Whether the model's chat template renders tools itself (Qwen2.5's, Qwen3's): it then gets them, and the
        conversation's calls and results, in its own shape (see `chat_template`)."""
        return renders_tools(self.hf.chat_template)

    def encode_chat(self, messages: Sequence[Mapping[str, Any]]) -> list[int]:
        """Render messages with the model's own chat template (plus the assistant prompt) into token ids."""
        return list(self.hf.encode(self.render_chat(messages), add_special_tokens=False))

    def render_chat(self, messages: Sequence[Mapping[str, Any]]) -> str:
        """The prompt text of `messages` (a ChatPrompt: in the shape the template wants, with its tools and
        kwargs), ending with the assistant's turn opened."""
        from jinja2 import TemplateError

        turns: Sequence[Mapping[str, Any]] = list(messages)
        kwargs: dict[str, Any] = {}
        if isinstance(messages, ChatPrompt):
            turns, kwargs = messages.template_inputs(native=self.native_tools)
        try:
            text = self.hf.apply_chat_template(list(turns), tokenize=False, add_generation_prompt=True, **kwargs)
        except (TemplateError, TypeError, ValueError) as exc:
            # A template fails on values it cannot handle (a client's chat_template_kwargs among them), as jinja
            # errors or Python's: the request's fault either way.
            param = (
                "chat_template_kwargs" if isinstance(messages, ChatPrompt) and messages.template_kwargs else "messages"
            )
            raise InvalidRequest(f"the model's chat template rejected the request: {exc}", param=param) from exc
        return str(text)

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

    def check_grammar(self, grammar: str, *, keep: bool = False) -> str | None:
        """Why `grammar` cannot constrain this model's output (an llguidance error message), or None if it can.

        With `keep` (a request's grammar, checked before it decodes with it), the grammar is compiled and kept for
        `matcher` rather than only validated: validated, then compiled again, a tool call's grammar took ~1.5 +
        2.4 ms for SmolLM2's vocabulary, compiled once 2.4 ms (a copy for each decoding: microseconds). Answers are
        remembered (the latest `CHECKED_GRAMMARS`): each tool's schema is checked again with every request that
        offers it (1.5 ms each for SmolLM2)."""
        from llguidance import LLMatcher

        digest = None if keep else hashlib.blake2b(grammar.encode(), digest_size=16).digest()  # a schema may be MBs
        with self._lock:
            if grammar in self._kept:  # compiled already, and valid
                self._kept.move_to_end(grammar)
                return None
            if digest is not None and digest in self._checked:
                self._checked.move_to_end(digest)
                return self._checked[digest]
        if digest is not None:
            error: str | None = LLMatcher.validate_grammar(grammar, self.grammar_tokenizer) or None
            self._keep(self._checked, digest, error, CHECKED_GRAMMARS)
            return error
        matcher = LLMatcher(self.grammar_tokenizer, grammar)
        if matcher.is_error():
            return str(matcher.get_error()) or "invalid grammar"
        self._keep(self._kept, grammar, matcher, KEPT_GRAMMARS)
        return None

    def _keep(self, kept: OrderedDict[Any, Any], key: Any, value: Any, most: int) -> None:
        """`value` kept under `key` as the newest of `kept`, which keeps the `most` newest."""
        with self._lock:
            kept[key] = value
            kept.move_to_end(key)
            while len(kept) > most:
                kept.popitem(last=False)

    def matcher(self, grammar: str) -> Any:
        """A fresh llguidance matcher that follows `grammar` token by token (a copy of the one its check kept)."""
        from llguidance import LLMatcher

        with self._lock:
            kept = self._kept.get(grammar)
        if kept is not None:
            return kept.deep_copy()
        matcher = LLMatcher(self.grammar_tokenizer, grammar)
        if matcher.is_error():
            raise InvalidRequest(f"invalid grammar: {matcher.get_error()}")
        return matcher
