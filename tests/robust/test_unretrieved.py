"""The suite's guard against swallowed task exceptions catches one."""

from __future__ import annotations

import asyncio
import gc

from tests.conftest import UNRETRIEVED


async def test_an_unretrieved_task_exception_is_caught_by_the_suite_guard() -> None:
    async def fail() -> None:
        raise OSError(28, "No space left on device")

    task = asyncio.get_running_loop().create_task(fail())
    await asyncio.sleep(0.01)
    del task
    gc.collect()
    caught, UNRETRIEVED.messages[:] = list(UNRETRIEVED.messages), []  # this test's own, on purpose
    assert caught and "never retrieved" in caught[0] and "No space left on device" in caught[0]
