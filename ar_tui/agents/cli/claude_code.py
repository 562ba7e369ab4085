"""`--agent claude-code`: the Claude Code CLI as the researcher.

Each proposal is one `claude -p --output-format stream-json --verbose`
session in the proposal's worktree, the prompt on stdin. Its first fence is
its own: `--tools` offers only the file tools (Read, Edit, Write, Glob, Grep),
`--disallowedTools` and the settings' `permissions.deny` refuse Bash, the web
and writes to the protected files, `acceptEdits` lets it edit inside the
worktree without asking, and `--setting-sources user` with a user config dir
of ar-tui's making (`CLAUDE_CONFIG_DIR`) keeps a settings file or hook in the
worktree from loosening any of it. The real fence is ar-tui's (`base.py`).

Money: with `ANTHROPIC_API_KEY` the session's `modelUsage` (tokens and
`costUSD` per model, summing to `total_cost_usd`) goes to the meter and the
ledger. With `CLAUDE_CODE_OAUTH_TOKEN` (a subscription plan, from `claude
setup-token`) the tokens are counted and the dollars are the plan's: no cost
is charged to the run, and the notice says so.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from ar_tui.agents.cli.base import CliAgent, Session
from ar_tui.agents.llm.client import one_line
from ar_tui.core import events as ev
from ar_tui.core.errors import UserError
from ar_tui.core.money.pricing import TokenUsage
from ar_tui.core.proposer import ProposalContext
from ar_tui.core.workspace import Workspace

FILE_TOOLS = ("Read", "Edit", "Write", "Glob", "Grep")
DENIED_TOOLS = ("Bash", "WebFetch", "WebSearch", "NotebookEdit", "Task", "Agent")
# Requests Claude Code makes besides the session's own (update checks, telemetry, error reports).
QUIET_ENV = {"DISABLE_AUTOUPDATER": "1", "DISABLE_TELEMETRY": "1", "DISABLE_ERROR_REPORTING": "1",
             "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_NON_ESSENTIAL_MODEL_CALLS": "1",
             "CLAUDE_CODE_DISABLE_TERMINAL_TITLE": "1"}


def tool_summary(name: str, params: Any) -> str:
    params = params if isinstance(params, dict) else {}
    for key in ("file_path", "path", "command", "pattern", "url", "query"):
        if isinstance(params.get(key), str):
            return f"{name} {params[key]}"
    return name


def result_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


class ClaudeCodeAgent(CliAgent):
    name = "claude-code"
    executable = "claude"
    npm_package = "@anthropic-ai/claude-code"
    min_version = (2, 1, 0)
    key_names = ("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.api_key = self.env.get("ANTHROPIC_API_KEY") or ""
        self.oauth_token = self.env.get("CLAUDE_CODE_OAUTH_TOKEN") or ""
        if not self.api_key and not self.oauth_token:
            raise UserError("claude-code is not logged in for ar-tui: set ANTHROPIC_API_KEY (billed per token), or "
                            "CLAUDE_CODE_OAUTH_TOKEN from `claude setup-token` (a subscription plan)")
        self.base_url = self.base_url or self.env.get("ANTHROPIC_BASE_URL") or None
        self._pending: dict[str, tuple[str, str]] = {}

    @property
    def on_plan(self) -> bool:
        return not self.api_key

    def plan_line(self) -> str | None:
        if not self.on_plan:
            return None
        return ("claude-code on a subscription plan (CLAUDE_CODE_OAUTH_TOKEN): tokens are counted, the cost is "
                "the plan's and is not charged to the run's dollars")

    def runtime_env(self, state: Path) -> dict[str, str]:
        env = {**QUIET_ENV, "CLAUDE_CONFIG_DIR": str(state / "config")}
        if self.api_key:
            env["ANTHROPIC_API_KEY"] = self.api_key
        else:
            env["CLAUDE_CODE_OAUTH_TOKEN"] = self.oauth_token
        if self.base_url:
            env["ANTHROPIC_BASE_URL"] = self.base_url
        return env

    def prepare_state(self, state: Path, ctx: ProposalContext, workspace: Workspace) -> None:
        config = state / "config"
        config.mkdir(parents=True, exist_ok=True)
        root = workspace.root.as_posix()
        # /proc/self/environ holds the CLI's own key.
        deny = [*DENIED_TOOLS, "Read(//proc/**)"]
        for rel in workspace.protected:
            deny += [f"Edit(/{root}/{rel})", f"Write(/{root}/{rel})"]
        settings = {
            "permissions": {"allow": list(FILE_TOOLS), "deny": deny, "defaultMode": "acceptEdits"},
            "disableAllHooks": True,
            "enableAllProjectMcpServers": False,
            "includeCoAuthoredBy": False,
        }
        (state / "settings.json").write_text(json.dumps(settings, indent=1), encoding="utf-8")

    def argv(self, state: Path, ctx: ProposalContext) -> list[str]:
        assert self.path is not None
        argv = [self.path, "-p", "--output-format", "stream-json", "--verbose", "--model", self.model,
                "--permission-mode", "acceptEdits", "--tools", ",".join(FILE_TOOLS),
                "--disallowedTools", ",".join(DENIED_TOOLS), "--settings", str(state / "settings.json"),
                "--setting-sources", "user", "--strict-mcp-config", "--no-session-persistence"]
        if ctx.budget_usd is not None and not self.on_plan:
            argv += ["--max-budget-usd", f"{max(ctx.budget_usd - ctx.spent_usd, 0.0):.4f}"]
        return argv

    def on_event(self, event: dict[str, Any], session: Session, ctx: ProposalContext) -> None:
        kind = event.get("type")
        if kind == "assistant":
            for block in (event.get("message") or {}).get("content") or []:
                if not isinstance(block, dict):
                    continue
                if block.get("type") == "text":
                    session.text(block.get("text", ""))
                elif block.get("type") == "tool_use":
                    self._pending[str(block.get("id"))] = (str(block.get("name")),
                                                            tool_summary(str(block.get("name")), block.get("input")))
        elif kind == "user":
            for block in (event.get("message") or {}).get("content") or []:
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    name, summary = self._pending.pop(str(block.get("tool_use_id")), ("tool", "tool"))
                    session.tool(name, summary, is_error=bool(block.get("is_error")),
                                 result=result_text(block.get("content")))
        elif kind == "result":
            self._result(event, session)
        elif kind == "system" and event.get("subtype") == "api_retry":
            self._retry(event, session)

    def _retry(self, event: dict[str, Any], session: Session) -> None:
        status = event.get("error_status")
        if status in (401, 403):
            # Claude Code would retry a refused key ten times, for minutes.
            session.stop_run = (f"claude-code: the API refused the credentials ({status} {event.get('error', '')}); "
                                "check ANTHROPIC_API_KEY, or CLAUDE_CODE_OAUTH_TOKEN on a plan")
            return
        delay = float(event.get("retry_delay_ms") or 0) / 1000
        session.emit(ev.ApiWaiting(exp=session.exp, reason=f"claude-code: the API answered {status} "
                                   f"({event.get('error', '')}); Claude Code retries", retry_in_s=delay,
                                   attempt=int(event.get("attempt") or 0), waited_s=0.0, role=session.role))

    def _result(self, event: dict[str, Any], session: Session) -> None:
        session.final_text = str(event.get("result") or "")
        for denial in event.get("permission_denials") or []:
            if isinstance(denial, dict):
                name = str(denial.get("tool_name"))
                session.refusal(tool_summary(name, denial.get("tool_input")), "refused by claude-code's permissions")
        self._count(event, session)
        status = event.get("api_error_status")
        if status in (401, 403):
            session.stop_run = (f"claude-code: the API refused the credentials ({status}): "
                                f"{session.redact(session.final_text)[:200]}; check ANTHROPIC_API_KEY or log in again")
        elif status == 404:
            # No such model, or not a Messages API server: every session would end the same way.
            session.stop_run = (f"claude-code: {self.base_url or 'the API'} answered 404: "
                                f"{one_line(session.final_text)[:200]}")
        elif event.get("is_error") or event.get("subtype") != "success":
            kind = event.get("subtype")
            session.error = (session.final_text[:300] if kind == "success" else f"{kind}: {session.final_text[:300]}")

    def _count(self, event: dict[str, Any], session: Session) -> None:
        by_model = event.get("modelUsage") or {}
        total = event.get("usage") or {}
        split = total.get("cache_creation") or {}
        one_hour = int(split.get("ephemeral_1h_input_tokens") or 0)
        for model, figures in by_model.items():
            if not isinstance(figures, dict):
                continue
            written = int(figures.get("cacheCreationInputTokens") or 0)
            hour = min(written, one_hour)
            one_hour -= hour
            usage = TokenUsage(input_tokens=int(figures.get("inputTokens") or 0),
                               output_tokens=int(figures.get("outputTokens") or 0),
                               cache_write_5m_tokens=written - hour, cache_write_1h_tokens=hour,
                               cache_read_tokens=int(figures.get("cacheReadInputTokens") or 0))
            cost = None if self.on_plan else Decimal(str(figures.get("costUSD") or 0))
            session.count(model, usage, cost)
