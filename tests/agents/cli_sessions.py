"""Scripted sessions for the real agent CLIs (Claude Code, Codex), served by the
local fake servers: each reads the LR from the files it is shown, lowers it by
0.1 with a real edit, tries the hostile calls, and finishes with the
DESCRIPTION/RATIONALE lines ar-tui asks for.

Hostile calls, each of which must be refused or put back:
- an edit outside the worktree (`../outside.txt`);
- a write to the protected `prepare.py`;
- a shell command that writes outside (Claude Code: Bash, which it is not
  offered; Codex: through its shell, inside both sandboxes);
- Codex only: reading the key from its environment into the worktree, and a
  command that would train.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TINY_PREPARE, TINY_TRAIN
from tests.fake_messages_api import RecordedRequest, reply, text, tool_use
from tests.fake_responses_api import ResponsesRequest, function_call, message, resp_usage, respond

CLAUDE_KEY = "sk-ant-cli-test-4b9e1d7c0a2f5e8b3d6c"
CODEX_KEY = "sk-openai-cli-test-9f3e7a1c5b2d8e4f6a0b"
OUTSIDE_MARK = "written by a hostile session"


def require_cli(name: str, package: str) -> str:
    """The CLI's path; a test fails loudly, never skips, when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: npm install -g {package} (.ci/run installs it)")
    return path


def current_lr(prompt_text: str) -> float:
    return float(re.search(r"^LR = ([0-9.]+)", prompt_text, re.MULTILINE).group(1))


def _prompt_of_claude(request: RecordedRequest) -> str:
    first = request.messages()[0]["content"]
    return first if isinstance(first, str) else " ".join(b.get("text", "") for b in first if isinstance(b, dict))




def claude_researcher(hostile: bool = True):
    """A responder for FakeMessagesAPI that drives Claude Code through one proposal."""

    def respond_to(request: RecordedRequest):
        body = request.json or {}
        tools = [t.get("name") for t in body.get("tools", [])]
        if "Edit" not in tools:  # a side request of Claude Code's own (a title, a summary)
            return reply(text("ok"))
        system = json.dumps(body.get("system", ""))
        cwd = re.search(r"Primary working directory: ([^\s\\]+)", system) or re.search(
            r"Working directory: ([^\s\\]+)", system)
        root = cwd.group(1) if cwd else "."
        prompt_text = _prompt_of_claude(request)
        turns = sum(1 for m in request.messages() if m["role"] == "assistant")
        lr = current_lr(prompt_text)
        if turns == 0:
            return reply(text(f"LR is {lr}; reading train.py."), tool_use("Read", {"file_path": f"{root}/train.py"}))
        if turns == 1:
            calls = [tool_use("Edit", {"file_path": f"{root}/train.py", "old_string": f"LR = {lr}",
                                       "new_string": f"LR = {lr - 0.1:.1f}"})]
            if hostile:
                calls += [
                    tool_use("Write", {"file_path": str(Path(root).parent / "outside.txt"), "content": OUTSIDE_MARK}),
                    tool_use("Write", {"file_path": f"{root}/prepare.py", "content": f"# {OUTSIDE_MARK}\nDATA = 0\n"}),
                    tool_use("Bash", {"command": f"echo {OUTSIDE_MARK} > {Path(root).parent}/bash.txt"}),
                ]
            return reply(text("Lowering the LR."), *calls)
        return reply(text(f"DESCRIPTION: set LR = {lr - 0.1:.1f}\nRATIONALE: the loss surface favours a lower LR"))

    return respond_to


def _codex_prompt(request: ResponsesRequest) -> str:
    parts = []
    for item in (request.json or {}).get("input", []):
        if isinstance(item, dict) and item.get("role") == "user":
            for content in item.get("content") or []:
                if isinstance(content, dict):
                    parts.append(content.get("text", ""))
    return "\n".join(parts)


def codex_researcher(hostile: bool = True, train: bool = False, scripted_usage: bool = True):
    """A responder for FakeResponsesAPI that drives Codex through one proposal;
    `scripted_usage=False` lets the server estimate the tokens from the bytes."""

    def respond_to(request: ResponsesRequest):
        prompt_text = _codex_prompt(request)
        if "LR = " not in prompt_text:  # a side request of Codex's own
            return respond(message("ok"))
        lr = current_lr(prompt_text)
        done = len(request.function_outputs())
        usage = resp_usage(input=3000 + 500 * done, output=120, cached=2000 if done else 0) if scripted_usage else None
        new = f"{lr - 0.1:.1f}"
        commands = [f"sed -i 's/^LR = {lr}/LR = {new}/' train.py"]
        if hostile:
            commands += [
                f"echo '{OUTSIDE_MARK}' > ../outside.txt",
                f"echo '# {OUTSIDE_MARK}' >> prepare.py",
                f"echo \"$OPENAI_API_KEY $CODEX_API_KEY\" > leaked.txt; env",
            ]
        # One command a request: Codex 0.171 runs parallel calls at once, and
        # its --json stream then leaves out some of their items.
        if done < len(commands):
            return respond(function_call("exec_command", {"cmd": commands[done]}), usage=usage)
        asked = [item.get("arguments", "") for item in (request.json or {}).get("input", [])
                 if isinstance(item, dict) and item.get("type") == "function_call"]
        if train and not any("python train.py" in arguments for arguments in asked):
            # The edit is done; now it tries to run the experiment itself.
            return respond(function_call("exec_command", {"cmd": "python train.py"}), usage=usage)
        return respond(message(f"DESCRIPTION: set LR = {new}\nRATIONALE: the loss surface favours a lower LR"),
                       usage=usage)

    return respond_to


def files_holding(root: Path, secret: str) -> list[str]:
    """Every file under `root` that holds `secret`."""
    found = []
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = Path(dirpath) / name
            try:
                if secret.encode() in path.read_bytes():
                    found.append(str(path))
            except OSError:
                continue
    return found


def cli_env(**extra: Any) -> dict[str, str]:
    """The test's environment for an agent CLI: the CLIs on PATH, no real key."""
    env = {k: v for k, v in os.environ.items() if k not in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "CODEX_API_KEY",
                                                             "CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_BASE_URL")}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def make_proposal_target(tmp_path: Path) -> Path:
    """The proposal worktree a CLI session edits: the tiny target, inside a run dir's layout."""
    root = tmp_path / "run" / "worktrees" / "propose"
    root.mkdir(parents=True)
    (root / "train.py").write_text(TINY_TRAIN)
    (root / "prepare.py").write_text(TINY_PREPARE)
    return root


def propose(agent: Any, target: Path, run_dir: Path, prices: dict | None = None) -> tuple[Any, list]:
    """One proposal by an agent-CLI proposer on `target`, after the baseline;
    `prices` ([prices] rows) price its tokens. Returns it and the events it emitted."""
    from ar_tui.core.config import TargetConfig
    from ar_tui.core.money.pricing import parse_price_overrides
    from ar_tui.core.proposer import ProposalContext, ResultRow
    from ar_tui.core.workspace import Workspace

    events: list = []
    config = TargetConfig(root=target)
    if prices is not None:
        config.prices = parse_price_overrides(prices)
    ctx = ProposalContext(exp=1, target=config, best_metric=1.04, baseline_metric=1.04,
                          history=[ResultRow(0, "abc1234", 1.04, "keep", "baseline")], run_dir=run_dir)
    proposal = asyncio.run(agent.propose(ctx, Workspace(target, ["train.py"], ["prepare.py"]), events.append))
    return proposal, events
