"""The user's own config file: settings that belong to a person rather than
to a target, such as where notifications go (their URLs hold secrets, so
they have no place in a target's `autoresearch.toml`, which is committed
and which the agent reads).

`$AR_TUI_CONFIG`, else `config.toml` in the platform's config dir
(`~/.config/ar-tui/config.toml` on Linux). Only the tables named in `TABLES`
are read; each is checked by the part that uses it. Toolkit-free.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from ar_tui.core.errors import UserError

TABLES = {"notify", "track"}


def user_config_path() -> Path:
    explicit = os.environ.get("AR_TUI_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    from platformdirs import user_config_dir

    return Path(user_config_dir("ar-tui")) / "config.toml"


def load_user_config() -> dict[str, dict[str, Any]]:
    """The user's tables, {} when there is no file. A bad file is refused
    with one line: a silent fallback would lose the user's notifications."""
    path = user_config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise UserError(f"{path}: cannot read the config ({exc.strerror or exc})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: {exc}") from None
    unknown = sorted(set(data) - TABLES)
    if unknown:
        raise UserError(f"{path}: unknown section [{unknown[0]}]; expected {' and '.join(f'[{t}]' for t in sorted(TABLES))}")
    for name, table in data.items():
        if not isinstance(table, dict):
            raise UserError(f"{path}: [{name}] must be a table")
    return {name: dict(table) for name, table in data.items()}
