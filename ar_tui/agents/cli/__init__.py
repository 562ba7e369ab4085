"""Agent runtimes as proposers: Claude Code and Codex, one headless session per proposal (see `base.py`)."""

from ar_tui.agents.cli.base import CliAgent, CliUnavailable
from ar_tui.agents.cli.claude_code import ClaudeCodeAgent
from ar_tui.agents.cli.codex import CodexAgent

__all__ = ["CliAgent", "CliUnavailable", "ClaudeCodeAgent", "CodexAgent"]
