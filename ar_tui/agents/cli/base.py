"""An agent CLI (Claude Code, Codex) as a proposer: one headless session per proposal.

The session runs in the proposal's worktree and is given what ar-tui's own
agent is given (program.md, the files, the results, the training evidence;
see `llm/prompt.py`). The CLI edits files; ar-tui runs the experiment. Around it:

- the CLI's own permission rules, the first fence (each runtime sets them);
- the confinement of the CLI process (`session_policy`): the sandbox backend
  of the training runs (bubblewrap, else Landlock), writable only the target
  dir and the CLI's state dir under the run dir (its HOME and config), the
  user's home, the run dir and credentials unreadable, and an environment
  that holds only what the CLI needs (its own key, never ar-tui's others);
  the network stays on, since no backend can allow one endpoint only;
- the fence after the session (`fence.py`): forbidden edits are put back,
  each with a line in the agent pane, and a session with no honest edit fails
  with the reason;
- a time limit: a hung CLI is killed (its whole process tree, by the
  sandbox's pid namespace or its process group) and the night goes on.

A runtime subclass says how to start its CLI (`argv`, `runtime_env`) and how
to read its JSON stream (`on_event`), and reports text, tool calls,
refusals and usage through the `Session` it is handed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import tempfile
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from ar_tui.agents.cli.fence import Fence
from ar_tui.agents.llm import prompt
from ar_tui.agents.llm.client import one_line
from ar_tui.core import events as ev
from ar_tui.core.money.pricing import TokenUsage, exact_cost, parse_price_overrides
from ar_tui.core.proposer import (
    BudgetReached, Emit, Proposal, ProposalContext, ProposalFailed, ProposerStopped,
)
from ar_tui.core.workspace import Workspace

DEFAULT_TIMEOUT_S = 1200.0  # one proposal's session; a CLI that hangs longer is killed
STREAM_LIMIT = 16 * 1024 * 1024  # one JSON line of the stream (a tool result can be long)
STDERR_TAIL = 4000
DESCRIPTION_RE = re.compile(r"^\s*\**DESCRIPTION\**\s*:\s*(.+)$", re.IGNORECASE | re.MULTILINE)
RATIONALE_RE = re.compile(r"^\s*\**RATIONALE\**\s*:\s*(.+)$", re.IGNORECASE | re.MULTILINE)


class CliUnavailable(ProposerStopped):
    """The CLI cannot run at all (not installed, too old, not logged in): the
    run stops with one line and keeps its state, to be resumed once fixed."""


def version_tuple(text: str) -> tuple[int, ...] | None:
    match = re.search(r"(\d+)\.(\d+)\.(\d+)", text)
    return tuple(int(part) for part in match.groups()) if match else None


@dataclass
class Session:
    """What one session reported, filled in by the runtime's `on_event`."""

    exp: int
    role: str
    emit: Emit
    final_text: str = ""
    usage: TokenUsage = field(default_factory=TokenUsage)
    cost: Decimal = Decimal(0)
    error: str | None = None  # why the session failed, one line
    stop_run: str | None = None  # why the whole run must stop (a refused key), one line
    stopped: str | None = None  # why ar-tui ended the session early (it tried to train)
    tool_calls: int = 0
    secrets: tuple[str, ...] = ()
    first_event_s: float | None = None  # seconds from the start to the stream's first event: the CLI's start-up

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            if secret:
                text = text.replace(secret, "[redacted]")
        return text

    def text(self, text: str) -> None:
        if text:
            self.emit(ev.AgentText(exp=self.exp, text=self.redact(text), role=self.role))

    def tool(self, name: str, summary: str, *, is_error: bool = False, result: str = "") -> None:
        self.tool_calls += 1
        self.emit(ev.AgentToolCall(exp=self.exp, name=name, summary=one_line(self.redact(summary)),
                                   is_error=is_error, result=one_line(self.redact(result)), role=self.role))

    def refusal(self, summary: str, result: str) -> None:
        """A line in the agent pane for something ar-tui or the CLI refused."""
        self.emit(ev.AgentToolCall(exp=self.exp, name="refused", summary=one_line(self.redact(summary)),
                                   is_error=True, result=one_line(self.redact(result)), role=self.role))

    def count(self, model: str, usage: TokenUsage, cost: Decimal | None) -> None:
        """One model's final usage of this session: into the meter and the ledger."""
        self.usage.add(usage)
        if cost is not None:
            self.cost += cost
        # A TokenUsage count may be unknown (None); an event's counts are ints.
        self.emit(ev.Usage(exp=self.exp, model=model, input_tokens=usage.known("input_tokens"),
                           output_tokens=usage.known("output_tokens"),
                           cache_write_5m_tokens=usage.known("cache_write_5m_tokens"),
                           cache_write_1h_tokens=usage.known("cache_write_1h_tokens"),
                           cache_read_tokens=usage.known("cache_read_tokens"),
                           cost_usd=None if cost is None else float(cost), role=self.role))


