"""How tools, tool calls and tool results are written into the chat prompt, for models without native tools.

The format (Qwen2.5 / Hermes style, which small chat models have seen most):

* the tool list is appended to the system prompt, one signature per line (see `local_llm.signatures`);
* the model calls a tool by writing `<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>`;
* assistant turns that made calls are rendered back the same way, and tool results go back to the model as a
  user turn holding `<tool_response>\\n...\\n</tool_response>` blocks.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from autoqwen.local_llm.errors import InvalidRequest
from autoqwen.local_llm.protocol import ChatCompletionRequest, ChatMessage, Tool, ToolCall
from autoqwen.local_llm.signatures import signature

__all__ = ["TOOL_CLOSE", "TOOL_OPEN", "message_text", "render_messages", "tools_prompt"]

TOOL_OPEN = "<tool_call>"
TOOL_CLOSE = "</tool_call>"


def tools_prompt(tools: Sequence[Tool]) -> str:
    """The system-prompt section that tells the model which tools exist and how to call them."""
    listed = "\n".join(f"- {signature(t)}" for t in tools)
    return (
        "# Tools\n\nYou may call one or more of these functions to answer the user:\n"
        f"{listed}\n\n"
        "To call a function, write a JSON object with its name and arguments within <tool_call></tool_call> "
        "XML tags:\n"
        '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>\n\n'
        "When you get a <tool_response>, use it to answer the user in plain text."
    )


def render_messages(body: ChatCompletionRequest) -> list[dict[str, str]]:
    """The request's messages as plain role/content turns for the model's chat template, tools included."""
    out: list[dict[str, str]] = []
    call_ids: set[str] = set()
    for i, message in enumerate(body.messages):
        text = message_text(message, i)
        if message.role == "tool":
            if message.tool_call_id not in call_ids:
                raise InvalidRequest(
                    f"messages.{i}.tool_call_id: {message.tool_call_id!r} does not answer any tool call of an "
                    "earlier assistant message",
                    param=f"messages.{i}.tool_call_id",
                )
            block = f"<tool_response>\n{text}\n</tool_response>"
            if out and out[-1].get("_tool"):  # consecutive results go back together, in one turn
                out[-1]["content"] += "\n" + block
            else:
                out.append({"role": "user", "content": block, "_tool": "1"})
            continue
        if message.role == "assistant" and message.tool_calls:
            blocks = [_call_block(call) for call in message.tool_calls]
            call_ids.update(call.id for call in message.tool_calls)
            text = "\n".join(([text] if text else []) + blocks)
        out.append({"role": "system" if message.role == "developer" else message.role, "content": text})
    for turn in out:
        turn.pop("_tool", None)
    if body.tools and body.tool_choice != "none":
        section = tools_prompt(body.tools)
        if out[0]["role"] == "system":
            out[0]["content"] = f"{out[0]['content']}\n\n{section}"
        else:
            out.insert(0, {"role": "system", "content": section})
    return out


def message_text(message: ChatMessage, i: int) -> str:
    """The text of `messages[i]`; content the model cannot read is a 400 naming that message."""
    try:
        return message.text()
    except ValueError as exc:
        raise InvalidRequest(f"messages.{i}.content: {exc}", param=f"messages.{i}.content") from None


def _call_block(call: ToolCall) -> str:
    """An earlier call as the model wrote it; arguments that are not JSON (a call cut off by `max_tokens`, which
    OpenAI servers return as it was written) are shown as they came."""
    try:
        arguments = json.dumps(json.loads(call.function.arguments or "{}"), ensure_ascii=False)
    except json.JSONDecodeError:
        arguments = call.function.arguments
    name = json.dumps(call.function.name, ensure_ascii=False)
    return f'{TOOL_OPEN}\n{{"name": {name}, "arguments": {arguments}}}\n{TOOL_CLOSE}'
