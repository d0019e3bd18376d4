"""Expected failures: what the commands report in one line instead of a traceback.

A :class:`UserError` is a failure the user can fix (a missing or broken file, an argument out of
range, a run folder in use); its message names the file or argument, says what is wrong and what
to do. ``python -m hfl_lite`` prints it, like an ``OSError`` (disk full, permission denied) or a
refused pickle, as one line and exits with status 1; ``--debug`` shows the traceback instead.
Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import pickle

__all__ = ["EXPECTED_ERRORS", "UserError", "one_line"]


class UserError(Exception):
    """An expected failure whose message tells the user what is wrong and what to do."""


# what the dispatcher reports in one line (pickle: a refused or corrupt pickle names its file)
EXPECTED_ERRORS = (UserError, OSError, pickle.UnpicklingError)


def one_line(err: BaseException) -> str:
    """The error as one line: its message with the line breaks folded (an ``OSError`` with a
    file name reads ``[Errno 28] No space left on device: 'runs/x/last.pt'``)."""
    text = " ".join(str(err).split())
    return text or type(err).__name__