def cli_prompt(ctx: ProposalContext, workspace: Workspace, program: str, runtime: str, extra: str = "") -> str:
    """The session's one message: program.md and the run's facts, the files,
    the situation (and `extra`: a team worker's notes and hypothesis), and how
    this runtime hands its change back."""
    target = ctx.target
    facts = "\n".join([
        "## This run",
        f"- You work in the target's directory. Editable files (the only files you may change): "
        f"{', '.join(target.editable)}",
        f"- Protected files (never edit): {', '.join(target.protected) or 'none'}",
        f"- Metric: {target.metric}, {'lower' if target.direction == 'min' else 'higher'} is better",
        f"- ar-tui runs each experiment itself (`{target.run}`, a fixed {target.time_budget:g} second budget) "
        "once you have finished: never run training, the editable files or any long command yourself.",
        "- Edit the files with your file tools; make one focused change.",
        "- Then finish with a short final message whose first two lines are:",
        "  DESCRIPTION: <one line saying what you changed>",
        "  RATIONALE: <one line saying why>",
    ])
    situation = prompt.situation_text(ctx).replace("then call run_experiment with its description",
                                                     "then finish with its DESCRIPTION line")
    situation = situation.replace("then call run_experiment", "then finish with the DESCRIPTION and RATIONALE lines")
    return "\n\n".join([program.rstrip(), facts, prompt.files_text(workspace), *([extra] if extra else []), situation,
                        f"(You are running as {runtime} under ar-tui.)"])


def parse_description(text: str) -> tuple[str, str]:
    description = DESCRIPTION_RE.search(text)
    rationale = RATIONALE_RE.search(text)
    if description is not None:
        return description.group(1).strip(), rationale.group(1).strip() if rationale else ""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return (lines[0][:200] if lines else ""), " ".join(lines[1:3])[:400]


def executable_read_paths(executable: str) -> list[str]:
    """What running the CLI reads besides the system: its package (npm puts a
    link in bin/ to the package's own dir) and the node it runs on."""
    real = Path(os.path.realpath(executable))
    paths = {str(real.parent), str(real.parent.parent)}
    for parent in real.parents:
        if parent.name == "node_modules":
            paths.add(str(parent))
            break
    node = shutil.which("node")
    if node:
        paths.add(str(Path(os.path.realpath(node)).parent.parent))
    return sorted(paths)


