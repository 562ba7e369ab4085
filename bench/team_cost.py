"""What an experiment costs with one agent and with the research team: scripted sessions.

The real single agent (`SingleAgent`) and the real `TeamProposer` talk to the local
Messages-API servers of the tests (`tests/fake_messages_api.py`), which answer
with scripted turns and compute usage the way the API bills it, prompt caching
included (prefix hashes at each `cache_control` breakpoint, 5-minute and
1-hour TTLs on a clock this script moves forward by a training run between
proposals, a per-model minimum cacheable prefix). Tokens are estimated from
bytes at a fixed ratio (printed): the dollars measure the request shapes the
code builds, not a real model's verbosity, which the scripts fix at a
realistic size (a paragraph of reasoning per turn, full notes per plan).

Two sessions of 20 proposals on a copy of nanochat/train.py:

- `plain`: every proposal is new (bench/agent_cost.py's session);
- `duplicates`: four of the 20 proposals repeat tried ideas, three exactly
  (the harness's own check catches those) and one in other words (the
  reviewer model must): the single agent trains them, the team's reviewer
  does not.

Each experiment's history row carries how it trained (final figures and a
loss curve, as `ar_tui.core.evidence` reads them), so the evidence's tokens
are in the bill; their share of the prompt is printed.

    .venv/bin/python bench/team_cost.py
    .venv/bin/python bench/team_cost.py --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import json
import re
import shutil
import sys
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from agent_cost import CRASH_TAIL, SESSION, researcher_turn  # noqa: E402  (the single agent's scripted session)

from ar_tui.agents.single import SingleAgent  # noqa: E402
from ar_tui.agents.team import TeamProposer, parse_team  # noqa: E402
from ar_tui.core import events as ev  # noqa: E402
from ar_tui.core.config import TargetConfig  # noqa: E402
from ar_tui.core.control.role_costs import role_costs  # noqa: E402
from ar_tui.core.evidence import RunEvidence  # noqa: E402
from ar_tui.core.proposer import ProposalContext, ProposalRejected, ResultRow  # noqa: E402
from ar_tui.core.workspace import Workspace  # noqa: E402
from tests.fake_messages_api import (  # noqa: E402
    DEFAULT_BYTES_PER_TOKEN,
    FakeMessagesAPI,
    RecordedRequest,
    edit,
    reply,
    text,
    tool_use,
)

SONNET, HAIKU = "claude-sonnet-5-5", "claude-haiku-4-5"
GOAL_PER_EXPERIMENT = 0.01
KEY = "sk-ant-bench-not-a-key"

# After session position k, a repeat of (the index it repeats, in other words?);
# the session is cut back to 20 proposals, which keeps the first four.
DUPLICATES = {4: (1, False), 7: (3, False), 10: (4, True), 13: (9, False), 16: (7, True)}

PLANNER_REASONING = (
    "Reading the whole history: the optimiser knobs moved the metric more than the architecture, the last "
    "crash came from a logit cap that was too tight, and the evidence shows the wider MLP cost about a fifth "
    "of the steps in the same budget, which is why it lost. I am ranking single-knob changes to the schedule "
    "and the learning rates first, each far enough from what was tried to be informative."
)
WHAT_WORKS = ("Optimiser and schedule changes beat architecture changes here; anything that slows a step "
              "loses steps in the fixed budget, so check tokens_per_sec in the evidence before widening.")
HOW_TO_WORK = ("Change one constant at a time; keep the comment on the line; the constants block is at the "
               "top of train.py, so a view is rarely needed.")


@dataclass
class Step:
    name: str
    new: str
    outcome: str  # keep / discard / crash / duplicate
    view_first: bool = False
    repeats: int | None = None  # the session index it repeats


def session(kind: str) -> list[Step]:
    steps = [Step(n, v, o, view) for n, v, o, view in SESSION]
    if kind == "plain":
        return steps
    out: list[Step] = []
    for i, step in enumerate(steps):
        out.append(step)
        if i in DUPLICATES and len(out) < len(steps):
            source, rephrase = DUPLICATES[i]
            original = steps[source]
            new = original.new + "0" if rephrase and "." in original.new else original.new
            out.append(Step(original.name, new, "duplicate", False, source))
    return out[: len(steps)]


def synthetic_evidence(index: int, step: Step | None) -> RunEvidence:
    """Figures as nanochat prints them; a wider MLP is slower per step."""
    slow = 0.8 if step is not None and step.name == "MLP_RATIO" and step.new == "5" else 1.0
    steps = int((940 + 7 * (index % 5)) * slow)
    return RunEvidence(
        figures={"val_bpb": 1.0 - 0.001 * index, "training_seconds": 300.0, "total_seconds": 331.2,
                 "peak_memory_mb": 2048.0 + (512.0 if slow < 1 else 0.0), "num_steps": float(steps),
                 "num_params_M": 1.2, "tokens_per_sec": round(steps * 128 * 256 / 300.0)},
        loss=[(s, round(4.2 - 1.1 * (s / steps) ** 0.5, 4)) for s in
              (10, steps // 5, 2 * steps // 5, 3 * steps // 5, 4 * steps // 5, steps)],
    )


class Script:
    """The scripted model turns of every role, driven by the step being proposed."""

    def __init__(self) -> None:
        self.step: Step | None = None
        self.upcoming: list[Step] = []
        self.tried: list[str] = []

    def current(self, files: str, situation: str) -> tuple[str, str, str]:
        """The knob's value now: the last kept change to it, else the files as shown."""
        assert self.step is not None
        kept = re.findall(rf"^\+{self.step.name} = (.+?)  #", situation, re.MULTILINE)
        old = kept[-1] if kept else re.search(rf"^{self.step.name} = (.+?)  #", files, re.MULTILINE).group(1)
        return self.step.name, old, self.step.new

    def worker(self, request: RecordedRequest):
        messages = request.messages()
        files = messages[0]["content"][0]["text"]
        situation = "\n".join(b["text"] for b in messages[0]["content"][1:] if b.get("type") == "text")
        name, old, new = self.current(files, situation)
        return researcher_turn(messages, situation, name, old, new, self.step.view_first)

    def planner(self, request: RecordedRequest):
        if request.tool_results():
            return reply(text("Agenda updated: eight ranked hypotheses, the do-not-repeat list brought up to date."))
        hypotheses = "\n".join(
            f"{i}. set {s.name} to {s.new} - the evidence suggests {s.name.lower().replace('_', ' ')} is off its optimum"
            for i, s in enumerate(self.upcoming[:8], 1))
        tried = "\n".join(f"- {t}" for t in self.tried) or "- nothing yet"
        notes = (f"# Research notes\n\n## Hypotheses (ranked, best first)\n{hypotheses}\n\n## Facts learned\n"
                 f"- Run-to-run noise is about 0.0015 bpb; smaller gains need a re-run.\n"
                 f"- Steps per run are near 950 on the baseline; slower changes lose steps.\n\n"
                 f"## Do not repeat\n{tried}\n\n## What works here\n{WHAT_WORKS}\n\n## How to work here\n{HOW_TO_WORK}\n")
        return reply(text(PLANNER_REASONING), edit("create", path="notes.md", file_text=notes))

    def reviewer(self, request: RecordedRequest):
        body = request.text()
        proposed = re.search(r"^Description: (\w+) \S+ -> (\S+)$", body, re.MULTILINE)
        tried = body.split("## Tried so far", 1)[-1]
        if proposed:
            name, value = proposed.group(1), float(proposed.group(2).replace("_", ""))
            for line in tried.splitlines():
                match = re.match(rf"^- {name} \S+ -> (\S+) -> (\w+)", line)
                if match and float(match.group(1).replace("_", "").rstrip("…")) == value:
                    return reply(tool_use("review", {"verdict": "reject",
                                                     "reason": f"{name} = {value:g} was tried and ended {match.group(2)}"}))
        return reply(tool_use("review", {"verdict": "approve", "reason": "a new single-knob change"}))

    def answer(self, request: RecordedRequest):
        names = [t["name"] for t in (request.json or {}).get("tools", [])]
        if "review" in names:
            return self.reviewer(request)
        if "run_experiment" in names:
            return self.worker(request)
        return self.planner(request)


