"""What watches a night from outside its run dir: notifications
(`ar_tui.notify`) and an experiment tracker (`ar_tui.track`), as services
of the engine. Resolved before the engine starts, so a bad URL or a missing
client is one line before the night, not a warning in the middle of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ar_tui.core.config import RunOption
from ar_tui.track.settings import TRACKERS

# Stored with the run (a resume logs to the same tracker) and adjustable: a
# tracker may be added to a night that ran without one. --notify is not a
# RunOption: its URLs are secrets, never stored (ar_tui.notify.settings).
WATCHER_RUN_OPTIONS = (
    RunOption("track", "log every experiment to this tracker (pip install 'ar-tui[NAME]'; also [track])",
              choices=TRACKERS, adjustable=True),
)


def outside_services(notify_urls: list[str] | None, track_to: str | None, target: Path | None) -> list[Any]:
    from ar_tui.notify.service import notify_service
    from ar_tui.notify.settings import resolve_notify
    from ar_tui.track.service import track_service
    from ar_tui.track.settings import resolve_track, tracker_factory

    services = []
    notify = resolve_notify(notify_urls, target)
    if notify:
        services.append(notify_service(notify))
    track = resolve_track(track_to, target)
    if track:
        tracker_factory(track)  # refuses a tracker whose client is not installed
        services.append(track_service(track))
    return services
