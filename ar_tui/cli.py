"""Command line: flags and wiring only.

One function builds the parser (one helper per subcommand's flags), one
function runs each subcommand, and `main` maps every error to its exit code
through `ar_tui.exit_codes`. What a run does lives in the engine, how it is
shown in `ar_tui.headless` and `ar_tui.ui`, how it was started in
`ar_tui.run_options`. Heavy imports (the engine, GitPython, Textual, the SDK)
happen inside the commands that need them, so `status` and `ls` start fast.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

from ar_tui import exit_codes
from ar_tui.core.errors import ArTuiError, RunError, UserError
from ar_tui.core.records.rundir import RunDir
from ar_tui.finalize import add_finalize_command, cmd_finalize
from ar_tui.notify.command import add_notify_command, cmd_notify
from ar_tui.setup.command import add_init_command, cmd_init
from ar_tui.track.command import add_track_command, cmd_track
from ar_tui.wiring import make_engine

DEFAULT_MODEL = "claude-sonnet-5-5"
# ---------------------------------------------------------------------- flags


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def part_options() -> tuple:
    """The options the parts of a run declare (the engine, the strategies, the
    executors, the agents, what watches from outside), as `RunOption`s: each
    is a flag and a stored value in `RunOptions.extra`. Imports the engine:
    for `run` only."""
    from ar_tui.agents.registry import proposer_options
    from ar_tui.core.engine.parts import ENGINE_RUN_OPTIONS
    from ar_tui.core.engine.strategies import strategy_options
    from ar_tui.core.executors import executor_options
    from ar_tui.watchers import WATCHER_RUN_OPTIONS

    options: dict = {}
    for option in (*ENGINE_RUN_OPTIONS, *strategy_options(), *executor_options(), *proposer_options(),
                   *WATCHER_RUN_OPTIONS):
        options.setdefault(option.name, option)
    return tuple(options.values())


def add_part_option(parser: argparse.ArgumentParser, option) -> None:
    """A part's option as a flag; None when not typed (see add_run_arguments)."""
    if option.switch:
        parser.add_argument(option.flag, dest=option.name, action="store_true", default=None, help=option.help)
    else:
        parser.add_argument(option.flag, dest=option.name, type=option.type, choices=option.choices, help=option.help)


def add_run_arguments(parser: argparse.ArgumentParser, with_parts: bool = True) -> None:
    """The flags of a run. Their defaults are None: a flag the user did not
    type must not override what a resumed run was started with; the defaults
    named in the help are applied in `resolve_run`. The parts' own flags
    (`part_options`) are added `with_parts` only, so that parsing `status`
    never imports the engine."""
    from ar_tui.agents.registry import proposer_names
    from ar_tui.core.config import positive_float
    from ar_tui.run_options import RunOptions

    parser.add_argument("--target", type=Path, help="target directory in a git repo (default: the bundled nanochat)")
    parser.add_argument("--example", help="run an example that ships with ar-tui: forecast, speed, prompt or backtest")
    parser.add_argument("--tag", help="run tag; experiments go on branch autoresearch/<tag> (default: today, e.g. nov28)")
    parser.add_argument("--run-dir", type=Path,
                        help="where the ledger, logs and worktrees go; alone, it resumes that run as it was started")
    parser.add_argument("--agent", choices=proposer_names(), help="default: claude when ANTHROPIC_API_KEY is set")
    parser.add_argument("--model", help=f"the agent's model, [API:]MODEL (default: AR_TUI_MODEL or {DEFAULT_MODEL})")
    parser.add_argument("--base-url", help="the model's server, serving the Messages, Chat Completions or Responses "
                                           "API depending on --agent: Anthropic Messages for claude, claude-code, team "
                                           "and hybrid (default: ANTHROPIC_BASE_URL or Anthropic's); an "
                                           "OpenAI-compatible /v1 URL serving Chat Completions for openai or Responses "
                                           "for codex (default: OPENAI_BASE_URL or OpenAI's)")
    parser.add_argument("--program", type=Path, help="the agent's instructions (default: program.md)")
    # Checked against the executor registry when the run is resolved (one line, exit 2).
    parser.add_argument("--executor", help="where experiments run" + (
        ": " + ", or ".join(f"{name} ({entry.help})" for name, entry in _executors().items()) if with_parts else ""))
    parser.add_argument("--max-experiments", type=_non_negative_int)
    parser.add_argument("--hours", type=positive_float)
    parser.add_argument("--budget-usd", type=positive_float)
    parser.add_argument("--time-budget", type=positive_float, help="training seconds per experiment (AR_TIME_BUDGET)")
    parser.add_argument("--unattended", dest="attended", action="store_const", const=False,
                        help="run proposals at once, with no veto window")
    parser.add_argument("--attended", dest="attended", action="store_const", const=True,
                        help="wait a veto window before each experiment (the default)")
    parser.add_argument("--veto-window", type=positive_float, help="seconds (attended mode; default 60)")
    parser.add_argument("--slots", type=int, help="number of slots (default: one per visible GPU, else 1)")
    parser.add_argument("--devices", help="GPU indices for the slots, e.g. 0,2,3")
    parser.add_argument("--lookahead", type=_non_negative_int, help="prepared proposals per slot (default 1)")
    parser.add_argument("--baseline-runs", type=int,
                        help=f"seed-varied runs of the baseline, to measure noise (default {RunOptions.baseline_runs})")
    parser.add_argument("--seed", type=int, help="seed of the offline proposer (default 0)")
    # Not a RunOption, so never stored with the run's options: a URL holds a
    # secret (ar_tui.notify.settings). --track is (ar_tui.watchers).
    parser.add_argument("--notify", action="append", metavar="URL",
                        help="send the night's moments to this Apprise URL (repeatable; also [notify] urls)")
    if with_parts:
        for option in part_options():
            add_part_option(parser, option)

