"""`--agent codex`: the Codex CLI as the researcher.

Each proposal is one `codex exec --json` session in the proposal's worktree,
the prompt on stdin, against a model provider of ar-tui's making
(`[model_providers.artui]`: the base URL, the key's variable, the Responses
wire API), with `CODEX_HOME` in the run dir and the user's config ignored.

Codex's tools include a shell. Its commands run in Codex's own
`workspace-write` sandbox (the worktree writable, no network), inside ar-tui's
confinement of the whole CLI, with no inherited variable but the basics
(`shell_environment_policy.inherit = "core"`: the key stays in Codex). A
command that would train (an interpreter on an editable file, or the target's
run command) ends the session: ar-tui runs the experiments, the edits made so
far are judged as usual, and every command the session started dies with it.

Money: `turn.completed` reports tokens; they are priced from the price table
or the target's `[prices]` (OpenAI models are not in the built-in table: add
them there, or the run shows tokens only).
"""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path
from typing import Any

from ar_tui.agents.cli.base import CliAgent, CliUnavailable, Session
from ar_tui.core.errors import UserError
from ar_tui.core.money.pricing import TokenUsage
from ar_tui.core.proposer import ProposalContext

DEFAULT_MODEL = "gpt-5-codex"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
PROVIDER = "artui"
KEY_VARIABLE = "OPENAI_API_KEY"
WIRE_APIS = ("responses",)
INTERPRETERS = re.compile(r"^(python[0-9.]*|uv|torchrun|accelerate|deepspeed|bash|sh|zsh|timeout|nohup|env)$")
WRONG_API = re.compile(r"\b404\b.*/responses", re.IGNORECASE | re.DOTALL)
AUTH_FAILURE = re.compile(r"\b401\b|unauthori[sz]ed|invalid[_ ]api[_ ]key|incorrect api key", re.IGNORECASE)


def inner_command(command: str) -> str:
    """The command inside Codex's `/bin/bash -lc '...'` wrapper."""
    try:
        words = shlex.split(command)
    except ValueError:
        return command
    if len(words) >= 3 and os.path.basename(words[0]) in ("bash", "sh", "zsh") and words[1] in ("-c", "-lc"):
        return words[2]
    return command


def trains(command: str, editable: list[str], run: str) -> bool:
    """Whether a shell command would run the experiment: the target's run
    command, or an interpreter given an editable file (reading one with cat or
    sed is fine)."""
    inner = inner_command(command)
    if run.strip() and run.strip() in inner:
        return True
    for part in re.split(r"[;&|\n]+", inner):
        try:
            words = shlex.split(part)
        except ValueError:
            words = part.split()
        modules = {e[:-3].replace("/", ".") for e in editable if e.endswith(".py")}
        started = False
        for index, word in enumerate(words):
            if INTERPRETERS.match(os.path.basename(word)):
                started = True
                continue
            if started and (word in editable or word.lstrip("./") in editable):
                return True
            if started and word == "-m" and index + 1 < len(words) and words[index + 1] in modules:
                return True
    return False


