"""Waiting on state, not on time: poll until a condition holds."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable


async def wait_for(predicate: Callable[[], Any], timeout: float = 60.0, what: str = "",
                   interval: float = 0.05) -> Any:
    """Poll a (possibly async) predicate until it is true and return its value;
    an AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(interval)
