"""Text from outside (web pages, models, imported sessions) made safe to print on a terminal.

    console.print(Text(terminal_safe(reply)))   # ESC [2J shows as \\x1b[2J instead of clearing the screen

A terminal obeys control characters in what it prints: ESC starts sequences that clear the screen, set the window
title or write the clipboard (OSC 52); CR and backspace overwrite what is shown. Every printing command passes such
text through `terminal_safe`, which shows each control character as a visible escape and keeps newline and tab.
rich strips only a few (BEL, BS, VT, FF, CR) and lets ESC through, so it cannot do this job on its own.
"""

from __future__ import annotations

__all__ = ["terminal_safe"]

# Bidirectional overrides and isolates reorder what is shown ("Trojan Source"): escaped like control characters.
_BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_KEPT = "\n\t"


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


# C0 controls, DEL and the C1 controls (0x9b is a one-byte CSI to some terminals), then the bidi marks.
_TABLE = {
    code: _escape(chr(code))
    for code in [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0), *map(ord, _BIDI)]
    if chr(code) not in _KEPT
}


def terminal_safe(text: str) -> str:
    """`text` with every control character (but newline and tab) shown as a visible escape such as `\\x1b`.

    A CR before a newline (Windows line ends) is dropped rather than shown.
    """
    return text.replace("\r\n", "\n").translate(_TABLE)
