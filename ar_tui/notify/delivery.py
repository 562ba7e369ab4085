"""Sending messages to Apprise destinations without ever holding up the
engine: `Outbox.post` only queues; one task per destination sends, retries
with a doubling wait, and counts what never arrived.

A destination's URL holds its secret (a token, a webhook path, a password),
so it is named everywhere by `Destination.label` ("json #1"), never by URL,
and Apprise's own logger (whose lines carry hosts and paths) is silenced.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from ar_tui.core.errors import UserError
from ar_tui.notify.rules import Message

# Apprise logs the URLs it sends to; nothing of ours may print them.
logging.getLogger("apprise").disabled = True


def scheme_of(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else "?"


@dataclass
class Destination:
    url: str = field(repr=False)  # a secret: never shown, logged or stored
    label: str  # "json #1": what every message about it says

    def __repr__(self) -> str:  # a traceback or a debug print shows the label only
        return f"Destination({self.label})"


def destinations(urls: list[str]) -> list[Destination]:
    """One Destination per distinct URL, in order. An URL Apprise does not
    know is refused with one line naming its scheme and place, not the URL."""
    import apprise

    found: list[Destination] = []
    for number, url in enumerate(dict.fromkeys(u.strip() for u in urls if u.strip()), 1):
        label = f"{scheme_of(url)} #{number}"
        if not apprise.Apprise().add(url):
            raise UserError(f"notify: destination {number} ({scheme_of(url)}://...) is not a URL Apprise can send "
                            f"to; see https://github.com/caronc/apprise/wiki for the forms")
        found.append(Destination(url, label))
    return found


@dataclass
class Outcome:
    destination: str
    message: Message
    delivered: bool
    attempts: int


class Outbox:
    """Queues messages for every destination and delivers them in the
    background. `on_undelivered(total, label, reason)` is told of each
    message that never arrived."""

    def __init__(self, targets: list[Destination], *, attempts: int = 4, backoff_s: float = 2.0,
                 timeout_s: float = 15.0, on_undelivered: Callable[[int, str, str], None] | None = None) -> None:
        self.targets = targets
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.on_undelivered = on_undelivered
        self.undelivered = 0
        self.outcomes: list[Outcome] = []
        self._queues: dict[str, asyncio.Queue[Message]] = {}
        self._sending: dict[str, Message] = {}  # what each destination is trying now
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        for target in self.targets:
            queue: asyncio.Queue[Message] = asyncio.Queue()
            self._queues[target.label] = queue
            self._tasks.append(asyncio.create_task(self._deliver(target, queue), name=f"notify {target.label}"))

    def post(self, message: Message) -> None:
        for queue in self._queues.values():
            queue.put_nowait(message)

    async def close(self, grace_s: float) -> None:
        """Wait up to `grace_s` for the queues to empty; what is left then
        is counted as undelivered."""
        waits = [asyncio.create_task(queue.join()) for queue in self._queues.values()]
        if waits:
            await asyncio.wait(waits, timeout=grace_s)
        for task in (*waits, *self._tasks):
            task.cancel()
        await asyncio.gather(*waits, *self._tasks, return_exceptions=True)
        for label, message in self._sending.items():  # cut off mid-try by the end of the night
            self._lost(label, message, 0, "the night ended while it was being sent")
        for label, queue in self._queues.items():
            while not queue.empty():
                message = queue.get_nowait()
                self._lost(label, message, 0, "the night ended before it was sent")

    async def _deliver(self, target: Destination, queue: asyncio.Queue[Message]) -> None:
        import apprise

        sender = apprise.Apprise()
        sender.add(target.url)
        while True:
            message = await queue.get()
            self._sending[target.label] = message
            try:
                await self._send_with_retries(sender, target, message)
                del self._sending[target.label]  # left there when cancelled: counted by close()
            finally:
                queue.task_done()

    async def _send_with_retries(self, sender: Any, target: Destination, message: Message) -> None:
        wait = self.backoff_s
        why = ""
        for attempt in range(1, self.attempts + 1):
            try:
                if await asyncio.wait_for(sender.async_notify(body=message.body, title=message.title),
                                          self.timeout_s):
                    self.outcomes.append(Outcome(target.label, message, True, attempt))
                    return
                why = "refused or unreachable"
            except asyncio.TimeoutError:
                why = f"no answer in {self.timeout_s:g} s"
            except Exception as exc:  # an exception's text may quote the URL: its type only
                why = type(exc).__name__
            if attempt < self.attempts:
                await asyncio.sleep(wait)
                wait *= 2
        self._lost(target.label, message, self.attempts, f"{why} after {self.attempts} tries")

    def _lost(self, label: str, message: Message, attempts: int, why: str) -> None:
        self.undelivered += 1
        self.outcomes.append(Outcome(label, message, False, attempts))
        if self.on_undelivered is not None:
            self.on_undelivered(self.undelivered, label, f"{message.kind}: {why}")
