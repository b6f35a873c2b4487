"""A multi-turn chat with history over any OpenAI-compatible server: what `autoqwen chat` drives.

chat = ChatSession(openai.OpenAI(base_url=url, api_key="none"), model="SmolLM2-135M-Instruct")
for piece in chat.send("你好"):     # streams the reply; the turn is added to chat.history
    print(piece, end="")
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import openai

__all__ = ["ChatSession"]


class ChatSession:
    """Keeps the conversation (like the seed's `model.chat(tokenizer, query, history=...)`) and streams replies."""

    def __init__(self, client: openai.OpenAI, model: str, *, system: str | None = None, **sampling: Any) -> None:
        self.client = client
        self.model = model
        self.system = system
        self.sampling = {k: v for k, v in sampling.items() if v is not None}
        self.history: list[dict[str, str]] = []
        self.last_usage: Any = None

    def messages(self) -> list[dict[str, str]]:
        """The messages sent on the next turn: system prompt (if any) plus the history."""
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + self.history

    def send(self, text: str) -> Iterator[str]:
        """Send one user message and yield the reply as it streams; both are kept in the history."""
        self.history.append({"role": "user", "content": text})
        reply: list[str] = []
        try:
            stream = self.client.chat.completions.create(  # type: ignore[call-overload]  # plain dict messages
                model=self.model,
                messages=self.messages(),
                stream=True,
                stream_options={"include_usage": True},
                **self.sampling,
            )
            for chunk in stream:
                if chunk.usage is not None:
                    self.last_usage = chunk.usage
                if chunk.choices and chunk.choices[0].delta.content:
                    reply.append(chunk.choices[0].delta.content)
                    yield chunk.choices[0].delta.content
        except BaseException:
            self.history.pop()  # the turn failed: do not keep a question without its answer
            raise
        self.history.append({"role": "assistant", "content": "".join(reply)})

    def reset(self) -> None:
        """Forget the conversation (the system prompt stays)."""
        self.history.clear()
