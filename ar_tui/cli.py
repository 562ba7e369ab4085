"""Command line: argument parsing and wiring, nothing else."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from pathlib import Path

from ar_tui.core import events as ev

EXIT_OK, EXIT_ERROR, EXIT_BAD_INPUT = 0, 1, 2
DEFAULT_MODEL = "claude-sonnet-4-5"


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", type=Path, help="target directory in a git repo (default: the bundled nanochat)")
    parser.add_argument("--tag", help="run tag; experiments go on branch autoresearch/<tag> (default: today, e.g. nov28)")
    parser.add_argument("--run-dir", type=Path, help="where the ledger, logs and worktrees go")
    parser.add_argument("--agent", choices=["offline", "claude"], help="default: claude when ANTHROPIC_API_KEY is set")
    parser.add_argument("--model", default=os.environ.get("AR_TUI_MODEL", DEFAULT_MODEL))
    parser.add_argument("--base-url", help="a Messages API server (default: ANTHROPIC_BASE_URL or Anthropic's)")
    parser.add_argument("--program", type=Path, help="the agent's instructions (default: program.md)")
    parser.add_argument("--max-experiments", type=_non_negative_int)
    parser.add_argument("--hours", type=_positive_float)
    parser.add_argument("--budget-usd", type=_positive_float)
    parser.add_argument("--time-budget", type=_positive_float, help="training seconds per experiment (AR_TIME_BUDGET)")
    parser.add_argument("--unattended", action="store_true", help="run proposals at once, with no veto window")
    parser.add_argument("--veto-window", type=_positive_float, default=60.0, help="seconds (attended mode)")
    parser.add_argument("--slots", type=int, help="number of slots (default: one per visible GPU, else 1)")
    parser.add_argument("--devices", help="GPU indices for the slots, e.g. 0,2,3")
    parser.add_argument("--lookahead", type=_non_negative_int, default=1, help="prepared proposals per slot")
    parser.add_argument("--baseline-runs", type=int, default=2, help="runs of the baseline, to measure noise")
    parser.add_argument("--seed", type=int, default=0, help="seed of the offline proposer")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ar-tui", description="Autonomous ML research in your terminal.")
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run the research loop (the default command)")
    add_run_arguments(run)
    run.add_argument("--headless", action="store_true", help="no app: print a line per experiment")
    report = sub.add_parser("report", help="write report.md and progress.png for a run dir")
    report.add_argument("run_dir", type=Path)
    report.add_argument("--json", action="store_true", help="print the figures as JSON")
    report.add_argument("--narrate", action="store_true", help="ask Claude for a narrative (needs an API key)")
    report.add_argument("--model", default=os.environ.get("AR_TUI_MODEL", DEFAULT_MODEL))
    report.add_argument("--base-url")
    return parser


def detect_devices(slots: int | None, devices: str | None) -> list[str]:
    """One slot per visible NVIDIA GPU by default, else one CPU slot."""
    if devices:
        indices = [d.strip() for d in devices.split(",") if d.strip()]
        if not indices or not all(d.isdigit() for d in indices):
            raise ValueError(f"--devices must be GPU indices like 0,2,3, not {devices!r}")
        return [f"cuda:{d}" for d in indices]
    gpus = _visible_gpus()
    if slots is not None:
        if slots < 1:
            raise ValueError("--slots must be at least 1")
        return [f"cuda:{g}" for g in gpus[:slots]] if len(gpus) >= slots else ["cpu"] * slots
    return [f"cuda:{g}" for g in gpus] or ["cpu"]


def _visible_gpus() -> list[str]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip() and d.strip() != "-1"]
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return [str(i) for i in range(pynvml.nvmlDeviceGetCount())]
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no driver, no library: a CPU machine
        return []


def _program_text(path: Path | None) -> str:
    candidates = [path] if path else [Path("program.md"), Path(__file__).resolve().parent.parent / "program.md"]
    for candidate in candidates:
        if candidate and candidate.is_file():
            return candidate.read_text(encoding="utf-8")
    raise ValueError(f"program file not found: {path or 'program.md'}")


def make_proposer(args: argparse.Namespace):
    agent = args.agent or ("claude" if os.environ.get("ANTHROPIC_API_KEY") else "offline")
    if agent == "offline":
        from ar_tui.agents.offline import OfflineProposer

        return OfflineProposer(seed=args.seed)
    from ar_tui.agents.claude import ClaudeAgent

    return ClaudeAgent(model=args.model, program=_program_text(args.program), base_url=args.base_url)


def make_engine(args: argparse.Namespace):
    from ar_tui.core.engine import Engine, EngineOptions
    from ar_tui.core.targets import default_run_dir, materialize_bundled

    tag = args.tag or time.strftime("%b%d").lower()
    target = args.target.resolve() if args.target else materialize_bundled()
    run_dir = args.run_dir.resolve() if args.run_dir else default_run_dir(tag)
    options = EngineOptions(
        target_dir=target,
        tag=tag,
        run_dir=run_dir,
        time_budget=args.time_budget,
        max_experiments=args.max_experiments,
        hours=args.hours,
        budget_usd=args.budget_usd,
        attended=not args.unattended,
        veto_window_s=args.veto_window,
        devices=detect_devices(args.slots, args.devices),
        lookahead=args.lookahead,
        baseline_runs=max(1, args.baseline_runs),
    )
    return Engine(options, make_proposer(args))


class HeadlessPrinter:
    """Prints a line per experiment: the headless observer of the engine."""

    def __init__(self, stream=sys.stdout) -> None:
        self.stream = stream

    def __call__(self, event: ev.Event) -> None:
        line = self.format(event)
        if line:
            print(line, file=self.stream, flush=True)

    @staticmethod
    def format(event: ev.Event) -> str | None:
        if isinstance(event, ev.RunStarted):
            mode = "attended" if event.attended else "unattended"
            verb = "resuming" if event.resumed else "starting"
            return (f"ar-tui: {verb} run {event.tag} on {event.target} ({event.agent}, {mode}, "
                    f"slots {', '.join(event.slots)}); run dir {event.run_dir}")
        if isinstance(event, ev.BaselineReady):
            return f"baseline: {event.metric:.6f}"
        if isinstance(event, ev.ExperimentStarted):
            again = f" (run {event.attempt})" if event.attempt > 1 else ""
            return f"exp {event.exp}{again} [slot {event.slot}] running: {event.description}"
        if isinstance(event, ev.Decision):
            metric = f"{event.metric:.6f}" if event.metric is not None else "-"
            return f"exp {event.exp} {event.status.upper():7s} {metric}  {event.description}  ({event.rule})"
        if isinstance(event, ev.ProposalFailed):
            return f"exp {event.exp} proposal failed: {event.reason}"
        if isinstance(event, ev.ApiWaiting):
            return f"waiting for the API ({event.reason}); retrying in {event.retry_in_s:.0f} s"
        if isinstance(event, ev.Notice) and event.level in ("warning", "error"):
            return f"{event.level}: {event.message}"
        if isinstance(event, ev.VetoWindow):
            return f"exp {event.exp} waits {event.seconds:g} s for a veto"
        if isinstance(event, ev.RunStopped):
            best = f"{event.best_metric:.6f}" if event.best_metric is not None else "-"
            gain = f"{event.improvement_pct:+.2f}%" if event.improvement_pct is not None else "-"
            return (f"stopped: {event.reason}\nexperiments: {event.experiments}  kept: {event.kept}  best: {best}  "
                    f"improvement over baseline: {gain}  cost: ${event.cost_usd:.4f}")
        return None


def _install_stop_signals(engine) -> None:
    """SIGTERM, SIGHUP (the SSH connection dropped) and Ctrl-C stop the run
    cleanly: running experiments are interrupted and stay in flight, so the
    same command resumes them."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        loop.add_signal_handler(sig, engine.request_stop, True)


