"""Proposers by name: what `--agent` chooses and a stored run remembers.

Each entry builds a proposer from the settings a run was started with, says
whether it reads the instructions (program.md), and declares the options it
takes: the CLI offers them as flags and the run stores them (in
`ProposerSettings.extra`). The imports happen inside the factories, so
choosing the offline proposer never loads a model SDK. A new proposer
adds its line to `PROPOSERS` and the CLI offers it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ar_tui.core.config import RunOption, positive_int
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


def _cli(kind: str) -> Callable[[ProposerSettings], Proposer]:
    """An agent CLI (Claude Code, Codex), one headless session per proposal."""

    def build(settings: ProposerSettings) -> Proposer:
        from ar_tui.agents.cli import cli_runtime

        if settings.program is None:
            raise UserError(f"the {kind} agent needs its instructions: pass --program FILE (default: program.md)")
        return cli_runtime(kind, model=settings.model, program=settings.program, base_url=settings.base_url,
                           timeout_s=settings.extra.get("cli_timeout_s"), sandbox=settings.extra.get("sandbox", "auto"))

    return build


def _hybrid(settings: ProposerSettings) -> Proposer:
    from ar_tui.agents.hybrid import HybridProposer

    # Structure from the single agent (Claude, or the API --model names), or
    # from the team when --team names one.
    structural = _team(settings) if settings.extra.get("team") else _claude(settings)
    return HybridProposer(structural, _offline(settings))


def _team(settings: ProposerSettings) -> Proposer:
    from ar_tui.agents.team import team_from_settings

    return team_from_settings(settings)


@dataclass(frozen=True)
class ProposerEntry:
    factory: Callable[[ProposerSettings], Proposer]
    reads_program: bool = False  # follows program.md; the others need no instructions file
    options: tuple[RunOption, ...] = ()


OFFLINE_OPTIONS = (
    RunOption("offline_search", "the offline proposer's search (default: the target's [offline] search, else "
              "classic)", choices=("classic", "optuna"), toml="offline.search"),
    RunOption("sampler", "the Optuna search's sampler (default: tpe)", choices=("tpe", "cmaes"),
              toml="offline.sampler"),
)
TEAM_OPTIONS = (
    RunOption("team", "a research team (implies --agent team; with --agent hybrid, the team proposes the "
              "structure): planner=MODEL,worker=MODEL[@URL],...,reviewer=MODEL, MODEL as [API:]MODEL[@URL] with API "
              "anthropic or openai-chat, or a worker as claude-code:MODEL or codex:MODEL[@URL] (default: "
              "autoresearch.toml's [team])",
              toml="team"),
    RunOption("plan_every", "the team's planner runs every N decided experiments (8)", type=positive_int,
              toml="team.plan_every"),
    RunOption("web_search", "let the team's planner search the web (billed per search)", switch=True,
              toml="team.web_search"),
)

PROPOSERS: dict[str, ProposerEntry] = {
    "offline": ProposerEntry(_offline, options=OFFLINE_OPTIONS),
    "claude": ProposerEntry(_claude, reads_program=True),
    # The single agent on an OpenAI-compatible Chat Completions server.
    "openai": ProposerEntry(_openai, reads_program=True),
    # The single agent (or the team) for structure, the offline search for the knobs.
    "hybrid": ProposerEntry(_hybrid, reads_program=True, options=OFFLINE_OPTIONS + TEAM_OPTIONS),
    "team": ProposerEntry(_team, reads_program=True, options=TEAM_OPTIONS),
    # The Claude Code CLI, headless, one session per proposal; the Codex CLI, the same way.
    "claude-code": ProposerEntry(_cli("claude-code"), reads_program=True),
    "codex": ProposerEntry(_cli("codex"), reads_program=True),
}


def reads_program(name: str) -> bool:
    entry = PROPOSERS.get(name)
    return entry is not None and entry.reads_program


def proposer_options() -> tuple[RunOption, ...]:
    """Every option an agent declares, once each (hybrid shares offline's and the team's)."""
    seen: dict[str, RunOption] = {}
    for entry in PROPOSERS.values():
        for option in entry.options:
            seen.setdefault(option.name, option)
    return tuple(seen.values())


def proposer_names() -> list[str]:
    return list(PROPOSERS)


def make_proposer(name: str, settings: ProposerSettings) -> Proposer:
    try:
        entry = PROPOSERS[name]
    except KeyError:
        raise UserError(f"unknown agent {name!r}; known: {', '.join(proposer_names())}") from None
    return entry.factory(settings)