def _executors() -> dict:
    from ar_tui.core.executors import EXECUTORS

    return EXECUTORS


def add_run_command(sub, with_parts: bool = True) -> None:
    run = sub.add_parser("run", help="run the research loop (the default command)")
    add_run_arguments(run, with_parts)
    run.add_argument("--headless", action="store_true", help="no app: print a line per experiment")
    run.add_argument("--detach", action="store_true", help="run the engine in the background; attach to watch")


def add_report_command(sub) -> None:
    report = sub.add_parser("report", help="write report.md and progress.png for a run dir")
    report.add_argument("run_dir", type=Path)
    report.add_argument("--json", action="store_true", help="print the figures as JSON")
    report.add_argument("--narrate", action="store_true", help="ask Claude for a narrative (needs an API key)")
    report.add_argument("--model", default=os.environ.get("AR_TUI_MODEL", DEFAULT_MODEL))
    report.add_argument("--base-url")


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
    serve = sub.add_parser("serve", help="the app in a browser, on 127.0.0.1 (the URL printed carries a token)")
    serve.add_argument("run_dir", nargs="?", type=Path)
    serve.add_argument("--port", type=int, default=8000, help="0 picks a free port")


def build_parser(with_parts: bool = True) -> argparse.ArgumentParser:
    """The whole parser; `with_parts=False` leaves out the flags that the
    parts of a run declare, for a command other than `run`."""
    parser = argparse.ArgumentParser(prog="ar-tui", description="Autonomous ML research in your terminal.")
    sub = parser.add_subparsers(dest="command")
    add_run_command(sub, with_parts)
    add_report_command(sub)
    add_remote_commands(sub)
    add_notify_command(sub)
    add_track_command(sub)
    add_init_command(sub)
    add_finalize_command(sub)
    return parser


# ---------------------------------------------------------------------- a run's options


def given_options(args: argparse.Namespace) -> dict:
    """The run options the user typed, as RunOptions fields (nothing defaulted)."""
    from ar_tui.gpus import detect_devices

    given = {name: getattr(args, flag) for name, flag in (
        ("tag", "tag"), ("agent", "agent"), ("model", "model"), ("base_url", "base_url"), ("executor", "executor"),
        ("max_experiments", "max_experiments"), ("hours", "hours"), ("budget_usd", "budget_usd"),
        ("time_budget", "time_budget"), ("attended", "attended"), ("veto_window_s", "veto_window"),
        ("lookahead", "lookahead"), ("seed", "seed"),
    ) if getattr(args, flag) is not None}
    if args.target is not None and args.example is not None:
        raise UserError("--target and --example name two targets; give one")
    if args.target is not None:
        given["target"] = str(args.target.resolve())
    elif args.example is not None:
        from ar_tui.core.targets import materialize_example

        given["target"] = str(materialize_example(args.example))
    if args.program is not None:
        given["program"] = str(args.program.resolve())
    if args.baseline_runs is not None:
        given["baseline_runs"] = max(1, args.baseline_runs)
    if args.max_runs is not None:
        args.max_runs = max(1, args.max_runs)
    if args.slots is not None or args.devices:
        given["devices"] = detect_devices(args.slots, args.devices)
    extra = {option.name: getattr(args, option.name) for option in part_options()
             if getattr(args, option.name, None) is not None}
    if extra:
        given["extra"] = extra
    return given


def _today_tag() -> str:
    return time.strftime("%b%d").lower()