class CliAgent:
    """The shared half of the runtimes; see the module docstring."""

    name = "cli"
    executable = ""  # the command's name on PATH
    npm_package = ""
    min_version: tuple[int, ...] = (0, 0, 0)
    key_names: tuple[str, ...] = ()  # the environment variables whose values are secrets
    backends: list | None = None  # the sandbox backends to try; None: the platform's (bubblewrap, then Landlock)

    def __init__(self, *, model: str, program: str, base_url: str | None = None, timeout_s: float | None = None,
                 sandbox: str = "auto", env: dict[str, str] | None = None, state_root: Path | None = None,
                 role: str = "agent") -> None:
        self.model = model
        self.program = program
        self.base_url = base_url
        self.timeout_s = float(timeout_s or os.environ.get("AR_TUI_CLI_TIMEOUT_S") or DEFAULT_TIMEOUT_S)
        self.sandbox_mode = sandbox
        self.env = dict(os.environ if env is None else env)
        self.state_root = state_root
        self.role = role
        self.path = shutil.which(self.executable, path=self.env.get("PATH"))
        if self.path is None:
            from ar_tui.core.errors import UserError

            raise UserError(f"{self.executable} is not installed: npm install -g {self.npm_package} "
                            f"(the {self.npm_package} package)")
        self._checked_version = False
        self._noticed: set[str] = set()
        self.last_session: Session | None = None

    # --- what a runtime provides

    def argv(self, state: Path, ctx: ProposalContext) -> list[str]:
        raise NotImplementedError

    def runtime_env(self, state: Path) -> dict[str, str]:
        """The CLI's own variables: its key, its endpoint, its config dir."""
        raise NotImplementedError

    def on_event(self, event: dict[str, Any], session: Session, ctx: ProposalContext) -> None:
        raise NotImplementedError

    def prepare_state(self, state: Path, ctx: ProposalContext, workspace: Workspace) -> None:
        """Write the CLI's settings into its state dir before a session."""

    def check_backend(self, backend: str) -> None:
        """Raise CliUnavailable when the CLI cannot work under this sandbox backend."""

    def plan_line(self) -> str | None:
        """On a subscription plan: the line that says so; None when paying by the token."""
        return None

    # --- shared machinery

    def notice_once(self, emit: Emit, key: str, message: str, level: str = "info") -> None:
        if key not in self._noticed:
            self._noticed.add(key)
            emit(ev.Notice(level=level, message=message))

    def price(self, model: str, usage: TokenUsage, ctx: ProposalContext) -> Decimal | None:
        try:
            overrides = parse_price_overrides(dict(getattr(ctx.target, "prices", {}) or {}))
        except Exception:  # the target's table was checked when it was loaded
            overrides = {}
        return exact_cost(model, usage, overrides)

    def secrets(self) -> tuple[str, ...]:
        return tuple(self.env[name] for name in self.key_names if self.env.get(name))

    async def check_version(self) -> None:
        if self._checked_version:
            return
        assert self.path is not None
        # A HOME of its own: the check must not write into the user's config.
        with tempfile.TemporaryDirectory(prefix="ar-tui-version-") as home:
            try:
                proc = await asyncio.create_subprocess_exec(
                    self.path, "--version", stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.STDOUT, env={"PATH": self.env.get("PATH", "/usr/bin:/bin"), "HOME": home,
                                                            "CLAUDE_CONFIG_DIR": home, "CODEX_HOME": home})
                out, _ = await asyncio.wait_for(proc.communicate(), 60)
            except (OSError, asyncio.TimeoutError) as exc:
                raise CliUnavailable(f"{self.executable} --version did not answer: {exc!r}") from None
        found = version_tuple(out.decode(errors="replace"))
        if found is None or found < self.min_version:
            want = ".".join(map(str, self.min_version))
            have = ".".join(map(str, found)) if found else f"unknown ({one_line(out.decode(errors='replace'))})"
            raise CliUnavailable(f"{self.executable} {have} is too old: ar-tui needs {want} or newer "
                                 f"(npm install -g {self.npm_package}@latest)")
        self._checked_version = True

    def state_dir(self, ctx: ProposalContext) -> Path:
        """The CLI's own dir (HOME, config, sessions), under the run dir."""
        root = self.state_root or (ctx.run_dir / "agents" if ctx.run_dir is not None else None)
        if root is None:
            root = Path(tempfile.mkdtemp(prefix=f"ar-tui-{self.name}-"))
        state = (Path(root) / self.name).resolve()
        for sub in ("home", "tmp"):
            (state / sub).mkdir(parents=True, exist_ok=True)
        return state

    def session_env(self, state: Path) -> dict[str, str]:
        """A clean environment: no inherited variable but the basics, so no
        other secret of the user's reaches the CLI or what it starts."""
        path = os.pathsep.join(dict.fromkeys(
            [str(Path(self.path or "").parent), str(Path(os.path.realpath(self.path or "")).parent),
             *(p for p in ("/usr/local/bin", "/usr/bin", "/bin") if os.path.isdir(p))]))
        node = shutil.which("node", path=self.env.get("PATH"))
        if node:
            path = os.pathsep.join([path, str(Path(node).parent)])
        env = {"PATH": path, "HOME": str(state / "home"), "TMPDIR": str(state / "tmp"),
               "LANG": self.env.get("LANG", "C.UTF-8"), "TERM": "dumb", "NO_COLOR": "1"}
        env.update(self.runtime_env(state))
        return env

    def session_policy(self, state: Path, workspace: Workspace, ctx: ProposalContext):
        from ar_tui.core.sandbox.policy import SandboxSettings, hidden_paths, make_policy

        assert self.path is not None
        hidden = hidden_paths(ctx.run_dir or state, None)
        return make_policy(write=[workspace.root, state], read=executable_read_paths(self.path), hidden=hidden,
                           settings=SandboxSettings(network=True))

    def wrap(self, argv: list[str], state: Path, workspace: Workspace, ctx: ProposalContext, emit: Emit) -> list[str]:
        from ar_tui.core.sandbox.backends import resolve_sandbox

        sandbox = resolve_sandbox(self.sandbox_mode, network=True, backends=self.backends)
        if sandbox.backend is None:
            self.notice_once(emit, "unconfined", f"{self.name} runs unconfined: {sandbox.describe()}", "warning")
            return argv
        self.check_backend(sandbox.backend.name)
        return sandbox.backend.argv(self.session_policy(state, workspace, ctx), argv, workspace.root)

    async def propose(self, ctx: ProposalContext, workspace: Workspace, emit: Emit, extra: str = "") -> Proposal:
        await self.check_version()
        if ctx.gate is not None:
            await ctx.gate()
        if ctx.budget_usd is not None and ctx.spent_usd >= ctx.budget_usd:
            raise BudgetReached(f"budget reached: ${ctx.spent_usd:.4f} spent of --budget-usd {ctx.budget_usd:g}; "
                                f"no {self.name} session started")
        plan = self.plan_line()
        if plan is not None:
            self.notice_once(emit, "plan", plan)
        state = self.state_dir(ctx)
        self.prepare_state(state, ctx, workspace)
        session = Session(exp=ctx.exp, role=self.role, emit=emit, secrets=self.secrets())
        self.last_session = session  # for a benchmark's start-up figure
        fence = Fence(workspace.root, workspace.editable, workspace.protected)
        await asyncio.to_thread(fence.take)
        text = cli_prompt(ctx, workspace, self.program, self.name, extra)
        try:
            returncode, stderr_tail = await self._run(self.wrap(self.argv(state, ctx), state, workspace, ctx, emit),
                                                      text, state, workspace, session, ctx)
        finally:
            settled = await asyncio.to_thread(fence.settle)
            for rel, why in self._unfit(workspace, settled.honest):
                if fence.put_back(rel):
                    settled.honest.remove(rel)
                    settled.reverted.append((rel, why))
            for rel, why in settled.reverted:
                session.refusal(f"{self.name} changed {rel}", f"reverted by ar-tui: {why}")
            workspace.edits += len(settled.honest)
        if session.stop_run is not None:
            raise ProposerStopped(session.stop_run)
        cost = float(session.cost)
        if settled.unrestorable:
            raise ProposalFailed(f"{self.name} changed files too large to put back: "
                                 f"{', '.join(settled.unrestorable)}", cost)
        if returncode is None:
            raise ProposalFailed(f"{self.name} did not finish within {self.timeout_s:g}s; its session was killed", cost)
        if session.error is not None and not settled.honest:
            raise ProposalFailed(f"{self.name}: {session.error}", cost)
        if returncode != 0 and not settled.honest:
            tail = one_line(session.redact(stderr_tail)) or "no output"
            raise ProposalFailed(f"{self.name} exited with status {returncode}: {tail}", cost)
        if not settled.honest:
            if settled.reverted:
                names = ", ".join(rel for rel, _ in settled.reverted)
                raise ProposalFailed(f"{self.name} edited only files it may not touch ({names}); all put back", cost)
            raise ProposalFailed(f"{self.name} edited nothing", cost)
        description, rationale = parse_description(session.final_text)
        if session.stopped is not None:
            rationale = f"{rationale} ({session.stopped})".strip()
        return Proposal(description=session.redact(description) or f"{self.name}: edited {', '.join(settled.honest)}",
                        rationale=session.redact(rationale), cost_usd=cost, usage=session.usage)

    def _unfit(self, workspace: Workspace, files: list[str]) -> list[tuple[str, str]]:
        """Edited files that may not stand, and why: one over the workspace's
        size cap (as for any edit), or one that holds the session's key (the
        CLI holds it; written down, it would reach git and the ledger)."""
        secrets = [s for s in self.secrets() if len(s) >= 8]
        found = []
        for rel in files:
            try:
                data = (workspace.root / rel).read_bytes()
            except OSError:
                continue
            if len(data) > workspace.max_file_bytes:
                found.append((rel, f"{len(data)} bytes, over the cap of {workspace.max_file_bytes}"))
            elif any(secret.encode() in data for secret in secrets):
                found.append((rel, "it held the session's key"))
        return found

    async def _run(self, argv: list[str], text: str, state: Path, workspace: Workspace, session: Session,
                   ctx: ProposalContext) -> tuple[int | None, str]:
        """Run one session; (its exit status, or None when it timed out, and its stderr's tail)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            cwd=str(workspace.root), env=self.session_env(state), start_new_session=True, limit=STREAM_LIMIT)
        stderr: list[bytes] = []

        async def feed() -> None:
            assert proc.stdin is not None
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                proc.stdin.write(text.encode())
                await proc.stdin.drain()
                proc.stdin.close()

        async def read_stderr() -> None:
            assert proc.stderr is not None
            while chunk := await proc.stderr.read(65536):
                stderr.append(chunk)
                del stderr[:-8]

        async def read_stdout() -> None:
            assert proc.stdout is not None
            while line := await proc.stdout.readline():
                if session.first_event_s is None:
                    session.first_event_s = loop.time() - started
                try:
                    event = json.loads(line)
                except ValueError:
                    continue  # a line that is not the stream's (a warning on stdout)
                if isinstance(event, dict):
                    self.on_event(event, session, ctx)
                    if session.stopped is not None or session.stop_run is not None:
                        kill_tree(proc.pid)
            await proc.wait()

        try:
            await asyncio.wait_for(asyncio.gather(feed(), read_stderr(), read_stdout()), self.timeout_s)
        except asyncio.TimeoutError:
            kill_tree(proc.pid)
            await proc.wait()
            return None, b"".join(stderr).decode(errors="replace")[-STDERR_TAIL:]
        except BaseException:
            kill_tree(proc.pid)  # a stop, or the engine cancelling: the session dies with the proposal
            with contextlib.suppress(Exception):
                await asyncio.shield(proc.wait())
            raise
        return proc.returncode, b"".join(stderr).decode(errors="replace")[-STDERR_TAIL:]


def kill_tree(pid: int) -> None:
    """The session's whole process group (under bubblewrap, killing its
    leader ends its pid namespace and everything in it)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)

