"""Agent runtimes as proposers: Claude Code and Codex, one headless session per proposal (see `base.py`)."""

from typing import Any

from ar_tui.agents.cli.base import CliAgent, CliUnavailable
from ar_tui.agents.cli.claude_code import ClaudeCodeAgent
from ar_tui.agents.cli.codex import CodexAgent

__all__ = ["CliAgent", "CliUnavailable", "ClaudeCodeAgent", "CodexAgent", "cli_runtime"]


def cli_runtime(kind: str, **options: Any) -> CliAgent:
    """The agent CLI `kind` (claude-code, codex) with its options: the
    registry's `--agent claude-code|codex` and a team's CLI worker."""
    return (ClaudeCodeAgent if kind == "claude-code" else CodexAgent)(**options)
