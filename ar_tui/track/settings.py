"""Which tracker a night logs to: `--track NAME`, else `[track] to` in the
target's `autoresearch.toml`, else in the user's config; `uri` and
`project` the same way (the target's table wins). Each tracker is its own
client, installed as an extra: `pip install 'ar-tui[mlflow]'`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ar_tui.core.errors import UserError

TRACKERS = ("mlflow", "wandb", "trackio")
_KEYS = {"to", "uri", "project"}


@dataclass
class TrackSettings:
    to: str | None = None  # None: no tracker
    uri: str | None = None  # MLflow's tracking URI, W&B's base URL, Trackio's server
    project: str | None = None  # MLflow's experiment, W&B's and Trackio's project (default "ar-tui")
    grace_s: float = 60.0  # at the end, how long the last records may take

    def __bool__(self) -> bool:
        return self.to is not None


def resolve_track(flag_to: str | None, target: Path | None = None,
                  user_table: dict[str, Any] | None = None) -> TrackSettings:
    from ar_tui.user_config import load_user_config, user_config_path

    if user_table is None:
        user_table = load_user_config().get("track", {})
    tables = [(user_table, str(user_config_path()))]
    if target is not None:
        from ar_tui.core.config import CONFIG_NAME, load_target

        tables.append((load_target(Path(target)).track, str(Path(target) / CONFIG_NAME)))
    settings = TrackSettings()
    for table, where in tables:
        unknown = sorted(set(table) - _KEYS)
        if unknown:
            raise UserError(f"{where}: [track] {unknown[0]}: unknown key; known: {', '.join(sorted(_KEYS))}")
        for key in sorted(_KEYS):
            if key in table:
                if not isinstance(table[key], str) or not table[key].strip():
                    raise UserError(f"{where}: [track] {key} must be a non-empty string")
                setattr(settings, key, table[key].strip())
    if flag_to is not None:
        settings.to = flag_to
    if settings.to is not None and settings.to not in TRACKERS:
        raise UserError(f"[track] to: {settings.to!r} is not a tracker; expected {', '.join(TRACKERS)}")
    return settings


def tracker_factory(settings: TrackSettings) -> Callable[[], Any]:
    """A maker of the tracker's client, checked now (its package is
    installed) and built later, in the thread that uses it."""
    import importlib.util

    assert settings.to is not None
    if importlib.util.find_spec(settings.to) is None:
        raise UserError(f"--track {settings.to} needs its client: pip install 'ar-tui[{settings.to}]'")
    if settings.to == "trackio":
        # Trackio asks whether each logged value is a matplotlib Figure, from the
        # tracker's thread, while the report may import matplotlib in another:
        # a module half-imported in one thread is seen broken by the other. Made
        # whole here, once, before any thread starts.
        importlib.import_module("matplotlib.figure")

    def make() -> Any:
        if settings.to == "mlflow":
            from ar_tui.track.mlflow_tracker import MlflowTracker

            return MlflowTracker(settings.uri, settings.project)
        if settings.to == "wandb":
            from ar_tui.track.wandb_tracker import WandbTracker

            return WandbTracker(settings.uri, settings.project)
        from ar_tui.track.trackio_tracker import TrackioTracker

        return TrackioTracker(settings.uri, settings.project)

    return make
