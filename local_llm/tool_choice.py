"""Which tools a request may call: `tool_choice` as sent, and the server's policies for small models.

Two policies, each behind a `ServerConfig` switch:

* call-then-answer (`auto_tool_choice`): under `tool_choice: "auto"`, a user turn is answered with a tool call and
  tool results are answered in text, for models too small to decide by themselves;
* channel selection (`tool_selection`): when one call to one of several tools is required, the model scores how
  likely the user's message is under each tool's description, and the request is narrowed to the best tool. When
  the call was only forced by call-then-answer (the client sent "auto"), a "no tool" description competes too
  (unless the instructions name a tool): a message no tool fits is answered in text. With `clause_calls`, a
  message whose clauses ask for other tools is narrowed to one call to each of them.

Scoring reads the user's message once per tool (and its clauses' first tokens once per best tool), so its cost is
bounded: at most `MAX_TOOLS` tools of at most
`MAX_DESCRIPTION_CHARS` characters of description each (OpenAI's own limits; more is a 400), and only the first
`CHANNEL_TOKENS` tokens of the message are scored.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Literal

from autoqwen.local_llm.errors import InvalidRequest
from autoqwen.local_llm.name_words import message_words, named_words, naming_words
from autoqwen.local_llm.protocol import ChatCompletionRequest, Tool
from autoqwen.local_llm.tool_prompt import message_text

__all__ = [
    "CHANNEL_TOKENS",
    "CLAUSE_MARGIN",
    "CLAUSE_TOKENS",
    "MAX_DESCRIPTION_CHARS",
    "MAX_TOOLS",
    "AutoToolChoice",
    "ToolSelection",
    "channel_pairs",
    "check_tools",
    "choose",
    "clauses",
    "offered_tools",
    "pick",
    "pick_each",
    "resolve_auto",
    "select_tool",
]

AutoToolChoice = Literal["model", "call-then-answer"]
ToolSelection = Literal["channel", "model"]

MAX_TOOLS = 128  # OpenAI refuses more functions than this, so no client written for it sends more
MAX_DESCRIPTION_CHARS = 1024  # OpenAI's limit on a function's description
# A message's first tokens say what it asks for; scoring a long pasted text whole, once per tool, took seconds.
CHANNEL_TOKENS = 256
_CHANNEL_HEAD = "Tool: {name} - {description}\nA user request this tool answers:"
# The "no tool" candidates: a user turn of any chat; the message's log-probability without a tool is their mean (in
# probability), and it must be likelier under the best tool by a margin (nats) for a call: measured on the broad
# eval (docs/benchmarks.md). A second head averaged in, a tool that talks ("Tool: chat - talk with the user ..."),
# called one more of its irrelevance cases (two more, one fewer) for a fifth more rows to score.
NO_TOOL_HEADS = ("A conversation with a helpful assistant.\nUser:",)
NO_TOOL_MARGIN = 1.75
# A tool whose score stands this many nats above the other offered tools' (the log of their mean probability) needs
# only to beat "no tool", without the margin: of 7 tools, "Is it raining in London today?" singles out get_weather,
# which SmolLM2-135M scored 1 nat above "no tool".
STANDOUT_MARGIN = 3.0
# A tool the user names by a word of its name ("email" for send_email, "remind" for set_reminder, "news" for
# get_news) or of its enums' values ("Add 1543 and 2981" for a calculator's "add") scores this many nats more for
# each such word: SmolLM2-135M's channel scores put set_reminder above
# send_email for "Send an email to ...", and no tool above search_papers for "I need 5 papers on ...".
NAME_WORD_BONUS = 3.0
# A message that asks for several things ("Get the weather in Paris and the stock price of AAPL.") is read again
# clause by clause, against the tools it scored best with (`CLAUSE_TOOLS`): a clause whose best tool scores this many
# nats above the message's tool on it gets a call of its own. SmolLM2-135M's scores on the suite's clauses: 2.9 to
# 12.1 nats where another tool was asked for, 1.8 and 1.9 where it was not ("... and invite Tom, Sue" put
# `send_email` above `create_event`).
CLAUSE_MARGIN = 2.5
CLAUSE_TOOLS = 4
# A clause's first tokens say what it asks for: on the suite, clauses read to 10-16 tokens made the same choices as
# clauses read whole (8 changed one), at half the cost of reading BFCL's long ones whole.
CLAUSE_TOKENS = 12
_CLAUSE_BREAK = re.compile(r",?\s+and\s+(?:then\s+)?|[.;?!]\s+(?:also,?\s+|then,?\s+)?|,?\s+then\s+", re.IGNORECASE)


def check_tools(body: ChatCompletionRequest) -> None:
    """Refuse (400, naming the field) more tools, or longer descriptions, than the server scores and prompts with."""
    tools = body.tools or []
    if len(tools) > MAX_TOOLS:
        raise InvalidRequest(f"tools: at most {MAX_TOOLS} tools are accepted, got {len(tools)}", param="tools")
    for i, tool in enumerate(tools):
        length = len(tool.function.description or "")
        if length > MAX_DESCRIPTION_CHARS:
            param = f"tools.{i}.function.description"
            raise InvalidRequest(
                f"{param}: at most {MAX_DESCRIPTION_CHARS} characters are accepted, got {length}", param=param
            )


def resolve_auto(body: ChatCompletionRequest, policy: AutoToolChoice) -> ChatCompletionRequest:
    """Apply the server's policy for `tool_choice: "auto"` (the default whenever tools are sent).

    "model" leaves the choice to the model. "call-then-answer" is for small models that cannot decide (SmolLM2-135M
    never opens a call by itself): a user turn must be answered with a tool call, and once tool results are in,
    the model answers them in text.
    """
    if policy == "model" or not body.tools or body.tool_choice not in ("auto", None):
        return body
    since_user = next((m for m in reversed(body.messages) if m.role in ("user", "tool")), None)
    choice = "none" if since_user is not None and since_user.role == "tool" else "required"
    return body.model_copy(update={"tool_choice": choice})


def channel_pairs(
    body: ChatCompletionRequest, *, may_answer: bool = False
) -> tuple[list[Tool], list[tuple[str, str]]] | None:
    """The tools to choose among, and per tool a (description, user message) text pair to score, when the
    request must make one call to one of several tools in reply to a user message; else None. With `may_answer`
    (the call is required by call-then-answer, not by the client), one more pair for each of
    `NO_TOOL_HEADS`, last, scores the message without a tool, and a single tool is scored against them too.

    Scoring log P(user message | tool description) ("noisy channel", Min et al. 2022) picks the right tool more
    often than the name the model writes (docs/tool-calling.md).
    """
    tools = offered_tools(body)
    may_answer = may_answer and not _names_a_tool(body, tools)
    if body.tool_choice != "required" or len(tools) < (1 if may_answer else 2):
        return None  # a named or single tool is chosen already; parallel calls may mix tools
    if not body.messages or body.messages[-1].role != "user":
        return None
    question = message_text(body.messages[-1], len(body.messages) - 1).strip()
    if not question:
        return None
    texts = [*map(_head, tools)]
    if may_answer:
        texts.extend(NO_TOOL_HEADS)
    return tools, [(text, " " + question) for text in texts]


def _names_a_tool(body: ChatCompletionRequest, tools: list[Tool]) -> bool:
    """Whether the system's instructions or the last message name one of `tools`: a call is wanted then (a
    workflow's agent told "call web_fetch with the first link" reads a list of links, which no tool describes)."""
    last = len(body.messages) - 1
    text = " ".join(
        message_text(m, i) for i, m in enumerate(body.messages) if m.role in ("system", "developer") or i == last
    )
    return any(re.search(rf"\b{re.escape(t.function.name)}\b", text) for t in tools)


