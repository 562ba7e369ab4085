"""Executors by name: what `--executor` chooses and a stored run remembers.

An executor runs a trial's commands for the engine (the `Executor` protocol
in `base`). `local` runs them as child processes on this machine; a cluster
executor registers its line in `EXECUTORS` with its factory, a few words for
`--executor`'s help, the options it takes (flags the run stores), and, where
the cluster decides the slots, how to find them. The CLI, the stored run
options and the docs follow. The implementations are imported inside the
factories, so choosing `local` never loads Ray.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ar_tui.core.config import RunOption
from ar_tui.core.errors import UserError
from ar_tui.core.executors.base import Executor
from ar_tui.core.executors.local import LocalExecutor

DEFAULT_EXECUTOR = "local"

# A factory gets the run's stored options (a cluster's address, say).
Settings = dict[str, Any]


@dataclass(frozen=True)
class ExecutorEntry:
    factory: Callable[[Settings], Executor]
    help: str  # a few words for --executor's help
    options: tuple[RunOption, ...] = ()
    # The run's slots when --devices/--slots are not given (one per GPU of a
    # cluster, say); None: this machine's GPUs.
    devices: Callable[[Settings], list[str]] | None = None


def _ray_executor(settings: Settings) -> Executor:
    from ar_tui.core.executors.ray import RayExecutor

    return RayExecutor(settings.get("ray_address"))


def _ray_devices(settings: Settings) -> list[str]:
    from ar_tui.core.executors.ray import cluster_devices

    return cluster_devices(settings.get("ray_address"))  # one slot per GPU in the cluster


EXECUTORS: dict[str, ExecutorEntry] = {
    "local": ExecutorEntry(lambda settings: LocalExecutor(), "this machine (the default)"),
    "ray": ExecutorEntry(_ray_executor, "a Ray cluster; pip install 'ar-tui[ray]'", (
        RunOption("ray_address", "the Ray cluster (default: RAY_ADDRESS, else a Ray started for the run)"),
    ), devices=_ray_devices),
}


def executor_names() -> list[str]:
    return sorted(EXECUTORS)


def executor_entry(name: str) -> ExecutorEntry:
    """The registered entry for `name`; raises UserError for an unknown name."""
    try:
        return EXECUTORS[name]
    except KeyError:
        raise UserError(f"unknown executor {name!r}; known: {', '.join(executor_names())}") from None


def executor_options() -> tuple[RunOption, ...]:
    return tuple(option for entry in EXECUTORS.values() for option in entry.options)


def make_executor(name: str = DEFAULT_EXECUTOR, settings: Settings | None = None) -> Executor:
    return executor_entry(name).factory(settings or {})
