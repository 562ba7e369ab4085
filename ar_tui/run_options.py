"""How a run was started, kept in its run dir so that it resumes the same way.

The CLI resolves every option of a new run (the target, the agent, the
devices ...), stores them as `options.json` in the run dir before the engine
starts, and a later `ar-tui run --run-dir DIR` with nothing else resumes with
them; so do `attach`'s "resume it" and the detached engine.

Flags given at resume are merged with the stored options by these rules:
- options that decide what the run's experiments mean (`IDENTITY`: the
  target, the tag, the agent and its model, seed, instructions, the baseline
  runs, the training time, the executor) must match, else the resume is
  refused with one line: results under another agent or target would not be
  the same run;
- budgets (`BUDGETS`) may be raised, or set where none was (the new value
  is taken as it is: a lower one only ends the run sooner);
- how the run is watched and scheduled (`ADJUSTABLE`: attended mode, veto
  window, devices, lookahead, the API's address) may change freely;
- `extra` holds options that later parts add (strategy, team, sandbox, the
  GPU price): a key stored with another value is a conflict (its flag is
  `--` and the key), a new key is added; the extra options in
  `ADJUSTABLE_EXTRA` (what the budget covers, a budget's companion) may
  change like a budget. The CLI stores the engine's default for the extra
  options that are engine options, so they bind from the first start.

The stored options bind only once the run has records: a run dir whose first
start was refused (a dirty tree, say) takes the next command's options whole.
Toolkit-free, engine-free.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ar_tui.core.decisions import DEFAULT_BASELINE_RUNS
from ar_tui.core.errors import UserError
from ar_tui.core.rundir import RunDir

IDENTITY = ("target", "tag", "agent", "model", "seed", "baseline_runs", "time_budget", "program", "executor")
BUDGETS = ("max_experiments", "hours", "budget_usd")
ADJUSTABLE = ("attended", "veto_window_s", "devices", "lookahead", "base_url")
# Extra options that may change at resume. `gpu_usd_per_hour` is not among
# them: every row of a run is priced at the rate it started with.
ADJUSTABLE_EXTRA = ("budget_covers", "limit_memory", "limit_processes", "limit_writes")

# The flag that sets each option, for the one line a refusal prints.
FLAGS = {
    "target": "--target", "tag": "--tag", "agent": "--agent", "model": "--model", "seed": "--seed",
    "baseline_runs": "--baseline-runs", "time_budget": "--time-budget", "program": "--program",
    "executor": "--executor", "max_experiments": "--max-experiments", "hours": "--hours",
    "budget_usd": "--budget-usd", "attended": "--attended/--unattended", "veto_window_s": "--veto-window",
    "devices": "--devices/--slots", "lookahead": "--lookahead", "base_url": "--base-url",
}


class OptionConflict(UserError):
    """A flag given at resume contradicts how the run was started."""


@dataclass
class RunOptions:
    target: str | None = None  # resolved target directory
    tag: str | None = None
    agent: str | None = None
    model: str | None = None
    seed: int = 0
    # One default with the engine (8): bench/noise_decisions.py measured 85% power
    # at a 2-sd effect with 8 seed-varied baseline runs against 76% with 5.
    baseline_runs: int = DEFAULT_BASELINE_RUNS
    lookahead: int = 1
    devices: list[str] | None = None  # one slot per entry; None: one per visible GPU, else one CPU slot
    max_experiments: int | None = None
    hours: float | None = None
    budget_usd: float | None = None
    time_budget: float | None = None
    attended: bool = True
    veto_window_s: float = 60.0
    program: str | None = None  # resolved instructions file, for agents that read one
    base_url: str | None = None
    executor: str = "local"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunOptions":
        """Unknown keys (a newer ar-tui's) are ignored, missing ones take defaults."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def load(run_dir: Path) -> RunOptions | None:
    """The options stored in `run_dir`, or None. A run dir from before options
    were stored gives what its last RunStarted event recorded."""
    paths = RunDir(run_dir)
    try:
        data = json.loads(paths.options.read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError):
        return _from_history(paths)
    except (OSError, ValueError) as exc:
        raise UserError(f"{paths.options}: cannot read the stored run options ({exc})") from None
    if not isinstance(data, dict):
        raise UserError(f"{paths.options}: the stored run options are not a JSON object")
    return RunOptions.from_dict(data)


def save(run_dir: Path, options: RunOptions) -> None:
    """Replace options.json atomically (a crash leaves the old or the new)."""
    paths = RunDir(run_dir)
    temporary = paths.options.with_name(paths.options.name + ".tmp")
    try:
        paths.path.mkdir(parents=True, exist_ok=True)
        temporary.write_text(json.dumps(options.to_dict(), indent=2) + "\n", encoding="utf-8")
        os.replace(temporary, paths.options)
    except OSError as exc:
        raise UserError(f"{paths.path}: run dir not writable ({exc.strerror or exc})") from None


def _from_history(paths: RunDir) -> RunOptions | None:
    from ar_tui.core import events as ev
    from ar_tui.core.ledger import read_events

    started = None
    for event in read_events(paths.events):
        if isinstance(event, ev.RunStarted):
            started = event
    if started is None:
        return None
    return RunOptions(
        target=started.target, tag=started.tag, agent=started.agent, model=started.model or None,
        lookahead=started.lookahead, devices=list(started.slots), max_experiments=started.max_experiments,
        hours=started.hours, budget_usd=started.budget_usd, time_budget=started.time_budget_s,
        attended=started.attended, veto_window_s=started.veto_window_s,
    )


def merge(stored: RunOptions | None, given: dict[str, Any], defaults: dict[str, Any] | None = None,
          *, binding: bool, where: str = "this run") -> RunOptions:
    """The options to run with: `given` (only the flags the user typed, as
    RunOptions field names) over `stored` over `defaults`. With `binding`
    (the run has records) a given option that contradicts the stored one is
    refused by the rules above; raises OptionConflict."""
    given = dict(given)
    given_extra = dict(given.pop("extra", None) or {})
    unknown = set(given) - {f.name for f in dataclasses.fields(RunOptions)}
    if unknown:
        raise ValueError(f"not run options: {', '.join(sorted(unknown))}")
    base = RunOptions().to_dict()
    base.update(defaults or {})
    if stored is not None:
        base.update(stored.to_dict())
    if stored is not None and binding:
        for name in IDENTITY:
            if name in given and given[name] != base[name]:
                raise OptionConflict(
                    f"{where} was started with {_shown(name, base[name])}, not {_shown(name, given[name])}; "
                    f"resume it without {FLAGS[name].split('/')[0]}, or start a new run with another --run-dir")
        for key, value in given_extra.items():
            if key in base["extra"] and base["extra"][key] != value and key not in ADJUSTABLE_EXTRA:
                # An extra option is set by the flag of its name (argparse's dest).
                flag = "--" + key.replace("_", "-")
                raise OptionConflict(f"{where} was started with {flag} {base['extra'][key]}, not {flag} {value}; "
                                     f"resume it without {flag}, or start a new run with another --run-dir")
    base.update(given)
    base["extra"] = {**base["extra"], **given_extra}
    return RunOptions.from_dict(base)


def _shown(name: str, value: Any) -> str:
    flag = FLAGS[name].split("/")[0]
    if value is None:
        return f"no {flag}"
    if isinstance(value, list):
        value = ",".join(str(v) for v in value)
    return f"{flag} {value}"