def _default_program() -> Path:
    # The default instructions ship inside the package (ar_tui/program.md).
    for candidate in (Path("program.md"), Path(__file__).resolve().parent / "program.md"):
        if candidate.is_file():
            return candidate.resolve()
    raise UserError("program file not found: program.md (pass --program FILE)")


def resolve_run(args: argparse.Namespace):
    """The run dir and the options to run with: the flags given, over what
    the run dir stores, over the defaults. Refuses a conflicting flag."""
    from ar_tui import run_options
    from ar_tui.agents.registry import reads_program
    from ar_tui.core.executors import executor_entry
    from ar_tui.core.records.rundir import default_run_dir
    from ar_tui.gpus import detect_devices

    if args.run_dir is not None:
        run_dir = args.run_dir.resolve()
    else:
        run_dir = default_run_dir(args.tag or _today_tag()).resolve()
    paths = RunDir(run_dir)
    stored = run_options.load(run_dir)
    parts = part_options()
    options = run_options.merge(stored, given_options(args), binding=paths.has_records(), where=f"run {run_dir}",
                                adjustable_extra={option.name for option in parts if option.adjustable})
    if options.tag is None:
        options.tag = _today_tag()
    if options.extra.get("team") and options.agent not in (None, "team", "hybrid"):
        raise UserError(f"--team is a team of models: it goes with --agent team or hybrid, not --agent {options.agent}")
    if options.agent is None:
        options.agent = "team" if options.extra.get("team") else "claude" if os.environ.get("ANTHROPIC_API_KEY") else "offline"
    if options.model is None:
        options.model = os.environ.get("AR_TUI_MODEL", DEFAULT_MODEL)
    executor = executor_entry(options.executor)  # an unknown name is refused before anything is stored
    if options.devices is None and executor.devices is not None:
        options.devices = executor.devices(options.extra)
    if options.devices is None:
        options.devices = detect_devices(None, None)
    if options.program is None and reads_program(options.agent):
        options.program = str(_default_program())
    for option in parts:
        if option.default is not None:
            options.extra.setdefault(option.name, option.default)
    if options.target is None and Path("autoresearch.toml").is_file():
        options.target = str(Path.cwd().resolve())  # a repository set up with `ar-tui init`, run from inside it
    if options.target is None:
        from ar_tui.core.targets import materialize_bundled

        options.target = str(materialize_bundled())
    return run_dir, options


def store_options(run_dir: Path, options) -> None:
    """Write the options into the run dir before the engine starts; never
    into a run dir that a live engine owns (it was started otherwise)."""
    from ar_tui import run_options

    RunDir(run_dir).ensure_free()
    run_options.save(run_dir, options)


async def _run_headless(engine, run_dir: Path) -> int:
    from ar_tui.headless import HeadlessPrinter, where_to_look
    from ar_tui.signals import install_stop_signals

    engine.subscribe(HeadlessPrinter())
    install_stop_signals(engine)
    stopped = await engine.run()
    if stopped.error:
        print(f"ar-tui: {stopped.reason}", file=sys.stderr)
    print(where_to_look(run_dir, kept=stopped.kept > 0 and not stopped.error), flush=True)
    return exit_codes.exit_code(stopped=stopped)


# ---------------------------------------------------------------------- commands


def cmd_run(args: argparse.Namespace) -> int:
    try:
        run_dir, options = resolve_run(args)
        store_options(run_dir, options)
        if args.detach:
            if args.notify:
                from ar_tui.notify.settings import URLS_ENV, resolve_notify

                # Checked here, handed over in the environment (never stored), stripped from every run's.
                os.environ[URLS_ENV] = "\n".join(resolve_notify(args.notify, Path(options.target)).urls)
            return detach(run_dir, options.tag)
        engine = make_engine(run_dir, options, args.notify)
    except (ImportError, OSError) as exc:  # a missing package, an unreadable target: the user's to fix
        raise UserError(str(exc)) from None
    if args.headless:
        return asyncio.run(_run_headless(engine, run_dir))
    from ar_tui.ui.app import run_app

    return run_app(engine)


def start_in_background(run_dir: Path) -> int:
    """A headless engine on the run dir's stored options, outliving this
    terminal; returns its pid once its socket answers."""
    from ar_tui.core.control.detach import start_detached

    return asyncio.run(start_detached(["run", "--run-dir", str(run_dir), "--headless"], run_dir))


