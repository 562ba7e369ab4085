"""Wiring an engine from a run's stored options (`ar_tui.run_options`): its
proposer, its executor and the services beside it. Shared by the commands
that open a run (`ar-tui run` in `ar_tui.cli`, `ar-tui finalize --ablate` in
`ar_tui.finalize`), so neither imports the other's module.
"""

from __future__ import annotations

from pathlib import Path

from ar_tui.core.errors import UserError


def make_proposer(run_dir: Path, options):
    from ar_tui.agents.registry import ProposerSettings
    from ar_tui.agents.registry import make_proposer as from_registry

    program = None
    if options.program is not None:
        try:
            program = Path(options.program).read_text(encoding="utf-8")
        except OSError as exc:
            raise UserError(f"program file not readable: {options.program} ({exc.strerror or exc})") from None
    return from_registry(options.agent, ProposerSettings(
        model=options.model, program=program, base_url=options.base_url, seed=options.seed,
        target=Path(options.target), run_dir=run_dir, extra=dict(options.extra)))


def run_services() -> list:
    """What runs beside every engine: its control socket, and the morning
    report once it stops."""
    from ar_tui.core.control.server import control_service
    from ar_tui.report import report_service

    return [control_service, report_service]


def make_engine(run_dir: Path, options, notify_urls: list[str] | None = None, proposer=None, services=None):
    """The engine of a run from its options, with the notifications and the
    tracker beside it; `finalize --ablate` passes a proposer that proposes
    nothing and no services."""
    from ar_tui.core.engine import Engine, EngineOptions
    from ar_tui.core.engine.parts import ENGINE_RUN_OPTIONS
    from ar_tui.core.engine.strategies import settings_for
    from ar_tui.core.executors import make_executor
    from ar_tui.watchers import outside_services

    engine_names = [option.name for option in ENGINE_RUN_OPTIONS] + ["strategy"]
    engine_options = EngineOptions(
        target_dir=Path(options.target),
        tag=options.tag,
        run_dir=run_dir,
        time_budget=options.time_budget,
        max_experiments=options.max_experiments,
        hours=options.hours,
        budget_usd=options.budget_usd,
        attended=options.attended,
        veto_window_s=options.veto_window_s,
        devices=list(options.devices),
        lookahead=options.lookahead,
        baseline_runs=max(1, options.baseline_runs),
        **{name: options.extra[name] for name in engine_names if name in options.extra},
        strategy_options=settings_for(options.extra.get("strategy", ""), options.extra),
    )
    return Engine(engine_options, proposer or make_proposer(run_dir, options),
                  executor=make_executor(options.executor, options.extra),
                  services=(outside_services(notify_urls, options.extra.get("track"), Path(options.target))
                            + run_services()) if services is None else services)
