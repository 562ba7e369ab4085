"""Small text formatters shared by the app, the headless printer and the
report, so a metric or a duration reads the same everywhere. Toolkit-free.
`missing` is how an unknown value reads ("-"; the report says "n/a")."""

from __future__ import annotations

from ar_tui.core import events as ev


def duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "-"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def hours_minutes(seconds: float | None, missing: str = "-") -> str:
    """A span of a night: 7h 05m."""
    if seconds is None:
        return missing
    minutes = int(round(seconds / 60))
    return f"{minutes // 60}h {minutes % 60:02d}m"


def metric(value: float | None, missing: str = "-") -> str:
    return missing if value is None else f"{value:.6f}"


def delta(value: float | None, missing: str = "-") -> str:
    """A change of the metric, in its own units, always signed."""
    return missing if value is None else f"{value:+.6f}"


def percent(value: float | None, signed: bool = True, missing: str = "-") -> str:
    if value is None:
        return missing
    return f"{value:+.2f}%" if signed else f"{value:.0f}%"


def share(value: float | None, missing: str = "-") -> str:
    """A percentage given as a plain figure (12.34 -> 12.34%)."""
    return missing if value is None else f"{value:.2f}%"


def dollars(value: float | None) -> str:
    if value is None:
        return "-"
    return f"${value:,.2f}" if abs(value) >= 10 else f"${value:.3f}"


def exact_dollars(value: float | None, missing: str = "-") -> str:
    """Money in a summary or a report, where a token's cost still shows."""
    return missing if value is None else f"${value:.4f}"


def tokens(count: int) -> str:
    if count >= 1_000_000:
        return f"{count / 1_000_000:.2f}M"
    if count >= 1_000:
        return f"{count / 1_000:.1f}k"
    return str(count)


# A status must read differently without colour too (NO_COLOR, monochrome
# terminals), so each has its own mark as well as its own style.
STATUS_MARKS = {
    ev.STATUS_KEEP: "✓",
    ev.STATUS_DISCARD: "·",
    ev.STATUS_CRASH: "✗",
    ev.STATUS_VETO: "⊘",
}

STATE_LABELS = {
    ev.STATE_STARTING: "starting",
    ev.STATE_PROPOSING: "proposing",
    ev.STATE_VETO_WINDOW: "waiting for the veto window",
    ev.STATE_RUNNING: "running",
    ev.STATE_EVALUATING: "evaluating",
    ev.STATE_IDLE: "idle",
    ev.STATE_PAUSED: "paused",
    ev.STATE_WAITING_API: "waiting for the API",
    ev.STATE_STOPPING: "stopping",
    ev.STATE_STOPPED: "stopped",
}


_SPARK_BLOCKS = "▁▂▃▄▅▆▇█"


def spark(values: list[float], width: int) -> str:
    """The last `width` values as block characters, scaled from their lowest
    to their highest: fed the best so far, it climbs with every gain."""
    values = values[-width:]
    if not values:
        return ""
    low, high = min(values), max(values)
    if high <= low:
        return _SPARK_BLOCKS[0] * len(values)
    top = len(_SPARK_BLOCKS) - 1
    return "".join(_SPARK_BLOCKS[round((v - low) / (high - low) * top)] for v in values)


def noise_label(sd: float | None, dof: int, jitter_only: bool = False, band: float | None = None) -> str:
    """The noise in a few words, for the app: `noise sd 0.012498 (6 dof) · band 0.031042`,
    with `JITTER ONLY` when the repeats agree to float precision."""
    if sd is None:
        return "noise: not measured yet (no commit run twice)"
    text = f"noise sd {sd:.6f} ({dof} dof)"
    if band is not None:
        text += f" · band {band:.6f}"
    if jitter_only:
        text += " · JITTER ONLY (the target ignores AR_SEED)"
    return text
