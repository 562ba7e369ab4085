"""Text for a terminal without the app: the line-per-experiment printer of
`ar-tui run --headless` (and of a detached engine's engine.out), the one line
of `ar-tui status`, and the table of `ar-tui ls`.

Toolkit-free, and free of the engine and GitPython: `status` and `ls` import
this and nothing heavier.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any, TextIO

from ar_tui import formatting as fmt
from ar_tui.core import events as ev
from ar_tui.core.control.client import STATE_DEAD
from ar_tui.core.records.rundir import RunDir


def open_app_command(run_dir: Path) -> str:
    """The one command that opens the app on this run: it resumes a stopped
    run with its stored options, and shows a finished one."""
    return f"ar-tui run --run-dir {shlex.quote(str(run_dir))}"


def is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or a bare stream
        return False


class HeadlessPrinter:
    """Prints a line per experiment: the headless observer of the engine.
    On a terminal the running experiment's progress also shows, on one
    updating line under them (`ar_tui.progress_line`); to a file or a pipe,
    plain lines only."""

    def __init__(self, stream: TextIO | None = None, live: bool | None = None) -> None:
        self.stream = stream
        self.live = is_terminal(stream or sys.stdout) if live is None else live
        self.progress_line = None
        if self.live:
            from ar_tui.progress_line import ProgressLine

            self.progress_line = ProgressLine(stream or sys.stdout)

    def __call__(self, event: ev.Event) -> None:
        line = self.format(event)
        if self.progress_line is not None:
            if isinstance(event, ev.RunStopped):
                self.progress_line.stop()  # the summary goes below, with no line left drawn
            if line:
                self.progress_line.print(line)
            self.progress_line.observe(event)
        elif line:
            print(line, file=self.stream or sys.stdout, flush=True)

    @staticmethod
    def format(event: ev.Event) -> str | None:
        if isinstance(event, ev.RunStarted):
            mode = "attended" if event.attended else "unattended"
            verb = "resuming" if event.resumed else "starting"
            return (f"ar-tui: {verb} run {event.tag} on {event.target} ({event.agent}, {mode}, "
                    f"slots {', '.join(event.slots)}); run dir {event.run_dir}"
                    + (f"; {event.sandbox}" if event.sandbox else "")
                    + (f"\n{event.python}" if event.python else "")
                    + (f"\n{event.limits}" if event.limits else ""))
        if isinstance(event, ev.LogLine) and event.text.startswith(ev.PREPARE_LOG_PREFIX):
            return event.text if event.text[len(ev.PREPARE_LOG_PREFIX):].strip() else None
        if isinstance(event, ev.BaselineReady):
            runs = f" (exp 0, the mean of {len(event.runs)} seed-varied runs)" if len(event.runs) > 1 else ""
            return f"baseline: {fmt.metric(event.metric)}{runs}"
        if isinstance(event, ev.ExperimentStarted):
            count = f" (repeat {event.repeat} of {event.repeats})" if event.repeats else ""
            if event.exp == 0 and event.description != "baseline":
                # The best's confirmation: the description names the experiment it confirms, and why.
                return f"{event.description} [slot {event.slot}]{count}"
            again = f" (run {event.attempt})" if event.attempt > 1 and not event.repeats else ""
            return f"exp {event.exp}{again} [slot {event.slot}] running: {event.description}{count}"
        if isinstance(event, ev.Decision):
            return f"exp {event.exp} {event.status.upper():7s} {fmt.metric(event.metric)}  {event.description}  ({event.rule})"
        if isinstance(event, ev.ProposalFailed):
            return f"exp {event.exp} proposal failed: {event.reason}"
        if isinstance(event, ev.ApiWaiting):
            about = f"exp {event.exp} " if event.exp is not None else ""
            return f"{about}waiting for the API ({event.reason}); retrying in {event.retry_in_s:.0f} s"
        if isinstance(event, ev.Notice) and event.level in ("warning", "error"):
            return f"{event.level}: {event.message}"
        if isinstance(event, ev.Delivery):
            return f"warning: a message to {event.destination} was not delivered ({event.reason}); {event.undelivered} in all"
        if isinstance(event, ev.Plateau):
            return plateau_line(event)
        if isinstance(event, ev.VetoWindow):
            return f"exp {event.exp} waits {event.seconds:g} s for a veto"
        if isinstance(event, ev.RunStopped):
            gain = fmt.percent(event.improvement_pct)
            if event.improvement_text and event.improvement_ci_pct is not None:
                gain = event.improvement_text  # "2.1% better (95% interval 1.4% to 2.8%)"
            if event.experiments and not event.kept:
                # The best is the baseline: an interval of its runs against themselves says nothing.
                gain = "none (no change was kept; the best is the baseline)"
            if event.noise_sd is not None:
                gain += f"  noise sd {event.noise_sd:.6f} ({event.noise_dof} dof)"
                if event.noise_jitter_only:
                    gain += ": jitter only (the target ignores AR_SEED; set [metric] min_effect)"
            return (f"stopped: {event.reason}\nexperiments: {event.experiments}  kept: {event.kept}  "
                    f"best: {fmt.metric(event.best_metric)}  "
                    f"improvement over baseline: {gain}  "
                    f"cost: {fmt.exact_dollars(event.cost_usd)}\n{whole_cost(event)}")
        return None


def plateau_line(event: ev.Plateau) -> str:
    """The line that announces a plateau: N, how it was derived, what was done."""
    return (f"plateau: no keep in the last {event.window} decided experiments (N = {event.window}: {event.why}); "
            f"{event.action or 'no --on-plateau'}: {event.done}")


def finalize_hint(run_dir: Path) -> str:
    """What to do with a finished night: a branch to merge, checked change by change."""
    return (f"next: ar-tui finalize {shlex.quote(str(run_dir))} --ablate  "
            "(a clean branch and PR.md; which changes still matter on top of the others)")


def whole_cost(stopped: ev.RunStopped) -> str:
    """The night's tokens, GPU time and their sum, for the night, per
    experiment and per kept improvement."""
    hours = stopped.gpu_seconds / 3600
    gpu_time = f"{hours:.2f} GPU-hours" if hours >= 0.01 else f"{stopped.gpu_seconds:.0f} GPU-seconds"
    total = stopped.cost_usd + (stopped.gpu_cost_usd or 0.0)
    if stopped.gpu_cost_usd is None:
        line = f"whole cost: tokens {fmt.exact_dollars(stopped.cost_usd)}; GPU {gpu_time}, not priced (--gpu-usd-per-hour)"
    else:
        line = (f"whole cost: tokens {fmt.exact_dollars(stopped.cost_usd)} + GPU {fmt.exact_dollars(stopped.gpu_cost_usd)}"
                f" ({gpu_time}) = {fmt.exact_dollars(total)}")
    per = [f"per {what} {fmt.exact_dollars(total / count)}"
           for what, count in (("experiment", stopped.experiments), ("kept improvement", stopped.kept)) if count]
    return line + (f"; {', '.join(per)}" if per else "")


def where_to_look(run_dir: Path, kept: bool = True) -> str:
    """What a person reads after a headless run: where the report and the
    chart are (those that were written), how to see the run in the app, and,
    when it kept something, how to turn that into a branch to merge."""
    paths = RunDir(run_dir)
    lines = [f"{label}: {path}" for label, path in (("report", paths.report), ("chart", paths.chart))
             if path.is_file()]
    # There is no viewer for a stopped run but the app on a resumed one: say so.
    lines.append(f"open it in the app (it goes on if a budget is left): {open_app_command(paths.path)}")
    if kept and paths.ledger.is_file():
        lines.append(finalize_hint(paths.path))
    return "\n".join(lines)


# ---------------------------------------------------------------------- status and ls


def headline_state(status: dict[str, Any]) -> str:
    """One word for a run: the engine's own state says `idle` while its slots
    train, which is not what a person asking means."""
    state = status.get("state") or "?"
    if state in (STATE_DEAD, ev.STATE_STOPPED, ev.STATE_STOPPING):
        return state
    if status.get("paused"):
        return ev.STATE_PAUSED
    busy = [s["state"] for s in status.get("slots") or () if s.get("state") != ev.STATE_IDLE]
    if state in (ev.STATE_IDLE, ev.STATE_PROPOSING) and busy:
        return busy[0]
    return state


def describe_status(status: dict[str, Any]) -> str:
    """The one line `ar-tui status` prints."""
    parts = [status.get("tag") or Path(status.get("run_dir", "")).name, headline_state(status)]
    if status.get("experiment") is not None and status.get("live"):
        parts.append(f"exp {status['experiment']}")
    parts.append(f"{status.get('experiments', 0)} done, {status.get('kept', 0)} kept")
    metric = status.get("metric") or "metric"
    if status.get("best") is not None:
        best = f"best {metric} {fmt.metric(status['best'])}"
        if status.get("improvement_pct") is not None:
            best += f" ({fmt.percent(status['improvement_pct'])} vs baseline {fmt.metric(status.get('baseline'))})"
        parts.append(best)
    cost = f"${status.get('cost_usd', 0.0):.2f}"
    if status.get("gpu_cost_usd") is not None:
        cost += f" tokens + ${status['gpu_cost_usd']:.2f} GPU"
    parts.append(cost)
    if status.get("noise_sd") is not None:
        parts.append(f"noise sd {fmt.metric(status['noise_sd'])} ({status.get('noise_dof', 0)} dof)"
                     + (", jitter only: the target ignores AR_SEED" if status.get("noise_jitter_only") else ""))
    if status.get("unconfined"):
        parts.append(f"WARNING {status.get('unconfined_where') or status['sandbox']}")
    if status.get("capacity") and status.get("live"):
        parts.append(f"WARNING {status['capacity']}")
    slots = status.get("slots") or []
    if slots and status.get("live"):
        parts.append("slots " + ", ".join(
            f"{s['device']} {s['state']}" + (f" exp {s['exp']}" if s.get("exp") is not None else "") for s in slots))
    if status.get("stopped_reason"):
        parts.append(f"stopped: {status['stopped_reason']}")
    if status.get("state") == STATE_DEAD:
        parts.append(f"the engine died; `{open_app_command(Path(status.get('run_dir', '.')))} --headless` resumes it")
    return "  ".join(parts)


def runs_table(runs: list[dict[str, Any]]) -> str:
    """The table `ar-tui ls` prints, one run a line."""
    if not runs:
        return "no runs on this machine"
    lines = [f"{'TAG':16} {'STATE':12} {'EXPS':>5} {'KEPT':>5} {'BEST':>10}  RUN DIR"]
    for run in runs:
        lines.append(f"{(run['tag'] or '?')[:16]:16} {headline_state(run):12} {run['experiments']:5d} "
                     f"{run['kept']:5d} {fmt.metric(run.get('best')):>10}  {run['run_dir']}")
    return "\n".join(lines)
