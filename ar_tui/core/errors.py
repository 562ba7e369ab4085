"""One error vocabulary, so the CLI maps errors to exit codes in one place.

`UserError` is bad input: nothing started, the user must change something
(exit 2). `RunError` is a run that started and could not go on (exit 1).
Every message is one line meant for a person. Control flow inside the engine
(a proposal that failed, a proposer that stopped) is not an error of this
kind: see `ar_tui.core.proposer`.
"""

from __future__ import annotations


class ArTuiError(Exception):
    """Base of every error ar-tui reports to a person in one line."""

    exit_code = 1


class UserError(ArTuiError):
    """Bad input (a config, a flag, a target, a run dir): the run refuses to start."""

    exit_code = 2


class RunError(ArTuiError):
    """A run that had started and could not go on (a full disk, a broken run dir)."""

    exit_code = 1
