"""Proposers by name: what `--agent` chooses and a stored run remembers.

Each entry builds a proposer from the settings a run was started with; the
imports happen inside, so choosing the offline proposer never loads a
model SDK. A new proposer registers here and the CLI offers it.
"""

from __future__ import annotations

import os
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


def _single(settings: ProposerSettings, api: str) -> Proposer:
    """The single agent; `--model API:MODEL[@URL]` may name another API than `api`."""
    from ar_tui.agents.llm import model_spec
    from ar_tui.agents.single import SingleAgent

    spec = model_spec(settings.model)
    api = spec.api or api
    if settings.program is None:
        raise UserError("the agent needs its instructions: pass --program FILE (default: program.md)")
    base_url = spec.base_url or settings.base_url
    if api == "openai-chat" and not (base_url or os.environ.get("OPENAI_BASE_URL")) \
            and spec.model.lower().startswith("claude"):
        # The default --model is a Claude model, which OpenAI does not serve.
        raise UserError(f"--agent openai needs --model, e.g. --model gpt-4.1-mini (not {spec.model}), "
                        f"and --base-url for a server other than OpenAI's")
    return SingleAgent(api=api, model=spec.model, program=settings.program, base_url=base_url)


def _claude(settings: ProposerSettings) -> Proposer:
    return _single(settings, "anthropic")


def _openai(settings: ProposerSettings) -> Proposer:
    return _single(settings, "openai-chat")


def _hybrid(settings: ProposerSettings) -> Proposer:
    from ar_tui.agents.hybrid import HybridProposer

    # Structure from the single agent (Claude, or the API --model names), or
    # from the team when --team names one.
    structural = _team(settings) if settings.extra.get("team") else _claude(settings)
    return HybridProposer(structural, _offline(settings))


def _team(settings: ProposerSettings) -> Proposer:
    from ar_tui.agents.team import team_from_settings

    return team_from_settings(settings)


PROPOSERS: dict[str, Callable[[ProposerSettings], Proposer]] = {
    "offline": _offline,
    "claude": _claude,
    "openai": _openai,  # the single agent on an OpenAI-compatible Chat Completions server
    "hybrid": _hybrid,  # Claude for structure, the offline search for the knobs
    "team": _team,
}
# Proposers that follow program.md; the others need no instructions file.
READS_PROGRAM = frozenset({"claude", "openai", "hybrid", "team"})


def proposer_names() -> list[str]:
    return list(PROPOSERS)


def make_proposer(name: str, settings: ProposerSettings) -> Proposer:
    try:
        factory = PROPOSERS[name]
    except KeyError:
        raise UserError(f"unknown agent {name!r}; known: {', '.join(proposer_names())}") from None
    return factory(settings)