@dataclass
class Result:
    session: str
    proposer: str
    proposals: int
    trained: int
    rejected: int
    total_usd: float
    per_trained_usd: float
    training_s: float
    training_s_on_duplicates: float
    cost_by_role: dict[str, float]
    tokens_by_role: dict[str, dict[str, int]]
    evidence_share: float  # evidence bytes / prompt bytes of the agent's or workers' requests
    notes_share: float  # the notes' bytes / prompt bytes of the workers' requests (0 for one agent)
    requests: int
    notes: list[str] = field(default_factory=list)


async def replay(kind: str, who: str, gap_s: float, haiku_min_cache: int, time_budget: float) -> Result:
    work = Path(tempfile.mkdtemp(prefix="ar-tui-team-bench-"))
    try:
        shutil.copy(ROOT / "nanochat" / "train.py", work / "train.py")
        (work / "prepare.py").write_text("# fixed data and evaluation (protected)\n")
        run_dir = work / "run"
        program = (ROOT / "program.md").read_text()
        target = TargetConfig(root=work, time_budget=time_budget)
        workspace = Workspace(work, ["train.py"], ["prepare.py"])
        steps = session(kind)
        script = Script()
        with FakeMessagesAPI(min_cache_tokens=1024) as big, FakeMessagesAPI(min_cache_tokens=haiku_min_cache) as small:
            big.responder = small.responder = script.answer
            if who == "agent":
                proposer = SingleAgent(model=SONNET, program=program, api_key=KEY, base_url=big.base_url)
            else:
                spec = parse_team(f"planner={SONNET}@{big.base_url},worker={HAIKU}@{small.base_url},"
                                  f"reviewer={HAIKU}@{small.base_url}")
                proposer = TeamProposer(spec, program=program, run_dir=run_dir, api_key=KEY)
            baseline = best = 1.0
            history = [ResultRow(0, "0000000", baseline, "keep", "baseline", evidence=synthetic_evidence(0, None))]
            events: list[ev.Event] = []
            last_tail = ""
            exp = 1
            trained = rejected = 0
            on_duplicates = 0.0
            for index, step in enumerate(steps):
                script.step, script.upcoming = step, steps[index:]
                before = (work / "train.py").read_text()
                ctx = ProposalContext(exp=exp, target=target, best_metric=best, baseline_metric=baseline,
                                      history=list(history), last_failure_tail=last_tail, noise_sd=0.0015,
                                      spent_usd=0.0)
                try:
                    proposal = await proposer.propose(ctx, workspace, events.append)
                except ProposalRejected:
                    rejected += 1
                    (work / "train.py").write_text(before)
                    big.advance(30.0)
                    small.advance(30.0)
                    continue
                after = (work / "train.py").read_text()
                diff = "".join(difflib.unified_diff(before.splitlines(True), after.splitlines(True),
                                                    "a/train.py", "b/train.py"))
                outcome = "discard" if step.outcome == "duplicate" else step.outcome
                on_duplicates += time_budget if step.outcome == "duplicate" else 0.0
                metric = {"keep": best - 0.004, "discard": best + 0.002, "crash": None}[outcome]
                history.append(ResultRow(exp, f"{exp:07x}", metric, outcome, proposal.description, diff=diff,
                                         evidence=None if outcome == "crash" else synthetic_evidence(index + 1, step)))
                script.tried.append(f"{proposal.description} -> {outcome}")
                if outcome == "keep":
                    best = metric
                else:
                    (work / "train.py").write_text(before)
                last_tail = CRASH_TAIL if outcome == "crash" else last_tail
                trained += 1
                exp += 1
                big.advance(gap_s)
                small.advance(gap_s)
            if isinstance(proposer, TeamProposer):
                await proposer.aclose()
            requests = [*big.requests, *small.requests]
            prompts = [r for r in requests if "run_experiment" in json.dumps((r.json or {}).get("tools", []))]
        costs = role_costs(events)
        total = sum(costs.cost_by_role.values())
        evidence_bytes = sum(len(_section(r.text(), "## How the runs trained")) for r in prompts)
        prompt_bytes = sum(len(r.text()) for r in prompts)
        notes_bytes = sum(len(b.get("text", "")) for r in prompts for b in r.messages()[0]["content"]
                          if b.get("text", "").startswith("<notes"))
        return Result(
            session=kind, proposer="one agent (sonnet)" if who == "agent" else "team (sonnet plans, haiku works)",
            proposals=len(steps), trained=trained, rejected=rejected, total_usd=total,
            per_trained_usd=total / trained if trained else 0.0, training_s=trained * time_budget,
            training_s_on_duplicates=on_duplicates, cost_by_role=costs.cost_by_role,
            tokens_by_role=costs.tokens_by_role, evidence_share=evidence_bytes / prompt_bytes if prompt_bytes else 0.0,
            notes_share=notes_bytes / prompt_bytes if prompt_bytes else 0.0,
            requests=len(requests),
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _section(text: str, heading: str) -> str:
    start = text.find(heading)
    if start < 0:
        return ""
    end = text.find("\n## ", start + len(heading))
    return text[start: end if end >= 0 else len(text)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gap-s", type=float, default=330.0, help="seconds between proposals (default 330)")
    parser.add_argument("--time-budget", type=float, default=300.0, help="training seconds per experiment")
    parser.add_argument("--haiku-min-cache", type=int, default=4096,
                        help="the smallest prefix the haiku-class model caches, in tokens (default 4096)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message="The model .* is deprecated", category=DeprecationWarning)

    results = [asyncio.run(replay(kind, who, args.gap_s, args.haiku_min_cache, args.time_budget))
               for kind in ("plain", "duplicates") for who in ("agent", "team")]
    print(f"ar-tui team cost: 20 scripted proposals per session on nanochat/train.py; {SONNET} and {HAIKU} "
          f"list prices; tokens estimated at {DEFAULT_BYTES_PER_TOKEN} bytes per token; {args.gap_s:g} s "
          f"between proposals; cache minimum 1024 tokens ({SONNET}), {args.haiku_min_cache} ({HAIKU})")
    print()
    header = (f"{'session':<11} {'proposer':<33} {'trained':>7} {'rejected':>8} {'$ total':>8} {'$/exp':>7} "
              f"{'planner $':>9} {'worker $':>8} {'review $':>8} {'train s on dups':>15} {'evidence':>8} {'notes':>6}")
    print(header)
    for r in results:
        role = r.cost_by_role
        print(f"{r.session:<11} {r.proposer:<33} {r.trained:>7} {r.rejected:>8} {r.total_usd:>8.4f} "
              f"{r.per_trained_usd:>7.4f} {role.get('planner', 0):>9.4f} "
              f"{role.get('worker', role.get('agent', 0)):>8.4f} {role.get('reviewer', 0):>8.4f} "
              f"{r.training_s_on_duplicates:>15.0f} {r.evidence_share:>8.1%} {r.notes_share:>6.1%}")
    print()
    print("tokens by role (input / cache write / cache read / output; share of the prompt read from the cache):")
    for r in results:
        parts = [f"{role} {t['input']:,}/{t['cache_write']:,}/{t['cache_read']:,}/{t['output']:,} "
                 f"({t['cache_read'] / max(1, t['input'] + t['cache_write'] + t['cache_read']):.0%})"
                 for role, t in sorted(r.tokens_by_role.items())]
        print(f"  {r.session:<11} {r.proposer:<33} " + "; ".join(parts))
    dup_agent = next(r for r in results if r.session == "duplicates" and r.proposer.startswith("one"))
    dup_team = next(r for r in results if r.session == "duplicates" and r.proposer.startswith("team"))
    saved = dup_agent.training_s_on_duplicates - dup_team.training_s_on_duplicates
    print()
    print(f"training seconds saved by the reviewer on the duplicates session: {saved:.0f} s "
          f"({dup_team.rejected} proposals rejected before training)")
    team_plain = next(r for r in results if r.session == "plain" and r.proposer.startswith("team"))
    verdict = "meets" if team_plain.per_trained_usd <= GOAL_PER_EXPERIMENT else "misses"
    print(f"team: ${team_plain.per_trained_usd:.4f} per experiment on the plain session; goal "
          f"${GOAL_PER_EXPERIMENT:.2f}: this {verdict} it")
    print("columns: $/exp = dollars per trained experiment (rejected proposals' cost included); evidence = share "
          "of the agent's or workers' prompt bytes taken by the training evidence; notes = share of the workers' "
          "prompt bytes taken by notes.md")
    if args.json:
        args.json.write_text(json.dumps({"results": [asdict(r) for r in results], "saved_training_s": saved},
                                        indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
