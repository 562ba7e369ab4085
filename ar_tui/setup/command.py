"""`ar-tui init [DIR]`: look at the repository, run its command once
(confined), and write a commented `autoresearch.toml`, saying what was
chosen and why, one line each.

It never overwrites an existing file without `--force`. In a terminal it asks
before each choice it is unsure of; `--yes` (or no terminal) takes the
defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ar_tui.core.errors import UserError
from ar_tui.setup.found import Found

if TYPE_CHECKING:
    from ar_tui.setup.discover import Repository
    from ar_tui.setup.metric import MetricGuess

# The CLI imports this module to register the command: what `init` needs is
# imported when it runs, so that `ar-tui status` stays quick.

DEFAULT_DRY_RUN_S = 120.0
# What the budget adds to the measured run time: room for a slower machine.
BUDGET_MARGIN = 1.25


def add_init_command(sub) -> None:
    init = sub.add_parser("init", help="write a first autoresearch.toml for a repository, from the repository itself")
    init.add_argument("dir", nargs="?", type=Path, default=Path("."), help="the repository (default: here)")
    init.add_argument("--dry-run", type=float, default=DEFAULT_DRY_RUN_S, metavar="SECONDS",
                      help=f"run the command once, confined, for at most SECONDS to read its metric and time it "
                           f"(default {DEFAULT_DRY_RUN_S:g}; 0: do not run it)")
    init.add_argument("--force", action="store_true", help="overwrite an existing autoresearch.toml")
    init.add_argument("--yes", action="store_true", help="take every default without asking")
    init.add_argument("--sandbox", choices=["auto", "require", "off"], default="auto",
                      help="how the dry run is confined (default auto, as `ar-tui run`)")


@dataclass
class Choices:
    run: Found[str]
    editable: Found[list[str]]
    protected: Found[list[str]]
    data: Found[list[str]]
    metric: "Found[MetricGuess | None]"
    time_budget: Found[float]
    timeout: float | None
    python: str


def _asker(interactive: bool) -> Callable[[str, str], str]:
    def ask(question: str, default: str) -> str:
        if not interactive:
            return default
        answer = input(f"{question} [{default}]: ").strip()
        return answer or default

    return ask


def _list_answer(text: str) -> list[str]:
    return [part.strip() for part in text.replace(",", " ").split() if part.strip()]


def named_metric(repo: "Repository") -> "list[MetricGuess]":
    """Without a metric in the output (a dry run that failed): a
    module-level `METRIC = "name"` in the entry point or a protected file."""
    import ast

    from ar_tui.setup.discover import parse_module
    from ar_tui.setup.metric import MetricGuess, direction_of

    for rel in ([repo.entry_file] if repo.entry_file else []) + repo.protected.value:
        tree = parse_module(repo.root, rel) if rel.endswith(".py") else None
        for node in tree.body if tree is not None else []:
            if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id in ("METRIC", "METRIC_NAME")
                                                     for t in node.targets)
                    and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
                name = node.value.value
                return [MetricGuess(name, name, math.nan, direction_of(name), None,
                                    f"{rel} names it (METRIC = {name!r}); the dry run printed none")]
    return []


def choose_metric(guesses: "list[MetricGuess]") -> "Found[MetricGuess | None]":
    if not guesses:
        return Found(None, "the dry run printed no number that looks like a metric; set [metric] name", sure=False)
    best = guesses[0]
    sure = len(guesses) == 1 or "result block" in best.why or "held-out" in best.why
    others = f" (also seen: {', '.join(g.shown for g in guesses[1:4])})" if len(guesses) > 1 else ""
    return Found(best, best.why + others, sure=sure)


def choose_budget(seconds: float | None, finished: bool, timed_out: bool,
                  limit: float) -> tuple[Found[float], float | None]:
    if seconds is None:
        return Found(300.0, "no dry run: the default; set it to a run's length", sure=False), None
    if not finished and not timed_out:
        return Found(300.0, "the dry run failed, so a run's length is unknown: the default", sure=False), None
    if not finished:
        return (Found(float(math.ceil(limit)), f"the dry run did not end in {limit:g} s; each run gets that long "
                      "(AR_TIME_BUDGET), give more with --dry-run", sure=False), None)
    budget = float(max(1, math.ceil(seconds * BUDGET_MARGIN)))
    timeout = float(max(60, math.ceil(budget * 4)))
    return Found(budget, f"a run took {seconds:.1f} s in the dry run; the budget leaves a quarter more"), timeout


def _toml(value: object) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(json.dumps(v) for v in value) + "]"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _pattern(text: str) -> str:
    return f"'{text}'" if "'" not in text else json.dumps(text)


def render(repo: Repository, choices: Choices) -> str:
    """The commented autoresearch.toml."""
    metric = choices.metric.value
    lines = [
        "# autoresearch.toml, written by `ar-tui init` from this repository. Every value is a guess with",
        "# its reason; edit any of them. Reference: docs/guide/your-repo.md.",
        "",
        "[target]",
        f"# {choices.run.why}",
        f"run = {_toml(choices.run.value)}",
        f"# {choices.editable.why}",
        f"editable = {_toml(choices.editable.value)}",
        f"# {choices.protected.why}",
        f"protected = {_toml(choices.protected.value)}",
    ]
    if choices.data.value:
        lines += [
            f"# {choices.data.why}.",
            "# Every run sees them read-only at the same place; they are never committed.",
            f"data = {_toml(choices.data.value)}",
        ]
    lines += [f"# {choices.time_budget.why}", f"time_budget = {_toml(choices.time_budget.value)}"]
    if choices.timeout is not None:
        lines += ["# a run still going after this is killed", f"timeout = {_toml(choices.timeout)}"]
    lines += ["", "[metric]"]
    if metric is None:
        lines += [f"# {choices.metric.why}", 'name = "val_bpb"', 'direction = "min"']
    else:
        lines += [f"# {choices.metric.why}", f"name = {_toml(metric.name)}",
                  f"# from the name: {metric.direction_why}", f"direction = {_toml(metric.direction)}"]
        if metric.pattern:
            lines += [f"# matches every `{metric.shown}` value the script prints; the last one is the result",
                      f"pattern = {_pattern(metric.pattern)}"]
    return "\n".join(lines) + "\n"


def explain(repo: Repository, choices: Choices, print_line: Callable[[str], None]) -> None:
    """One line per choice and why, then the knobs."""
    metric = choices.metric.value
    print_line(f"run:         {choices.run.value}  ({choices.run.why})")
    print_line(f"{choices.python}")
    print_line(f"editable:    {', '.join(choices.editable.value)}  ({choices.editable.why})")
    print_line(f"protected:   {', '.join(choices.protected.value) or 'nothing'}  ({choices.protected.why})")
    print_line(f"data:        {', '.join(choices.data.value) or 'none'}  ({choices.data.why})")
    if metric is not None:
        last = "" if math.isnan(metric.value) else f", last {metric.value:g}"
        print_line(f"metric:      {metric.name}, {metric.direction} ({metric.direction_why}){last}"
                   f"  ({choices.metric.why})")
    else:
        print_line(f"metric:      val_bpb (a placeholder: {choices.metric.why})")
    print_line(f"time_budget: {choices.time_budget.value:g} s  ({choices.time_budget.why})")
    knobs = [(path, knob) for path, found in repo.knobs.items() for knob in found]
    if knobs:
        print_line(f"knobs the offline proposer would tune ({len(knobs)}):")
        for path, knob in knobs:
            print_line(f"  {path}: {knob.name} = {knob.text}")
    else:
        print_line("knobs: none found in the editable files (the offline proposer needs module-level constants)")


def make_choices(repo: Repository, args: argparse.Namespace, ask: Callable[[str, str], str],
                 print_line: Callable[[str], None]) -> Choices:
    from ar_tui.core.config import TargetConfig
    from ar_tui.core.interpreter import resolve_python
    from ar_tui.setup.metric import guess_metric

    python = resolve_python(TargetConfig(root=repo.root))
    run = repo.entry
    if not run.sure:
        run = Found(ask(f"training command ({run.why})", run.value), run.why)
    editable, protected, data = repo.editable, repo.protected, repo.data
    if not editable.sure:
        editable = Found(_list_answer(ask(f"files the agent may edit ({editable.why})", " ".join(editable.value))),
                         editable.why)
    if not protected.sure:
        protected = Found(_list_answer(ask(f"files to protect ({protected.why})", " ".join(protected.value))),
                          protected.why)
    seconds = finished = timed_out = None
    guesses: "list[MetricGuess]" = []
    if args.dry_run > 0:
        from ar_tui.setup.dry_run import dry_run

        print_line(f"dry run: {run.value} (confined, at most {args.dry_run:g} s) ...")
        result = asyncio.run(dry_run(repo.root, run.value, python, data.value, args.dry_run,
                                     sandbox_mode=args.sandbox))
        seconds, finished, timed_out = result.seconds, result.finished, result.timed_out
        state = "finished" if result.finished else (
            "stopped at the limit" if result.timed_out else f"failed (exit code {result.exit_code})")
        print_line(f"dry run: {state} after {result.seconds:.1f} s, {len(result.output.splitlines())} lines "
                   f"({result.sandbox})")
        if result.data_found:
            data = Found(list(dict.fromkeys(data.value + result.data_found)),
                         f"{', '.join(result.data_found)}: the dry run needed it, and git does not track it")
        if not result.finished and not result.timed_out:
            last = [line for line in result.tail.splitlines() if line.strip()][-3:]
            for line in last:
                print_line(f"  | {line}")
        guesses = guess_metric(result.output)
    metric = choose_metric(guesses or named_metric(repo))
    if not metric.sure and len(guesses) > 1:
        names = [g.name for g in guesses]
        picked = ask(f"metric ({', '.join(names[:6])})", names[0])
        chosen = next((g for g in guesses if g.name == picked), guesses[0])
        metric = Found(chosen, chosen.why)
    budget, timeout = choose_budget(seconds, bool(finished), bool(timed_out), args.dry_run)
    return Choices(run, editable, protected, data, metric, budget, timeout, python.description)


def cmd_init(args: argparse.Namespace) -> int:
    from ar_tui.core.config import CONFIG_NAME, ConfigError, load_target
    from ar_tui.core.records.git import GitError, GitRepo
    from ar_tui.setup.discover import discover

    root = args.dir.resolve()
    if not root.is_dir():
        raise UserError(f"{root}: not a directory")
    try:
        GitRepo(root, "ar-tui-init").head_commit()
    except GitError as exc:
        raise UserError(str(exc)) from None
    path = root / CONFIG_NAME
    if path.exists() and not args.force:
        raise UserError(f"{path} exists; pass --force to overwrite it")
    if args.dry_run < 0:
        raise UserError("--dry-run: SECONDS must be 0 (no dry run) or more")
    repo = discover(root)
    ask = _asker(sys.stdin.isatty() and not args.yes)
    choices = make_choices(repo, args, ask, print)
    text = render(repo, choices)
    explain(repo, choices, print)
    before = path.read_bytes() if path.exists() else None
    path.write_text(text, encoding="utf-8")
    try:
        load_target(root)  # what was written must read back; answers typed at a question may not
    except ConfigError as exc:
        if before is None:
            path.unlink()
        else:
            path.write_bytes(before)
        raise UserError(f"nothing written: {exc}") from None
    here = Path.cwd().resolve() == root
    print(f"wrote {path}; start the night with: ar-tui run{'' if here else f' --target {root}'}")
    return 0
