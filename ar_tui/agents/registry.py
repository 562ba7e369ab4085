"""Proposers by name: what `--agent` chooses and a stored run remembers.

Each entry builds a proposer from the settings a run was started with; the
imports happen inside, so choosing the offline proposer never loads the
Anthropic SDK. A new proposer registers here and the CLI offers it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ar_tui.core.errors import UserError
from ar_tui.core.proposer import Proposer


@dataclass(frozen=True)
class ProposerSettings:
    model: str
    program: str | None = None  # the agent's instructions (text), for agents that read them
    base_url: str | None = None
    seed: int = 0
    target: Path | None = None  # the target directory, for proposers that read it before the run
    run_dir: Path | None = None  # where a proposer may keep what it remembers across resumes
    extra: dict[str, Any] = field(default_factory=dict)  # the run's extra options (RunOptions.extra)


def _offline(settings: ProposerSettings) -> Proposer:
    from ar_tui.agents.offline import OfflineProposer

    # Not given: the target's [offline] table, else the defaults (OfflineProposer.search_for).
    return OfflineProposer(seed=settings.seed, search=settings.extra.get("offline_search"),
                           sampler=settings.extra.get("sampler"))


def _claude(settings: ProposerSettings) -> Proposer:
    from ar_tui.agents.claude import ClaudeAgent

    if settings.program is None:
        raise UserError("the claude agent needs its instructions: pass --program FILE (default: program.md)")
    return ClaudeAgent(model=settings.model, program=settings.program, base_url=settings.base_url)


def cli_runtime(kind: str, **options: Any) -> Proposer:
    """The agent CLI `kind` (claude-code, codex) with its options."""
    from ar_tui.agents.cli import ClaudeCodeAgent, CodexAgent

    return (ClaudeCodeAgent if kind == "claude-code" else CodexAgent)(**options)


def _cli(kind: str) -> Callable[[ProposerSettings], Proposer]:
    """An agent CLI (Claude Code, Codex), one headless session per proposal."""

    def build(settings: ProposerSettings) -> Proposer:
        if settings.program is None:
            raise UserError(f"the {kind} agent needs its instructions: pass --program FILE (default: program.md)")
        return cli_runtime(kind, model=settings.model, program=settings.program, base_url=settings.base_url,
                           timeout_s=settings.extra.get("cli_timeout_s"), sandbox=settings.extra.get("sandbox", "auto"))

    return build


def _hybrid(settings: ProposerSettings) -> Proposer:
    from ar_tui.agents.hybrid import HybridProposer

    # Structure from Claude, or from the team when --team names one.
    structural = _team(settings) if settings.extra.get("team") else _claude(settings)
    return HybridProposer(structural, _offline(settings))


def _team(settings: ProposerSettings) -> Proposer:
    from ar_tui.agents.team import team_from_settings

    return team_from_settings(settings)


PROPOSERS: dict[str, Callable[[ProposerSettings], Proposer]] = {
    "offline": _offline,
    "claude": _claude,
    "hybrid": _hybrid,  # Claude for structure, the offline search for the knobs
    "team": _team,
    "claude-code": _cli("claude-code"),  # the Claude Code CLI, headless, one session per proposal
    "codex": _cli("codex"),  # the Codex CLI, the same way
}
# Proposers that follow program.md; the others need no instructions file.
READS_PROGRAM = frozenset({"claude", "hybrid", "team", "claude-code", "codex"})


def proposer_names() -> list[str]:
    return list(PROPOSERS)


def make_proposer(name: str, settings: ProposerSettings) -> Proposer:
    try:
        factory = PROPOSERS[name]
    except KeyError:
        raise UserError(f"unknown agent {name!r}; known: {', '.join(proposer_names())}") from None
    return factory(settings)
