"""The app shows the noise behind its decisions: the sd with its degrees of
freedom, the band, and a mark when the target ignores its seed."""

from __future__ import annotations

from ar_tui.core import events as ev
from ar_tui.ui.app import ArTuiApp
from tests.ui.helpers import redrawn, until
from tests.ui.scripted_handle import T0, ScriptedHandle, session_events


def summary_text(app: ArTuiApp) -> str:
    return str(app.metric_pane.summary.content)


async def test_the_metric_pane_shows_the_noise_and_flags_a_target_that_ignores_its_seed() -> None:
    handle = ScriptedHandle()
    app = ArTuiApp(handle, replay=session_events(), clock=lambda: T0 + 330, machine_sampler=lambda: ["cpu"])
    async with app.run_test(size=(200, 60)) as pilot:
        await redrawn(pilot)
        assert "noise: not measured yet" in summary_text(app)
        handle.emit(ev.NoiseEstimate(sd=0.012498, samples=8, band=0.031042, dof=6, confidence=0.95))
        await until(pilot, lambda: "noise sd 0.012498 (6 dof) · band 0.031042" in summary_text(app),
                    timeout=10, what="the noise estimate on screen")
        assert "JITTER ONLY" not in summary_text(app)
        handle.emit(ev.NoiseEstimate(sd=0.0, samples=3, band=0.0, dof=2, jitter_only=True, confidence=0.95))
        await until(pilot, lambda: "JITTER ONLY" in summary_text(app), timeout=10, what="the jitter-only mark")
        assert "noise sd 0.000000 (2 dof)" in summary_text(app) and "AR_SEED" in summary_text(app)
