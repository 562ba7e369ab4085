"""`ar-tui finalize RUN_DIR`: the morning after a night.

It writes the night's changes as a clean branch (one commit per change on
the best's lineage, replayed on the run's base) and PR.md; with `--ablate` it
first trains the best with each change left out, on the night's own engine
(its executor, sandbox and slots), marks each change, writes ablation.tsv and
a section of report.md; with `--drop-null` the branch leaves out the changes
with no measurable effect. An ablation killed half way resumes from
ablation.jsonl when the same command is run again.

Wiring only: the work is in `ar_tui.core.finalize` and `ar_tui.report.pr`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from ar_tui import exit_codes
from ar_tui.core.errors import UserError
from ar_tui.core.records.rundir import RunDir


def add_finalize_command(sub) -> None:
    finalize = sub.add_parser("finalize", help="write a night's changes as a clean branch and PR.md "
                                               "(--ablate: check that each still matters)")
    finalize.add_argument("run_dir", type=Path)
    finalize.add_argument("--into", help="the branch to write (default: autoresearch/<tag>-final)")
    finalize.add_argument("--ablate", action="store_true",
                          help="train the best with each change left out, on the night's slots, and mark each")
    finalize.add_argument("--drop-null", action="store_true",
                          help="with --ablate: leave the changes with no measurable effect off the branch")
    finalize.add_argument("--repeats", type=int, default=None,
                          help="seed-varied runs of each ablation variant (default 4)")


class _NoProposals:
    """The ablation's engine never proposes: it only measures. It carries
    the night's agent and model, so the session it opens names them."""

    def __init__(self, name: str | None, model: str | None) -> None:
        self.name, self.model = name or "finalize", model

    async def propose(self, ctx, workspace, emit):  # pragma: no cover - never called
        from ar_tui.core.proposer import ProposerStopped

        raise ProposerStopped("finalize proposes nothing")


def cmd_finalize(args: argparse.Namespace) -> int:
    from ar_tui.core.finalize.ablation import DEFAULT_REPEATS, NULL
    from ar_tui.core.finalize.branch import commit_message, default_branch, write_branch
    from ar_tui.core.finalize.changes import read_night
    from ar_tui.report.pr import render_pr

    if args.drop_null and not args.ablate:
        raise UserError("--drop-null needs --ablate: only an ablation says which changes have no effect")
    repeats = args.repeats if args.repeats is not None else DEFAULT_REPEATS
    if repeats < 2:
        raise UserError("--repeats must be at least 2 (one run says nothing about noise)")
    paths = RunDir(Path(args.run_dir).resolve())
    night = read_night(paths.path)
    if not night.changes:
        raise UserError(f"{paths.path}: nothing beat the baseline; there is no change to finalize")
    ablation = None
    if args.ablate:
        paths.ensure_free()
        ablation = asyncio.run(_ablate(paths.path, night, repeats))
        ablation.write_table(paths.ablation_table)
        from ar_tui.report import write_report

        write_report(paths.path)
        for verdict in ablation.verdicts:
            print(f"exp {verdict.exp}: {verdict.text(night.metric, ablation.confidence)}  {verdict.description}")
    marks = {v.exp: v for v in ablation.verdicts} if ablation else {}
    changes = [c for c in night.changes if not (args.drop_null and marks.get(c.exp) and marks[c.exp].mark == NULL)]
    messages = {c.exp: commit_message(c, night, marks[c.exp].text(night.metric, ablation.confidence)
                                      if c.exp in marks else "") for c in changes}
    branch = write_branch(night, args.into or default_branch(night.tag), changes, messages)
    paths.pr.write_text(render_pr(night, branch, ablation), encoding="utf-8")
    print(f"wrote branch {branch.name} ({len(branch.commits)} commit(s) on {night.base_commit[:7]}, tip {branch.tip[:7]})")
    if branch.same_as_best is False:
        print(f"ar-tui: warning: the replayed changes do not give the night's best code "
              f"({night.best_commit[:7]}); compare them before merging", file=sys.stderr)
    if branch.left_out:
        print("left out (no measurable effect): " + ", ".join(f"exp {c.exp}" for c in branch.left_out))
    print(f"wrote {paths.pr}")
    if ablation:
        print(f"wrote {paths.ablation_table} and the ablation section of {paths.report}")
    return exit_codes.EXIT_OK


async def _ablate(run_dir: Path, night, repeats: int):
    from ar_tui import run_options
    from ar_tui.core import events as ev
    from ar_tui.core.finalize.ablation import run_ablation
    from ar_tui.core.records.ledger import read_events
    from ar_tui.headless import HeadlessPrinter
    from ar_tui.signals import install_stop_signals
    from ar_tui.wiring import make_engine

    options = run_options.load(run_dir)
    if options is None or options.target is None:
        raise UserError(f"{run_dir}: no stored run options; run the night with this version of ar-tui first")
    # The night's own engine: its executor, sandbox, slots, logs and accounting.
    started = [e for e in read_events(RunDir(run_dir).events) if isinstance(e, ev.RunStarted)]
    agent, model = (started[-1].agent, started[-1].model) if started else (options.agent, options.model)
    engine = make_engine(run_dir, options, proposer=_NoProposals(agent, model), services=[])
    engine.subscribe(HeadlessPrinter())
    async with engine.session():
        install_stop_signals(engine)
        result = await run_ablation(engine, night, repeats)
    if engine.steering.stopping:
        print("ar-tui: the ablation was stopped; run the same command again to finish it", file=sys.stderr)
        raise SystemExit(exit_codes.EXIT_OK if not engine.steering.stop_error else 1)
    return result
