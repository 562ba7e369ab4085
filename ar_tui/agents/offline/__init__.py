"""The offline proposer (no API key, no network): knob discovery (`knobs`),
the Optuna search (`study`), the hand-written one (`classic`), and the
proposer that writes their proposals through the Workspace (`proposer`)."""

from ar_tui.agents.offline.classic import Search
from ar_tui.agents.offline.descriptions import describe, parse_description
from ar_tui.agents.offline.knobs import load_knobs
from ar_tui.agents.offline.proposer import DEFAULT_SEARCH, SEARCHES, OfflineProposer

__all__ = ["DEFAULT_SEARCH", "SEARCHES", "OfflineProposer", "Search", "describe", "load_knobs", "parse_description"]
