"""A choice `ar-tui init` made: its own module, because both the repository's
reading (`discover`) and the subcommand (`command`) make them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Found(Generic[T]):
    """A choice, why it was made, and whether a terminal should ask about it."""

    value: T
    why: str
    sure: bool = True