class CodexAgent(CliAgent):
    name = "codex"
    executable = "codex"
    npm_package = "@openai/codex"
    min_version = (0, 171, 0)
    key_names = (KEY_VARIABLE, "CODEX_API_KEY")

    def __init__(self, *, wire_api: str = "responses", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.model.lower().startswith("claude"):
            self.model = self.env.get("AR_TUI_CODEX_MODEL") or DEFAULT_MODEL  # the run's default is a Claude model
        if wire_api not in WIRE_APIS:
            raise UserError(f"codex: wire API {wire_api!r} is not supported; Codex {'.'.join(map(str, self.min_version))}"
                            f"+ speaks {', '.join(WIRE_APIS)}")
        self.wire_api = wire_api
        self.api_key = self.env.get(KEY_VARIABLE) or self.env.get("CODEX_API_KEY") or ""
        if not self.api_key:
            raise UserError(f"codex has no key for ar-tui: set {KEY_VARIABLE} (or CODEX_API_KEY) to the key of its "
                            f"endpoint; a ChatGPT plan login is not passed to a confined session")
        self.base_url = self.base_url or self.env.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL

    def check_backend(self, backend: str) -> None:
        if backend == "landlock":
            # Seen with Codex 0.171: every command fails with "error building
            # bubblewrap command: Permission denied" (its own sandbox cannot start).
            raise CliUnavailable("codex needs bubblewrap: under ar-tui's Landlock sandbox Codex's own sandbox cannot "
                                 "start and none of its commands run (apt-get install bubblewrap)")

    def runtime_env(self, state: Path) -> dict[str, str]:
        return {"CODEX_HOME": str(state / "codex"), KEY_VARIABLE: self.api_key, "RUST_LOG": "error"}

    def prepare_state(self, state: Path, ctx: ProposalContext, workspace: Any) -> None:
        (state / "codex").mkdir(parents=True, exist_ok=True)

    def argv(self, state: Path, ctx: ProposalContext) -> list[str]:
        assert self.path is not None
        provider = (f'{{name="ar-tui", base_url={json.dumps(self.base_url)}, env_key="{KEY_VARIABLE}", '
                    f'wire_api="{self.wire_api}"}}')
        return [self.path, "exec", "--json", "--skip-git-repo-check", "--ephemeral", "--ignore-user-config",
                "--ignore-rules", "--sandbox", "workspace-write", "--color", "never", "-m", self.model,
                "-c", f"model_provider={PROVIDER}", "-c", f"model_providers.{PROVIDER}={provider}",
                "-c", 'approval_policy="never"', "-c", 'shell_environment_policy.inherit="core"',
                "-c", "sandbox_workspace_write.network_access=false", "-"]

    def on_event(self, event: dict[str, Any], session: Session, ctx: ProposalContext) -> None:
        kind = event.get("type")
        item = event.get("item") if isinstance(event.get("item"), dict) else {}
        if kind == "item.started" and item.get("type") == "command_execution":
            command = str(item.get("command", ""))
            if trains(command, list(ctx.target.editable), ctx.target.run):
                session.stopped = "the session tried to train and was stopped; ar-tui runs the experiments"
                session.refusal(f"exec {inner_command(command)}", session.stopped)
        elif kind == "item.completed":
            self._item(item, session)
        elif kind == "turn.completed":
            self._count(event.get("usage") or {}, session, ctx)
        elif kind in ("turn.failed", "error"):
            error = event.get("error") if isinstance(event.get("error"), dict) else event
            message = session.redact(str(error.get("message", "")))
            if AUTH_FAILURE.search(message):
                session.stop_run = f"codex: the endpoint refused the key: {message[:200]}; check {KEY_VARIABLE}"
            elif WRONG_API.search(message):
                session.stop_run = (f"codex: {self.base_url} does not speak the Responses API (it answered 404 to "
                                    f"/responses); Codex {'.'.join(map(str, self.min_version))} speaks only that")
            else:
                session.error = message[:300] or kind

    def _item(self, item: dict[str, Any], session: Session) -> None:
        kind = item.get("type")
        if kind == "agent_message":
            session.final_text = str(item.get("text", ""))
            session.text(session.final_text + "\n")
        elif kind == "command_execution":
            exit_code = item.get("exit_code")
            output = str(item.get("aggregated_output", "")).strip().splitlines()
            session.tool("exec", f"exec {inner_command(str(item.get('command', '')))}",
                         is_error=exit_code not in (0, None) or item.get("status") == "failed",
                         result=(output[-1] if output else f"exit {exit_code}"))
        elif kind == "file_change":
            for change in item.get("changes") or []:
                if isinstance(change, dict):
                    session.tool("patch", f"{change.get('kind', 'update')} {change.get('path', '')}",
                                 is_error=item.get("status") == "failed", result=str(item.get("status", "")))
        elif kind == "error":
            message = str(item.get("message", ""))
            if "metadata" not in message:  # an unknown model's metadata: Codex's own warning, not ours
                session.refusal("codex", message)

    def _count(self, figures: dict[str, Any], session: Session, ctx: ProposalContext) -> None:
        cached = int(figures.get("cached_input_tokens") or 0)
        # OpenAI counts cached input inside input_tokens; ar-tui keeps them apart.
        usage = TokenUsage(input_tokens=max(int(figures.get("input_tokens") or 0) - cached, 0),
                           output_tokens=int(figures.get("output_tokens") or 0),
                           cache_write_5m_tokens=int(figures.get("cache_write_input_tokens") or 0),
                           cache_read_tokens=cached)
        cost = self.price(self.model, usage, ctx)
        if cost is None:
            self.notice_once(session.emit, "price", f"no price known for model {self.model}: showing tokens only, "
                             "and --budget-usd cannot be enforced; add its prices under [prices] in autoresearch.toml",
                             "warning")
        session.count(self.model, usage, cost)
