"""The cost meter: tokens, GPU time and their sum, per experiment and per kept
improvement, split by role and by model; against the scripted handle, waiting
on what the pane shows, never on time."""

from __future__ import annotations

from rich.console import Console

from ar_tui.core import events as ev
from ar_tui.ui.app import ArTuiApp
from tests.ui.helpers import until
from tests.ui.scripted_handle import T0, ScriptedHandle, gpu_usd, session_events


def plain(widget) -> str:
    console = Console(width=120, color_system=None)
    with console.capture() as capture:
        console.print(widget.content)
    return capture.get()


def usage(role: str, model: str, cost: float, total: float) -> ev.Usage:
    return ev.Usage(exp=4, model=model, input_tokens=100, output_tokens=10, cache_write_5m_tokens=0,
                    cache_write_1h_tokens=0, cache_read_tokens=0, cost_usd=cost, total_cost_usd=total,
                    total_input_tokens=15300, total_output_tokens=4110, total_cache_write_tokens=21000,
                    total_cache_read_tokens=160000, role=role, ts=T0 + 320)


async def test_the_meter_shows_the_whole_cost_and_splits_it_by_role_and_model() -> None:
    handle = ScriptedHandle()
    app = ArTuiApp(handle, replay=session_events(), clock=lambda: T0 + 330, machine_sampler=lambda: ["cpu"])
    async with app.run_test(size=(200, 60)) as pilot:
        # The scripted night: $0.42 of tokens and 160 GPU-seconds at $2.50/h.
        gpu = gpu_usd(160)
        await until(pilot, lambda: f"${0.42 + gpu:.3f} = tokens $0.420 + GPU ${gpu:.3f}" in plain(app.cost_meter),
                    timeout=5, what="the whole cost")
        shown = plain(app.cost_meter)
        assert f"per exp  ${(0.42 + gpu) / 3:.3f} (tokens $0.140, GPU ${gpu / 3:.3f})" in shown
        assert f"per keep ${0.42 + gpu:.3f}" in shown
        assert "by role" not in shown  # one agent: nothing to split
        assert "by model sonnet-4-5 $0.420" in shown

        handle.emit(usage("planner", "claude-opus-4-5", 0.25, 0.67), usage("worker", "claude-haiku-4-5", 0.02, 0.69))
        await until(pilot, lambda: "by role" in plain(app.cost_meter), timeout=5, what="the split by role")
        shown = plain(app.cost_meter)
        assert "by role  agent $0.420  planner $0.250  worker $0.020" in shown
        assert "by model haiku-4-5 $0.020  opus-4-5 $0.250  sonnet-4-5 $0.420" in shown
        # A run's end adds its GPU time.
        handle.emit(ev.ExperimentFinished(exp=4, slot=0, outcome=ev.OUTCOME_OK, metric=1.2, reported_metric=1.2,
                                          memory_gb=2.0, seconds=200, exit_code=0, held_seconds=200, gpu_seconds=200,
                                          gpu_usd=gpu_usd(200), total_gpu_seconds=360, total_gpu_usd=gpu_usd(360),
                                          ts=T0 + 330))
        await until(pilot, lambda: f"GPU ${gpu_usd(360):.3f}" in plain(app.cost_meter), timeout=5,
                    what="the new GPU total")
        assert "0.10 GPU-h at $2.500/h" in plain(app.cost_meter)
