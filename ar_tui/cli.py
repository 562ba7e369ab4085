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
DEFAULT_MODEL = "claude-sonnet-5-5"


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def _confidence(text: str) -> float:
    value = float(text)
    if not 0.5 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0.5 and 1 (e.g. 0.95), not {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {text}")
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
    parser.add_argument("--executor", choices=["local", "ray"], default="local",
                        help="where trials run: this machine, or a Ray cluster (pip install 'ar-tui[ray]')")
    parser.add_argument("--ray-address", help="the Ray cluster (default: RAY_ADDRESS, else a Ray started for the run)")
    parser.add_argument("--lookahead", type=_non_negative_int, default=1, help="prepared proposals per slot")
    parser.add_argument("--baseline-runs", type=int, default=3, help="seed-varied runs of the baseline, to measure noise")
    parser.add_argument("--max-runs", type=int, default=4, help="runs of a candidate inside the noise band")
    parser.add_argument("--confidence", type=_confidence, default=0.95, help="confidence that a kept gain is real")
    parser.add_argument("--seed", type=int, default=0, help="seed of the offline proposer")
    parser.add_argument("--strategy", choices=["greedy", "tree", "islands"], default="greedy",
                        help="search: one greedy lineage, a tree of experiments, or islands that trade their best")
    parser.add_argument("--islands", type=_positive_int, help="islands for --strategy islands (default: one per slot, "
                                                               "at least 2)")
    parser.add_argument("--migrate-every", type=_positive_int, default=8,
                        help="islands: decided experiments between migrations")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ar-tui", description="Autonomous ML research in your terminal.")
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run the research loop (the default command)")
    add_run_arguments(run)
    run.add_argument("--headless", action="store_true", help="no app: print a line per experiment")
    run.add_argument("--detach", action="store_true", help="run the engine in the background; attach to watch")
    report = sub.add_parser("report", help="write report.md and progress.png for a run dir")
    report.add_argument("run_dir", type=Path)
    report.add_argument("--json", action="store_true", help="print the figures as JSON")
    report.add_argument("--narrate", action="store_true", help="ask Claude for a narrative (needs an API key)")
    report.add_argument("--model", default=os.environ.get("AR_TUI_MODEL", DEFAULT_MODEL))
    report.add_argument("--base-url")
    add_remote_commands(sub)
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


def run_location(args: argparse.Namespace) -> tuple[str, Path]:
    """The run's tag and run dir (a detached engine is given both explicitly)."""
    from ar_tui.core.targets import default_run_dir

    tag = args.tag or time.strftime("%b%d").lower()
    return tag, (args.run_dir.resolve() if args.run_dir else default_run_dir(tag))


def make_engine(args: argparse.Namespace):
    from ar_tui.core.engine import Engine, EngineOptions
    from ar_tui.core.targets import materialize_bundled

    tag, run_dir = run_location(args)
    target = args.target.resolve() if args.target else materialize_bundled()
    executor = None
    if getattr(args, "executor", "local") == "ray":
        from ar_tui.core.executors.ray import RayExecutor

        executor = RayExecutor(args.ray_address, run_marker=str(run_dir))
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
        devices=detect_devices(args.slots, args.devices) if executor is None else executor.devices(args.slots),
        lookahead=args.lookahead,
        baseline_runs=max(1, args.baseline_runs),
        max_runs=max(1, args.max_runs),
        confidence=args.confidence,
        strategy=args.strategy,
        islands=args.islands,
        migrate_every=args.migrate_every,
    )
    return Engine(options, make_proposer(args), executor=executor)


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
    if stopped.error:
        print(f"ar-tui: {stopped.reason}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from ar_tui.core.errors import UserError

    if getattr(args, "detach", False):
        return cmd_detach(args)
    try:
        engine = make_engine(args)
    except (ValueError, ImportError, OSError, UserError) as exc:
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
            from ar_tui.agents.narrator import NarrationError, narrate

            try:
                narrative = asyncio.run(narrate(report, model=args.model, base_url=args.base_url))
            except NarrationError as exc:
                # The figures never depend on the model: write them anyway.
                print(f"ar-tui: no narrative: {exc}", file=sys.stderr)
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


# ---------------------------------------------------------------------- detach and attach


def add_remote_commands(sub) -> None:
    attach = sub.add_parser("attach", help="open the app on a running engine (default: the most recent live run)")
    attach.add_argument("run_dir", nargs="?", type=Path)
    status = sub.add_parser("status", help="one line about a run (default: the live runs, else the latest)")
    status.add_argument("run_dir", nargs="?", type=Path)
    status.add_argument("--json", action="store_true", help="print the figures as JSON")
    stop = sub.add_parser("stop", help="ask a running engine to stop after the running experiment")
    stop.add_argument("run_dir", nargs="?", type=Path)
    stop.add_argument("--now", action="store_true", help="abort the running experiment (it runs again on resume)")
    stop.add_argument("--wait", action="store_true", help="return once the engine has exited")
    sub.add_parser("ls", help="list the runs on this machine with their state")


def _live_run_dir(run_dir: Path | None, verb: str) -> Path:
    """The run dir named, or the only live run; several live runs are listed
    and the most recent one is taken only where that is harmless (attach)."""
    from ar_tui.core.remote import live_run_dirs

    if run_dir is not None:
        return run_dir.resolve()
    live = live_run_dirs()
    if not live:
        raise LookupError("no live run on this machine; `ar-tui ls` lists the runs")
    if len(live) > 1:
        listing = "\n".join(f"  {path}" for path in live)
        if verb != "attach":
            raise LookupError(f"{len(live)} live runs; name one:\n{listing}")
        print(f"ar-tui: {len(live)} live runs, attaching to the most recent:\n{listing}", file=sys.stderr)
    return live[0]


def cmd_detach(args: argparse.Namespace) -> int:
    from ar_tui.core.remote import EngineNotRunning, detached_argv, start_detached

    tag, run_dir = run_location(args)
    try:
        argv = detached_argv([*args.argv, "--tag", tag, "--run-dir", str(run_dir)])
        pid = asyncio.run(start_detached(argv, run_dir))
    except (EngineNotRunning, OSError) as exc:
        print(f"ar-tui: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"ar-tui: run {tag} is running in the background (pid {pid}); output in {run_dir / 'engine.out'}\n"
          f"  watch it:   ar-tui attach {run_dir}\n"
          f"  one line:   ar-tui status {run_dir}\n"
          f"  stop it:    ar-tui stop {run_dir}")
    return EXIT_OK


async def _attach(run_dir: Path) -> int:
    from ar_tui.core.remote import RemoteEngine
    from ar_tui.ui.attached_app import AttachedApp

    remote = RemoteEngine(run_dir)
    history = await remote.connect()
    try:
        await AttachedApp(remote, replay=history, log_dir=run_dir / "logs").run_async()
    finally:
        await remote.close()
    return EXIT_OK


def cmd_attach(args: argparse.Namespace) -> int:
    from ar_tui.core.remote import EngineNotRunning, detached_argv, engine_is_live, resume_command, start_detached

    try:
        run_dir = _live_run_dir(args.run_dir, "attach")
        code = asyncio.run(_attach(run_dir))
    except LookupError as exc:
        print(f"ar-tui: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except EngineNotRunning as exc:
        resume = resume_command(run_dir)
        print(f"ar-tui: {exc}. Resume the run with:\n  ar-tui {' '.join(resume)}", file=sys.stderr)
        if not (sys.stdin.isatty() and input("Resume it now in the background and attach? [y/N] ").strip().lower()
                in ("y", "yes")):
            return EXIT_ERROR
        try:
            asyncio.run(start_detached(detached_argv(resume), run_dir))
            code = asyncio.run(_attach(run_dir))
        except EngineNotRunning as again:
            print(f"ar-tui: {again}", file=sys.stderr)
            return EXIT_ERROR
    if engine_is_live(run_dir):
        print(f"ar-tui: detached; the run goes on. Attach again with: ar-tui attach {run_dir}")
    return code


def cmd_status(args: argparse.Namespace) -> int:
    import json

    from ar_tui.core.remote import EngineNotRunning, describe_status, find_run_dirs, live_run_dirs, run_status

    run_dirs = [args.run_dir.resolve()] if args.run_dir else (live_run_dirs() or find_run_dirs()[:1])
    if not run_dirs:
        print("ar-tui: no runs on this machine", file=sys.stderr)
        return EXIT_ERROR
    try:
        statuses = [asyncio.run(run_status(run_dir)) for run_dir in run_dirs]
    except EngineNotRunning as exc:
        print(f"ar-tui: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for status in statuses:
        print(json.dumps(status) if args.json else describe_status(status))
    return EXIT_OK


def cmd_stop(args: argparse.Namespace) -> int:
    from ar_tui.core.remote import EngineNotRunning, RemoteError, engine_pid, request, wait_for_exit

    try:
        run_dir = _live_run_dir(args.run_dir, "stop")
        pid = engine_pid(run_dir)
        asyncio.run(request(run_dir, "stop", now=args.now))
    except (LookupError, EngineNotRunning, RemoteError) as exc:
        print(f"ar-tui: {exc}", file=sys.stderr)
        return EXIT_ERROR
    when = "now: the running experiments are aborted" if args.now else "after the running experiments"
    print(f"ar-tui: {run_dir.name} stops {when}")
    if args.wait and pid is not None:
        wait_for_exit(pid)
    return EXIT_OK


def cmd_ls(args: argparse.Namespace) -> int:
    from ar_tui.core.remote import headline_state, list_runs

    runs = asyncio.run(list_runs())
    if not runs:
        print("no runs on this machine")
        return EXIT_OK
    print(f"{'TAG':16} {'STATE':12} {'EXPS':>5} {'KEPT':>5} {'BEST':>10}  RUN DIR")
    for run in runs:
        state = headline_state(run)
        best = f"{run['best']:.6f}" if run.get("best") is not None else "-"
        print(f"{(run['tag'] or '?')[:16]:16} {state:12} {run['experiments']:5d} {run['kept']:5d} {best:>10}  "
              f"{run['run_dir']}")
    return EXIT_OK


REMOTE_COMMANDS = {"attach": cmd_attach, "status": cmd_status, "stop": cmd_stop, "ls": cmd_ls}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = ["run", *argv]
    args = parser.parse_args(argv)
    args.argv = argv
    if args.command in REMOTE_COMMANDS:
        return REMOTE_COMMANDS[args.command](args)
    if args.command == "report":
        return cmd_report(args)
    return cmd_run(args)


if __name__ == "__main__":
    sys.exit(main())
