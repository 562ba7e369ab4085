"""Where a night's messages go and when: `--notify URL` flags, the
`AR_TUI_NOTIFY` variable (how a detached engine is handed the flags' URLs:
never through its stored options), and the `[notify]` tables of the user's
config and of the target's `autoresearch.toml`.

The URLs of all four are sent to; for the thresholds the target's table
wins over the user's. URLs belong in the user's config: a target's
`autoresearch.toml` is committed, and the agent can read it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ar_tui.core.errors import UserError

URLS_ENV = "AR_TUI_NOTIFY"  # newline-separated; stripped from every training run's environment
_KEYS = {"urls", "crash_streak", "stall_after"}


@dataclass
class NotifySettings:
    urls: list[str] = field(default_factory=list, repr=False)  # secrets
    crash_streak: int = 5
    stall_after: float = 4.0  # multiples of the training budget without a decision
    attempts: int = 4
    backoff_s: float = 2.0  # the first wait between tries, doubled after each
    timeout_s: float = 15.0  # one try
    grace_s: float = 30.0  # at the end, how long the last messages may take

    def __bool__(self) -> bool:
        return bool(self.urls)


def _table_urls(table: dict[str, Any], where: str) -> list[str]:
    urls = table.get("urls", [])
    if isinstance(urls, str):
        urls = [urls]
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise UserError(f"{where}: [notify] urls must be a list of Apprise URLs")
    return urls


def resolve_notify(flag_urls: list[str] | None, target: Path | None = None,
                   user_table: dict[str, Any] | None = None) -> NotifySettings:
    """The settings of a night; raises UserError on a bad table or URL."""
    from ar_tui.notify.delivery import destinations
    from ar_tui.user_config import load_user_config, user_config_path

    if user_table is None:
        user_table = load_user_config().get("notify", {})
    target_table: dict[str, Any] = {}
    target_where = "autoresearch.toml"
    if target is not None:
        from ar_tui.core.config import CONFIG_NAME, load_target

        target_table = load_target(Path(target)).notify
        target_where = str(Path(target) / CONFIG_NAME)
    urls = [*(flag_urls or []), *os.environ.get(URLS_ENV, "").splitlines(),
            *_table_urls(user_table, str(user_config_path())), *_table_urls(target_table, target_where)]
    settings = NotifySettings(urls=[d.url for d in destinations(urls)])
    for table, where in ((user_table, str(user_config_path())), (target_table, target_where)):
        unknown = sorted(set(table) - _KEYS)
        if unknown:  # a misspelt key would silently keep the default
            raise UserError(f"{where}: [notify] {unknown[0]}: unknown key; known: {', '.join(sorted(_KEYS))}")
        if "crash_streak" in table:
            value = table["crash_streak"]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserError(f"{where}: [notify] crash_streak must be a whole number, 1 or more")
            settings.crash_streak = value
        if "stall_after" in table:
            value = table["stall_after"]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise UserError(f"{where}: [notify] stall_after must be a positive number of training budgets")
            settings.stall_after = float(value)
    return settings
