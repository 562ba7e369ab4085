"""What `ar-tui` exits with, decided in one place for the CLI and the app.

0: the command did what was asked (a run that stopped cleanly included).
1: a run that started could not go on, or a command found nothing to act on
   (`RunError`, a run that stopped on an error).
2: bad input; nothing started and the user must change something (`UserError`).

Toolkit-free: the app imports it as well as the CLI, so neither imports the other.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from ar_tui.core.errors import ArTuiError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_BAD_INPUT = 2


def exit_code(error: BaseException | None = None, stopped: Any = None) -> int:
    """The exit code for a command that raised `error`, or whose run ended
    with the RunStopped `stopped` (anything with an `error` flag)."""
    if error is not None:
        if isinstance(error, ArTuiError):
            return error.exit_code
        return EXIT_ERROR
    if stopped is not None and getattr(stopped, "error", False):
        return EXIT_ERROR
    return EXIT_OK


def report(error: BaseException, stream: TextIO | None = None) -> int:
    """Print the one line a person reads for `error` and return its exit code.
    Our own errors are already worded for a person; anything else is a bug and
    says so with its type."""
    line = str(error) if isinstance(error, ArTuiError) else f"the engine failed: {error!r}"
    print(f"ar-tui: {line}", file=stream or sys.stderr)
    return exit_code(error)

