"""The Textual app: a thin observer of the engine.

Events flow one way, from the engine into a `RunView` and a few bounded
buffers; a timer draws whatever changed at a fixed rate, so a flood of
training output costs the screen nothing extra. Human decisions go back as
calls on the `EngineHandle` (pause, veto, keep ...), and the engine answers
with events like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Container
from textual.widgets import Footer, Tab, Tabs
from textual.worker import Worker, WorkerState

from ar_tui import exit_codes
from ar_tui.core import events as ev
from ar_tui.core.control.handle import EngineHandle
from ar_tui.core.control.view import RunView
from ar_tui.headless import finalize_hint, plateau_line
from ar_tui.signals import install_stop_signals
from ar_tui.ui.agent_pane import AgentPane
from ar_tui.ui.confirm_screen import ConfirmScreen
from ar_tui.ui.cost_meter import CostMeter
from ar_tui.ui.diff_pane import DiffPane
from ar_tui.ui.help_screen import HelpScreen
from ar_tui.ui.lineage_tree import LineageTree
from ar_tui.ui.log_buffer import DEFAULT_MAX_LINES, LogBuffer
from ar_tui.ui.log_pane import TrainingLog
from ar_tui.ui.machine_pane import MachinePane, Sampler
from ar_tui.ui.metric_pane import MetricPane
from ar_tui.ui.status_line import StatusLine
from ar_tui.ui.veto_banner import VetoBanner

# (id, tab label); the number keys follow this order.
PANES = [
    ("agent", "agent"),
    ("log", "log"),
    ("diff", "diff"),
    ("metric", "metric"),
    ("cost", "cost"),
    ("machine", "machine"),
    ("tree", "tree"),
]

# Events after which the footer's enabled keys may change.
_BINDING_EVENTS = (
    ev.RunStarted, ev.StateChanged, ev.ModeChanged, ev.Paused, ev.ProposalReady, ev.VetoWindow,
    ev.ExperimentStarted, ev.ExperimentFinished, ev.Decision, ev.RunStopped,
)

# The actions whose state the footer shows (see check_action).
_FOOTER_ACTIONS = [("toggle_pause", ()), ("veto", ()), ("force_keep", ()), ("toggle_attended", ()),
                   ("start_now", ()), ("next_slot", ())]

# Reading the tail of a log file when attaching: enough for a full pane.
_LOG_TAIL_BYTES = 256 * 1024


class ArTuiApp(App[Any]):
    CSS_PATH = "app.tcss"
    TITLE = "ar-tui"
    # The footer needs every column at 80x24 for the keys that matter.
    ENABLE_COMMAND_PALETTE = False
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide"), (160, "-xwide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (36, "-tall")]

    BINDINGS = [
        # One binding per key with a fixed label: a label that changed with
        # the state would rebuild the footer on every press (~100 ms at 200x60);
        # the status line says whether the run is paused, and which mode.
        Binding("p", "toggle_pause", "pause/resume"),
        Binding("v", "veto", "veto"),
        Binding("k", "force_keep", "keep"),
        Binding("a", "toggle_attended", "mode"),
        # Priority, so that a focused table does not swallow it; it is
        # disabled outside a veto window and then reaches the widget.
        Binding("enter", "start_now", "start now", priority=True),
        Binding("s", "next_slot", "slot"),
        Binding("q", "request_quit", "quit"),
        Binding("ctrl+q", "request_quit", "quit", show=False, priority=True),
        # In a terminal app ctrl+c is a key, not a signal; people press it to leave.
        Binding("ctrl+c", "request_quit", "quit", show=False, priority=True),
        Binding("question_mark", "help", "help", key_display="?"),
        *[
            Binding(str(number), f"show_pane('{name}')", label, show=False)
            for number, (name, label) in enumerate(PANES, 1)
        ],
    ]

    def __init__(
        self,
        handle: EngineHandle,
        *,
        run_engine: Callable[[], Awaitable[Any]] | None = None,
        replay: Iterable[ev.Event] = (),
        log_dir: Path | None = None,
        clock: Callable[[], float] = time.time,
        machine_sampler: Sampler | None = None,
        refresh_hz: float = 10.0,
        log_lines: int = DEFAULT_MAX_LINES,
    ) -> None:
        super().__init__()
        self.handle = handle
        self.view = RunView()
        self.logs = LogBuffer(log_lines)
        self.engine_result: Any = None
        self.engine_error: BaseException | None = None
        self.observer_errors = 0
        self._run_engine = run_engine
        self._replay = list(replay)
        self._log_dir = Path(log_dir) if log_dir is not None else None
        self._clock = clock
        self._machine_sampler = machine_sampler
        self._refresh_interval = 1.0 / refresh_hz
        self._slot_index = 0
        self._active_pane = "agent"
        self._started: dict[int, ev.ExperimentStarted] = {}
        self._view_dirty = True
        self._bindings_dirty = True
        self._footer_states: tuple = ()
        self._tick = 0  # redraws so far; tests wait on it (see `redraws`)
        self._engine_running = False
        self._stop_requested = False
        self._unsubscribe: Callable[[], None] | None = None
        self._ui_loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        yield StatusLine(id="status")
        yield VetoBanner(id="veto-banner")
        yield Tabs(*[Tab(f"{n} {label}", id=f"tab-{name}") for n, (name, label) in enumerate(PANES, 1)],
                   id="pane-tabs")
        with Container(id="panes"):
            yield AgentPane(id="agent", classes="pane -shown")
            yield TrainingLog(self.logs, id="log", classes="pane")
            yield MetricPane(id="metric", classes="pane")
            yield DiffPane(id="diff", classes="pane")
            yield LineageTree(id="tree", classes="pane")
            yield CostMeter(id="cost", classes="pane")
            yield MachinePane(self._machine_sampler, id="machine", classes="pane")
        yield Footer()

    def on_mount(self) -> None:
        self.agent_pane = self.query_one(AgentPane)
        self.training_log = self.query_one(TrainingLog)
        self.diff_pane = self.query_one(DiffPane)
        self.metric_pane = self.query_one(MetricPane)
        self.cost_meter = self.query_one(CostMeter)
        self.lineage_tree = self.query_one(LineageTree)
        self.status_line = self.query_one(StatusLine)
        self.veto_banner = self.query_one(VetoBanner)
        for name, label in PANES:
            self.query_one(f"#{name}").border_title = label
        self._ui_loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        for event in self._replay:
            self._ingest(event)
        self._preload_running_logs()
        self._unsubscribe = self.handle.subscribe(self._observe)
        self._redraw()
        self.set_interval(self._refresh_interval, self._redraw)
        if self._run_engine is not None:
            self._engine_running = True
            self._engine_worker()

    def on_unmount(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    # ------------------------------------------------------------------ engine

    @work(exclusive=True, exit_on_error=False, group="engine")
    async def _engine_worker(self) -> Any:
        assert self._run_engine is not None
        return await self._run_engine()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "engine":
            return
        if event.state == WorkerState.SUCCESS:
            self._engine_running = False
            self.engine_result = event.worker.result
            self.exit(self.engine_result)
        elif event.state == WorkerState.ERROR:
            self._engine_running = False
            self.engine_error = event.worker.error
            if self.view.started_at is None:
                # Refused before it started (bad input): nothing to watch, and
                # the caller prints the one-line reason.
                self.exit(None)
                return
            # Stay open: whoever comes back to the terminal in the morning
            # should see what stopped the run; q then leaves at once.
            message = f"the engine stopped with an error: {self.engine_error!r}"
            self.agent_pane.add_line(message, style="bold red")
            self.notify(message, severity="error", timeout=30)
            self._bindings_dirty = True
        elif event.state == WorkerState.CANCELLED:
            self._engine_running = False

    def _observe(self, event: ev.Event) -> None:
        """The engine's observer. Local engines call it on the app's own loop;
        anything else is handed over to that loop."""
        if threading.get_ident() == self._loop_thread:
            if type(event) is ev.LogLine:  # the flood: straight into the bounded buffer
                self.logs.add(event.slot, event.exp, event.text, event.replace)
            else:
                self._ingest(event)
        elif self._ui_loop is not None and not self._ui_loop.is_closed():
            self._ui_loop.call_soon_threadsafe(self._ingest, event)

    def _ingest(self, event: ev.Event) -> None:
        # Runs inside the engine's emit: it must be cheap and must not raise.
        try:
            if isinstance(event, ev.LogLine):
                self.logs.add(event.slot, event.exp, event.text, event.replace)
                return
            self.view.apply(event)
            self._view_dirty = True
            if isinstance(event, _BINDING_EVENTS):
                self._bindings_dirty = True
            self._route(event)
        except Exception as exc:  # a drawing bug must never stop the research
            self.observer_errors += 1
            self.log.error(f"observer failed on {event.kind}: {exc!r}")

    def _route(self, event: ev.Event) -> None:
        agent = self.agent_pane
        if isinstance(event, ev.AgentText):
            agent.add_text(event)
        elif isinstance(event, ev.AgentToolCall):
            agent.add_tool_call(event)
        elif isinstance(event, ev.ProposalStarted):
            agent.begin(event)
        elif isinstance(event, ev.ProposalReady):
            agent.add_line(f"proposal for exp {event.exp}: {event.description}", style="bold")
        elif isinstance(event, ev.ProposalFailed):
            agent.add_line(f"proposal for exp {event.exp} failed: {event.reason}", style="bold red")
        elif isinstance(event, ev.ApiWaiting):
            agent.add_line(f"waiting for the API: {event.reason}; retry in {event.retry_in_s:.0f} s "
                           f"(attempt {event.attempt})", style="yellow")
        elif isinstance(event, ev.ExperimentStarted):
            self._started[event.exp] = event
            self.logs.start(event.slot, event.exp)
        elif isinstance(event, ev.Decision) and event.status != "rerun":
            forced = " (forced)" if event.forced else ""
            agent.add_line(f"exp {event.exp}: {event.status}{forced}, {event.rule}", style="dim")
        elif isinstance(event, ev.Notice):
            style = {"error": "bold red", "warning": "yellow"}.get(event.level, "dim")
            agent.add_line(f"{event.level}: {event.message}", style=style)
        elif isinstance(event, ev.RunStopped):
            agent.add_line(f"run stopped: {event.reason}", style="bold")
            if event.kept and not event.error and self.view.run_dir:
                agent.add_line(finalize_hint(Path(self.view.run_dir)), style="bold")
        elif isinstance(event, ev.Plateau):
            agent.add_line(plateau_line(event), style="bold yellow")

    def _preload_running_logs(self) -> None:
        """An attached or resumed app sees the running experiment's output so far."""
        for slot in self.view.slots:
            if slot.exp is None or slot.state != ev.STATE_RUNNING:
                continue
            started = self._started.get(slot.exp)
            path = Path(started.log_path) if started and started.log_path else None
            if (path is None or not path.is_file()) and self._log_dir is not None:
                path = self._log_dir / f"{slot.exp}.log"
            if path is None or not path.is_file():
                continue
            with path.open("rb") as handle:
                handle.seek(max(0, path.stat().st_size - _LOG_TAIL_BYTES))
                tail = handle.read().decode("utf-8", errors="replace")
            self.logs.start(slot.index, slot.exp)
            for line in tail.replace("\r\n", "\n").split("\n"):
                # A '\r' progress line shows its last state only.
                self.logs.add(slot.index, slot.exp, line.rsplit("\r", 1)[-1])

    # ------------------------------------------------------------------ drawing

    @property
    def redraws(self) -> int:
        """How many redraws have run. Everything ingested before redraw n is
        on screen once n + 3 have run (the agent pane syncs every third), so
        a test can wait for what it reads instead of sleeping."""
        return self._tick

    def _redraw(self) -> None:
        now = self._clock()
        view = self.view
        self.training_log.sync()
        self._tick += 1
        if self._tick % 3 == 0:
            # Streamed text re-wraps the whole pane (a relayout): 5 Hz reads
            # as live, and leaves the loop free for keys.
            self.agent_pane.sync()
        self.status_line.show(view, self._slot_index, now)
        self.veto_banner.show(view, self._slot_index, now)
        if self._view_dirty:
            self._view_dirty = False
            self.metric_pane.show(view)
            self.lineage_tree.show_rows(view.rows, view.best_exp)
            self.cost_meter.show(view)
            self.diff_pane.show(*self.view.current_diff(self._slot_index))
            self._title_log()
        if self._bindings_dirty:
            self._bindings_dirty = False
            # The footer rebuilds itself on every refresh_bindings (~100 ms at
            # 200x60): only when a key's state really changed.
            states = tuple(self.check_action(action, params) for action, params in _FOOTER_ACTIONS)
            if states != self._footer_states:
                self._footer_states = states
                self.refresh_bindings()

    def _focused_slot(self):
        slots = self.view.slots
        return slots[self._slot_index] if 0 <= self._slot_index < len(slots) else None

    def _title_log(self) -> None:
        slot = self._focused_slot()
        exp = self.logs.slot(self._slot_index).exp
        where = f"slot {self._slot_index} ({slot.device})" if slot is not None else f"slot {self._slot_index}"
        self.training_log.border_title = f"log · exp {exp} · {where}" if exp is not None else f"log · {where}"
        exp_shown = self.diff_pane.shown[0] if self.diff_pane.shown else None
        self.diff_pane.border_title = f"diff · exp {exp_shown}" if exp_shown is not None else "diff"

    # ------------------------------------------------------------------ keys

    def _live(self) -> bool:
        return self.view.stopped is None and self.engine_error is None and not self._stop_requested

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # True: enabled; None: shown greyed out; False: hidden (the other
        # binding of the same key applies).
        if action in ("request_quit", "help", "show_pane"):
            return True
        if action == "next_slot":
            return len(self.view.slots) > 1
        if self.screen is not self.screen_stack[0]:
            return None
        view = self.view
        if action in ("toggle_pause", "toggle_attended"):
            return True if self._live() else None
        if action == "veto":
            return True if self._live() and self.view.veto_target(self._slot_index) is not None else None
        if action == "force_keep":
            return True if self._live() and self.view.running_exp(self._slot_index) is not None else None
        if action == "start_now":
            slot = self._focused_slot()
            return True if self._live() and slot is not None and slot.state == ev.STATE_VETO_WINDOW else None
        return True

    def action_toggle_pause(self) -> None:
        if self.view.paused:
            self.handle.resume()
        else:
            self.handle.pause()

    def action_toggle_attended(self) -> None:
        self.handle.set_attended(not self.view.attended)

    def action_start_now(self) -> None:
        slot = self._focused_slot()
        if slot is not None and slot.exp is not None and not self.handle.start_now(slot.exp):
            self.notify(f"experiment {slot.exp} is no longer waiting", severity="warning")

    def action_force_keep(self) -> None:
        exp = self.view.running_exp(self._slot_index)
        if exp is None:
            return
        if self.handle.force_keep(exp):
            self.notify(f"experiment {exp} will be kept whatever its metric, unless it crashes")
        else:
            self.notify(f"experiment {exp} can no longer be kept", severity="warning")

    def action_veto(self) -> None:
        target = self.view.veto_target(self._slot_index)
        if target is None:
            return
        exp, consequence = target
        ready = self.view.proposals.get(exp)
        description = ready.description if ready else ""

        def answered(yes: bool | None) -> None:
            if yes and not self.handle.veto(exp):
                self.notify(f"experiment {exp}: nothing left to veto", severity="warning")

        self.push_screen(
            ConfirmScreen(
                f"Veto experiment {exp}?",
                f"{description}\n\n{consequence}; results.tsv records it with status veto.",
                yes="Veto",
                no="Cancel",
            ),
            answered,
        )

    def action_next_slot(self) -> None:
        if len(self.view.slots) > 1:
            self._slot_index = (self._slot_index + 1) % len(self.view.slots)
            self.training_log.show_slot(self._slot_index)
            self._view_dirty = self._bindings_dirty = True

    def action_show_pane(self, name: str) -> None:
        self.query_one("#pane-tabs", Tabs).active = f"tab-{name}"

    def on_tabs_tab_activated(self, event: Tabs.TabActivated) -> None:
        if event.tab is None or event.tab.id is None:
            return
        name = event.tab.id.removeprefix("tab-")
        for pane_name, _ in PANES:
            self.query_one(f"#{pane_name}").set_class(pane_name == name, "-shown")
        self._active_pane = name
        pane = self.query_one(f"#{name}")
        target = pane.query_one("ResultsTable") if name == "metric" else pane
        if target.can_focus:
            target.focus()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_request_quit(self) -> None:
        if isinstance(self.screen, ConfirmScreen):
            return
        if not self._engine_running:
            if self._run_engine is not None or self.engine_error is not None or self.view.stopped is not None:
                self.exit(self.engine_result)
                return
            self.push_screen(
                ConfirmScreen("Leave?", "The run goes on without this view; attach again to watch it.",
                              yes="Leave", no="Stay"),
                lambda yes: self.exit() if yes else None,
            )
            return
        if self._stop_requested:
            self.push_screen(
                ConfirmScreen("Quit without waiting?",
                              "The engine is still stopping. Quitting now interrupts it; the run can still "
                              f"be resumed with its tag ({self.view.tag}).", yes="Quit", no="Wait"),
                lambda yes: self.exit(self.engine_result) if yes else None,
            )
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._stop_requested = True
                self._bindings_dirty = True
                self.handle.request_stop(now=True)
                self.notify("stopping: the running experiments are aborted, then the app exits")

        self.push_screen(
            ConfirmScreen(
                "Stop the run and quit?",
                "Running experiments are aborted and not recorded. Everything decided so far is kept, "
                f"and the run can be resumed: run the same command again (tag {self.view.tag}); the "
                "aborted experiments run again first.",
                yes="Stop and quit",
                no="Keep running",
            ),
            answered,
        )

    async def action_quit(self) -> None:
        # ctrl+q and the command palette go through the same confirmation.
        self.action_request_quit()


