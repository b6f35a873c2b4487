"""The responses kept for `previous_response_id`: the last ones created with `store: true`, in memory.

    store = ResponseStore(max_responses=100)
    store.put(scope, response, messages)      # messages: the conversation through this response's output
    kept = store.get(scope, "resp_...")       # None once evicted, after a restart, or under another API key

Entries are kept per scope (the digest of the API key a request came with, or None on a server without keys), so
one key's clients can neither continue nor read another's conversations. The store is bounded in count and in
size; the least recently used entry goes first.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from autoqwen.local_llm.protocol_responses import ResponsesResponse

__all__ = ["ResponseStore", "StoredResponse"]


@dataclass(frozen=True)
class StoredResponse:
    """A kept response and the chat messages of its conversation (its instructions left out, as OpenAI does)."""

    response: ResponsesResponse
    messages: list[dict[str, Any]]
    size: int  # characters held, counted against the store's bound


class ResponseStore:
    """The last `max_responses` stored responses (at most `max_chars` characters of conversation in all)."""

    def __init__(self, max_responses: int = 100, max_chars: int = 64 << 20) -> None:
        self.max_responses = max_responses
        self.max_chars = max_chars
        self._entries: OrderedDict[tuple[str | None, str], StoredResponse] = OrderedDict()
        self._chars = 0

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, scope: str | None, response: ResponsesResponse, messages: list[dict[str, Any]]) -> None:
        """Keep `response` and its conversation, evicting the least recently used entries beyond the bounds."""
        size = len(json.dumps(messages)) + len(response.model_dump_json())
        if size > self.max_chars:
            return  # larger than the whole store: keeping it would evict everything else
        key = (scope, response.id)
        if (old := self._entries.pop(key, None)) is not None:
            self._chars -= old.size
        self._entries[key] = StoredResponse(response, messages, size)
        self._chars += size
        while len(self._entries) > self.max_responses or self._chars > self.max_chars:
            _, evicted = self._entries.popitem(last=False)
            self._chars -= evicted.size

    def get(self, scope: str | None, response_id: str) -> StoredResponse | None:
        """The kept response `response_id` of `scope`, or None."""
        entry = self._entries.get((scope, response_id))
        if entry is not None:
            self._entries.move_to_end((scope, response_id))
        return entry
