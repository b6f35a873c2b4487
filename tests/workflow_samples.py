"""Sample workflows for the runner, HTTP API and UI tests: two agents that talk, briefly or (almost) forever; a
writer and a human."""

from __future__ import annotations

PAIR = """\
name: pair
description: Two agents talk.
inputs:
  topic: {default: cats}
agents:
  - {name: alice, system_message: You talk., max_tokens: 4}
  - {name: bob, system_message: You answer., max_tokens: 4}
team: {type: round_robin, max_turns: 2}
termination: {text: null}
task: Talk about {topic}.
"""
# Runs until stopped (a test cancels it).
LONG = PAIR.replace("name: pair", "name: long").replace("max_turns: 2", "max_turns: 100")
# No message cap either: runs until stopped.
ENDLESS = LONG.replace("termination: {text: null}", "termination: {text: null, max_messages: null}")
# A writer and a user proxy that asks the human every turn.
ASK = """\
name: ask
description: A writer, and you.
inputs:
  topic: {default: cats}
agents:
  - {name: writer, system_message: You write., max_tokens: 4}
  - {name: you, kind: user_proxy, auto_reply: Go on.}
team: {type: round_robin, max_turns: 4}
termination: {text: null}
human_input: always
task: Write about {topic}.
"""