def choose(
    body: ChatCompletionRequest,
    tools: list[Tool],
    texts: list[tuple[str, str]],
    read: Callable[[list[tuple[str, str, int]]], list[float]],
    limit: int,
) -> tuple[ChatCompletionRequest, bool]:
    """Channel selection over `channel_pairs`' `tools` and `texts`, scored by `read` (log P(the text's first
    tokens, at most as many as given | the description) of each triple): `body` narrowed to the best tool, or to a
    text answer (tool_choice "none") when "no tool" competed (`NO_TOOL_HEADS`, last in `texts`) and no tool beats
    it by the margin (or at all, for a tool that stands out among several); then, where the reply may hold
    `limit` > 1 calls and the message's clauses ask for other tools (`pick_each`), to one call to each of them
    (True). Among at most `CLAUSE_TOOLS` tools the clauses are scored with the message, in the same job; else
    after it, against the message's best `CLAUSE_TOOLS` tools."""
    n = len(tools)
    parts = clauses(body, limit) if n >= 2 else []
    together = bool(parts) and n <= CLAUSE_TOOLS
    scores = read(
        [(head, text, CHANNEL_TOKENS) for head, text in texts] + (_clause_texts(tools, parts) if together else [])
    )
    named = _named(message_text(body.messages[-1], len(body.messages) - 1), tools, scores[:n])
    if (best := _best(named, scores[n : len(texts)])) is None:
        return body.model_copy(update={"tool_choice": "none"}), False
    chosen = select_tool(body, tools[best])
    if not parts:
        return chosen, False
    if together:
        each = pick_each(tools, best, parts, scores[len(texts) :])
    else:
        ranked = sorted(range(n), key=lambda i: -named[i])
        candidates = [tools[i] for i in [best, *(i for i in ranked if i != best)][:CLAUSE_TOOLS]]
        each = pick_each(candidates, 0, parts, read(_clause_texts(candidates, parts)))
    return (body.model_copy(update={"tools": each}), True) if len(each) > 1 else (chosen, False)


