"""Executors by name: what `--executor` chooses and a stored run remembers.

An executor runs one training or evaluation command for the engine (the
`Executor` protocol in `ar_tui.core.executors.local`). `local` runs it as a child
process on this machine; a cluster executor registers itself here under its
own name, and the CLI, the stored run options and the docs follow.
"""

from __future__ import annotations

from typing import Any, Callable

from ar_tui.core.errors import UserError
from ar_tui.core.executors.base import Executor
from ar_tui.core.executors.local import LocalExecutor

DEFAULT_EXECUTOR = "local"


def _ray_executor(settings: dict[str, Any]) -> Executor:
    from ar_tui.core.executors.ray import RayExecutor

    return RayExecutor(settings.get("ray_address"))


# A factory gets the run's extra options (a cluster's address, say).
EXECUTORS: dict[str, Callable[[dict[str, Any]], Executor]] = {
    "local": lambda settings: LocalExecutor(),
    "ray": _ray_executor,
}


def executor_names() -> list[str]:
    return sorted(EXECUTORS)


def executor_factory(name: str) -> Callable[[dict[str, Any]], Executor]:
    """The registered factory for `name`; raises UserError for an unknown name."""
    try:
        return EXECUTORS[name]
    except KeyError:
        raise UserError(f"unknown executor {name!r}; known: {', '.join(executor_names())}") from None


def make_executor(name: str = DEFAULT_EXECUTOR, settings: dict[str, Any] | None = None) -> Executor:
    return executor_factory(name)(settings or {})