def detach(run_dir: Path, tag: str) -> int:
    """Start the engine in the background on the options just stored, and
    say how to reach it."""
    pid = start_in_background(run_dir)
    print(f"ar-tui: run {tag} is running in the background (pid {pid}); output in {RunDir(run_dir).engine_out}\n"
          f"  watch it:   ar-tui attach {run_dir}\n"
          f"  one line:   ar-tui status {run_dir}\n"
          f"  stop it:    ar-tui stop {run_dir}")
    return exit_codes.EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    import json

    from ar_tui.report import build_report, report_as_dict, write_report

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
    if args.json:
        print(json.dumps(report_as_dict(report), indent=2))
    else:
        for path in paths:
            print(f"wrote {path}")
    return exit_codes.EXIT_OK


def _live_run_dir(run_dir: Path | None, verb: str) -> Path:
    """The run dir named, or the only live run; several live runs are listed
    and the most recent one is taken only where that is harmless (attach)."""
    from ar_tui.core.records.rundir import live_run_dirs

    if run_dir is not None:
        return run_dir.resolve()
    live = live_run_dirs()
    if not live:
        raise RunError("no live run on this machine; `ar-tui ls` lists the runs")
    if len(live) > 1:
        listing = "\n".join(f"  {path}" for path in live)
        if verb != "attach":
            raise RunError(f"{len(live)} live runs; name one:\n{listing}")
        print(f"ar-tui: {len(live)} live runs, attaching to the most recent:\n{listing}", file=sys.stderr)
    return live[0]


async def _attach(run_dir: Path) -> int:
    from ar_tui.core.control.client import RemoteEngine
    from ar_tui.ui.attached_app import AttachedApp

    remote = RemoteEngine(run_dir)
    history = await remote.connect()
    try:
        await AttachedApp(remote, replay=history, log_dir=RunDir(run_dir).logs).run_async()
    finally:
        await remote.close()
    return exit_codes.EXIT_OK


def cmd_attach(args: argparse.Namespace) -> int:
    from ar_tui.core.control.client import EngineNotRunning
    from ar_tui.headless import open_app_command

    run_dir = _live_run_dir(args.run_dir, "attach")
    try:
        code = asyncio.run(_attach(run_dir))
    except EngineNotRunning as exc:
        # The run resumes with the options it was started with: --run-dir is all it needs.
        print(f"ar-tui: {exc}. Resume the run with:\n  {open_app_command(run_dir)}", file=sys.stderr)
        if not (sys.stdin.isatty() and input("Resume it now in the background and attach? [y/N] ").strip().lower()
                in ("y", "yes")):
            return exit_codes.EXIT_ERROR
        start_in_background(run_dir)
        code = asyncio.run(_attach(run_dir))
    if RunDir(run_dir).is_live():
        print(f"ar-tui: detached; the run goes on. Attach again with: ar-tui attach {run_dir}")
    return code


def cmd_status(args: argparse.Namespace) -> int:
    import json

    from ar_tui.core.control.client import run_status
    from ar_tui.core.records.rundir import find_run_dirs, live_run_dirs
    from ar_tui.headless import describe_status

    run_dirs = [args.run_dir.resolve()] if args.run_dir else (live_run_dirs() or find_run_dirs()[:1])
    if not run_dirs:
        raise RunError("no runs on this machine")
    statuses = [asyncio.run(run_status(run_dir)) for run_dir in run_dirs]
    for status in statuses:
        print(json.dumps(status) if args.json else describe_status(status))
    return exit_codes.EXIT_OK


def cmd_stop(args: argparse.Namespace) -> int:
    from ar_tui.core.control.client import request
    from ar_tui.core.control.detach import wait_for_exit

    run_dir = _live_run_dir(args.run_dir, "stop")
    pid = RunDir(run_dir).engine_pid()
    asyncio.run(request(run_dir, "stop", now=args.now))
    when = "now: the running experiments are aborted" if args.now else "after the running experiments"
    print(f"ar-tui: {run_dir.name} stops {when}")
    if args.wait and pid is not None:
        wait_for_exit(pid)
    return exit_codes.EXIT_OK


def cmd_ls(args: argparse.Namespace) -> int:
    from ar_tui.core.control.client import list_runs
    from ar_tui.headless import runs_table

    print(runs_table(asyncio.run(list_runs())))
    return exit_codes.EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from ar_tui.web.serve import main as serve

    return serve(args.run_dir, args.port)


COMMANDS = {"run": cmd_run, "report": cmd_report, "attach": cmd_attach, "status": cmd_status, "stop": cmd_stop,
            "ls": cmd_ls, "serve": cmd_serve, "notify": cmd_notify, "track": cmd_track, "init": cmd_init,
            "finalize": cmd_finalize}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = ["run", *argv]
    args = build_parser(with_parts=argv[0] == "run").parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ArTuiError as exc:
        return exit_codes.report(exc)


if __name__ == "__main__":
    sys.exit(main())
