"""What one browser tab runs: `python -m ar_tui.web.viewer RUN_DIR`.

textual-serve starts this command for every websocket, with Textual's web
driver selected through the environment; the app is the attached app, so a
tab is a viewer exactly like `ar-tui attach`. Closing the tab ends this
process and nothing else.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from ar_tui.ui.attached_app import open_run


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m ar_tui.web.viewer RUN_DIR", file=sys.stderr)
        return 2
    asyncio.run(open_run(Path(argv[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
