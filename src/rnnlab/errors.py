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


class NonFiniteError(RnnlabError):
    """A run whose loss or parameters became nan/inf: that run failed, others may go on.

    ``step`` is the optimiser step at which it was seen (``None`` when unknown).
    The trainer raises it; the engine hands it back in place of a job's result, so
    an experiment can record the run as failed and train the rest.
    """

    def __init__(self, message: str, step: int | None = None) -> None:
        super().__init__(message)
        self.step = step


def ensure(condition: bool, message: str) -> None:
    """Raise :class:`RnnlabError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise RnnlabError(message)