def run_app(engine: Any) -> int:
    """`ar-tui run` without --headless: the engine runs inside the app. A
    resumed run's history comes from its events.jsonl, so it shows at once."""
    from ar_tui.core.records.ledger import read_events
    from ar_tui.core.records.rundir import RunDir

    run_dir = RunDir(engine.options.run_dir)
    app = ArTuiApp(engine, run_engine=engine.run, replay=read_events(run_dir.events), log_dir=run_dir.logs)
    if sys.platform != "win32":
        from ar_tui.ui.hangup_driver import HangupSafeDriver, on_hangup

        app.driver_class = HangupSafeDriver

    async def main() -> None:
        # SIGTERM, SIGHUP (the SSH connection dropped): stop cleanly, and the
        # app leaves when the engine has saved its state.
        install_stop_signals(engine)
        if sys.platform != "win32":
            on_hangup(asyncio.get_running_loop(), lambda: engine.request_stop(True))
        await app.run_async()

    asyncio.run(main())
    # After a hang-up the terminal is gone: the run is saved and nobody reads this.
    with contextlib.suppress(OSError):
        _print_outcome(app)
    return _exit_code(app)


def _exit_code(app: "ArTuiApp") -> int:
    # A clean stop, or left while the engine was still stopping (a second q), is 0.
    stopped = app.engine_result if isinstance(app.engine_result, ev.RunStopped) else None
    return exit_codes.exit_code(app.engine_error, stopped)


def _print_outcome(app: "ArTuiApp") -> None:
    error = app.engine_error
    if error is not None:
        exit_codes.report(error)
    elif isinstance(app.engine_result, ev.RunStopped):
        stopped = app.engine_result
        print(f"ar-tui: {stopped.reason}; {stopped.experiments} experiments, {stopped.kept} kept, "
              f"best {stopped.best_metric}", file=sys.stderr if stopped.error else sys.stdout)