def pick(body: ChatCompletionRequest, tools: list[Tool], scores: list[float]) -> ChatCompletionRequest:
    """`body` narrowed by the channel `scores` of `tools` (then of `NO_TOOL_HEADS`, when they competed) as `choose`
    narrows it, its clauses aside."""
    return choose(body, tools, [("", "")] * len(scores), lambda _: scores, 1)[0]


def _best(named: list[float], no_tool: list[float]) -> int | None:
    """The best tool by its `named` scores, or None when "no tool" scored (`no_tool`) and it does not beat that
    by the margin (or at all, for a tool that stands out among several)."""
    best = max(range(len(named)), key=named.__getitem__)
    if no_tool:
        others = named[:best] + named[best + 1 :]
        standout = bool(others) and named[best] - _mean_probability(others) >= STANDOUT_MARGIN
        if named[best] - _mean_probability(no_tool) < (0.0 if standout else NO_TOOL_MARGIN):
            return None
    return best


def clauses(body: ChatCompletionRequest, limit: int) -> list[str]:
    """The clauses of the user's latest message (split at "and", "then", a sentence's end...; of two words or
    more, at most `limit`) when it has several and the reply may hold `limit` > 1 calls, else []."""
    if limit < 2:
        return []
    question = message_text(body.messages[-1], len(body.messages) - 1).strip()
    parts = [part for part in _CLAUSE_BREAK.split(question) if len(part.split()) >= 2][:limit]
    return parts if len(parts) >= 2 else []


def _clause_texts(tools: list[Tool], parts: list[str]) -> list[tuple[str, str, int]]:
    """What scores `parts`, clause by clause: its first `CLAUSE_TOKENS` tokens after each tool's description,
    then after each of `NO_TOOL_HEADS`."""
    heads = [*map(_head, tools), *NO_TOOL_HEADS]
    return [(head, " " + part, CLAUSE_TOKENS) for part in parts for head in heads]


def pick_each(tools: list[Tool], mine: int, parts: list[str], scores: list[float]) -> list[Tool]:
    """The tools to call, one for each of the message's clauses `parts` in their order, each tool once, from the
    `_clause_texts` scores: a clause's best tool where it scores `CLAUSE_MARGIN` above the message's tool
    (`tools[mine]`) and `NO_TOOL_MARGIN` above "no tool" on the clause, else the message's tool."""
    n, width = len(tools), len(tools) + len(NO_TOOL_HEADS)
    each: list[int] = []
    for j, part in enumerate(parts):
        row = scores[j * width : (j + 1) * width]
        named = _named(part, tools, row[:n])
        top = max(range(n), key=named.__getitem__)
        fits = named[top] - named[mine] >= CLAUSE_MARGIN and named[top] - _mean_probability(row[n:]) >= NO_TOOL_MARGIN
        if (chosen := top if fits else mine) not in each:
            each.append(chosen)
    return [tools[i] for i in each]


def _head(tool: Tool) -> str:
    """The description a message is scored after for `tool`."""
    return _CHANNEL_HEAD.format(name=tool.function.name, description=tool.function.description or "")


def _named(text: str, tools: list[Tool], scores: list[float]) -> list[float]:
    """`scores` of `tools`, each `NAME_WORD_BONUS` higher for each word of its name (or enums) that `text` holds."""
    words = message_words(text)
    own = naming_words([(tool.function.name, tool.function.parameters) for tool in tools])
    return [score + NAME_WORD_BONUS * named_words(mine, words) for score, mine in zip(scores, own, strict=False)]


def _mean_probability(logprobs: list[float]) -> float:
    """log of the mean of exp(logprobs)."""
    top = max(logprobs)
    return top + math.log(sum(math.exp(x - top) for x in logprobs) / len(logprobs))


def select_tool(body: ChatCompletionRequest, tool: Tool) -> ChatCompletionRequest:
    """`body` whose calls may go to `tool` only (the prompt, made before, still lists every tool). Unlike a
    client's named tool_choice, which asks for one call, this keeps several calls possible."""
    return body.model_copy(update={"tools": [tool]})


def offered_tools(body: ChatCompletionRequest) -> list[Tool]:
    """The tools the model may call under `tool_choice`; a named tool that was not offered is a 400."""
    tools = list(body.tools or [])
    choice = body.tool_choice
    if choice is None or isinstance(choice, str):
        if choice in ("required",) and not tools:
            raise InvalidRequest("tool_choice: 'required' needs at least one tool in tools", param="tool_choice")
        return [] if choice == "none" else tools
    named = [t for t in tools if t.function.name == choice.function.name]
    if not named:
        offered = ", ".join(t.function.name for t in tools) or "none"
        raise InvalidRequest(
            f"tool_choice: the function {choice.function.name!r} is not in tools (offered: {offered})",
            param="tool_choice",
        )
    return named
