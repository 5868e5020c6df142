"""The one exception type for user errors.

Anything the user can fix (a wrong name, an impossible length, a missing or
corrupt file, a non-finite loss) raises :class:`RnnlabError` with one sentence
that says what was wrong and what would be right. The CLI turns it into a single
line on stderr and exit code 2; every other exception is a bug and stays a
traceback.
"""

from __future__ import annotations


class RnnlabError(Exception):
    """A user error, reported as one clear sentence."""


def check(condition: bool, message: str) -> None:
    """Raise :class:`RnnlabError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise RnnlabError(message)
