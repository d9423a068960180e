"""The one error type users see."""

from __future__ import annotations


class DbdedupError(Exception):
    """A failure the user can act on: a one-line message plus a hint.

    The CLI prints ``message`` and ``hint`` and exits non-zero; the traceback
    is shown only with ``-v``.
    """

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message
