"""Sample workflows for the runner, HTTP API and UI tests: two agents that talk, briefly or (almost) forever."""

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
