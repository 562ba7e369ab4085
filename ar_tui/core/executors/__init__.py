"""Executors by name: what `--executor` chooses and a stored run remembers.

An executor runs one training or evaluation command for the engine (the
`Executor` protocol in `ar_tui.core.runner`). `local` runs it as a child
process on this machine; a cluster executor registers itself here under its
own name, and the CLI, the stored run options and the docs follow.
"""

from __future__ import annotations

from typing import Callable

from ar_tui.core.errors import UserError
from ar_tui.core.runner import Executor, LocalExecutor

DEFAULT_EXECUTOR = "local"

EXECUTORS: dict[str, Callable[[], Executor]] = {
    "local": LocalExecutor,
}


def executor_names() -> list[str]:
    return sorted(EXECUTORS)


def executor_factory(name: str) -> Callable[[], Executor]:
    """The registered factory for `name`; raises UserError for an unknown name."""
    try:
        return EXECUTORS[name]
    except KeyError:
        raise UserError(f"unknown executor {name!r}; known: {', '.join(executor_names())}") from None


def make_executor(name: str = DEFAULT_EXECUTOR) -> Executor:
    return executor_factory(name)()
