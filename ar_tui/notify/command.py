"""`ar-tui notify --test`: one message to each destination, and what
became of it, so that a URL is known to work before the night."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from ar_tui import exit_codes


def add_notify_command(sub) -> None:
    notify = sub.add_parser("notify", help="check the notification destinations ([notify], --notify)")
    notify.add_argument("--test", action="store_true", required=True,
                        help="send one message to each destination and say which arrived")
    notify.add_argument("--notify", action="append", metavar="URL", help="an Apprise URL (repeatable)")
    notify.add_argument("--target", type=Path, help="a target whose autoresearch.toml has a [notify] table "
                                                    "(default: this directory)")


async def _send_test(urls: list[str]):
    from ar_tui.notify.delivery import Outbox, destinations
    from ar_tui.notify.rules import Message

    outbox = Outbox(destinations(urls), attempts=2, backoff_s=1.0)
    outbox.start()
    outbox.post(Message("test", "ar-tui: test message", "ar-tui can reach this destination. "
                        "Messages during a night: a solid keep, a crash streak, a stall, a budget reached, "
                        "a missing sandbox and the night's end."))
    await outbox.close(grace_s=60.0)
    return outbox


def cmd_notify(args: argparse.Namespace) -> int:
    import sys

    from ar_tui.notify.settings import resolve_notify

    target = args.target or Path.cwd()
    settings = resolve_notify(args.notify, target if (target / "autoresearch.toml").is_file() else None)
    if not settings.urls:
        print("ar-tui: no destinations: give --notify URL, or urls in the [notify] table of your config "
              "(ar-tui notify --help)", file=sys.stderr)
        return exit_codes.EXIT_ERROR
    outbox = asyncio.run(_send_test(settings.urls))
    for outcome in outbox.outcomes:
        state = "delivered" if outcome.delivered else "NOT delivered"
        print(f"{outcome.destination}: {state} ({outcome.attempts} {'try' if outcome.attempts == 1 else 'tries'})")
    return exit_codes.EXIT_OK if outbox.undelivered == 0 else exit_codes.EXIT_ERROR