async def _run_headless(engine) -> int:
    from ar_tui.core.engine import UserError

    engine.subscribe(HeadlessPrinter())
    _install_stop_signals(engine)
    try:
        stopped = await engine.run()
    except UserError as exc:
        print(f"ar-tui: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_ERROR if stopped.error else EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    try:
        engine = make_engine(args)
    except (ValueError, ImportError, OSError) as exc:
        print(f"ar-tui: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.headless:
        return asyncio.run(_run_headless(engine))
    from ar_tui.ui.app import run_app

    return run_app(engine)


def cmd_report(args: argparse.Namespace) -> int:
    import json

    from ar_tui.core.report import ReportError, build_report, report_as_dict, write_report

    try:
        report = build_report(args.run_dir)
        narrative = None
        if args.narrate:
            from ar_tui.agents.narrator import narrate

            narrative = asyncio.run(narrate(report, model=args.model, base_url=args.base_url))
        paths = write_report(args.run_dir, narrative=narrative)
    except ReportError as exc:
        print(f"ar-tui: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.json:
        print(json.dumps(report_as_dict(report), indent=2))
    else:
        for path in paths:
            print(f"wrote {path}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = ["run", *argv]
    args = parser.parse_args(argv)
    if args.command == "report":
        return cmd_report(args)
    return cmd_run(args)


if __name__ == "__main__":
    sys.exit(main())
