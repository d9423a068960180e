"""What a terminal (or a page) is shown of a text dbdedup did not write: a file's path.

A file name may hold any byte but ``/`` and NUL: a newline, a carriage return, an escape sequence that moves
the cursor, clears a line or sets the window's title, a right-to-left override that shows ``gpj.exe`` for
``exe.jpg``. Printed as it is, such a name makes a report or a dry run of ``apply`` show other lines or other
paths than the ones it lists: a plan the user reads before ``--yes`` must say which files it acts on. Every
path and message printed for people goes through ``printable``; json, csv and the database keep the text as
it is.
"""

from __future__ import annotations

import re

# C0 controls, DEL, C1 controls (a terminal reads 0x9b as an escape sequence's start) and Unicode's direction
# overrides and isolates (they reorder what follows on the line)
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match) -> str:
    character = match.group()
    if character in _NAMED:
        return _NAMED[character]
    code = ord(character)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` as a terminal may be given it: unchanged when it holds no control or direction character, else
    with each such character written as a C escape (``\\n``, ``\\x1b``, ``\\u202e``) and each backslash doubled,
    so that the escapes cannot be mistaken for characters of the name."""
    if _UNSAFE.search(text) is None:
        return text
    return _UNSAFE.sub(_escape, text.replace("\\", "\\\\"))
