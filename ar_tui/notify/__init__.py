"""Notifications while nobody watches: a solid keep, a crash streak, a
stall, a budget reached, a missing sandbox and the night's end, sent to
Apprise URLs (`--notify`, `[notify]`). An observer of the engine's events,
outside `ar_tui.core`: the engine knows nothing of it.
"""
