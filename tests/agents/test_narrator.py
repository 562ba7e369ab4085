"""`--narrate`: the real SDK against the local Messages API server."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from ar_tui.agents.narrator import NarrationError, narrate
from ar_tui.core.records.rundir import REPORT_FILE as REPORT_NAME
from ar_tui.report import build_report, render_markdown, write_report
from tests.core.test_report import ROWS, figures_table, write_run
from tests.fake_messages_api import FakeMessagesAPI, error, reply, text

KEY = "sk-ant-test-narrator-0123456789"
MODEL = "claude-sonnet-4-6"


async def test_the_model_writes_prose_from_the_figures_and_cannot_change_them(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run")
    report = build_report(run)
    figures_before = figures_table(render_markdown(report))
    story = "Two schedule changes carried the night; the baseline was 7.0 and everything cost $999."
    with FakeMessagesAPI() as api:
        api.script(reply(text(story)))
        narrative = await narrate(report, model=MODEL, api_key=KEY, base_url=api.base_url)
    assert narrative == story

    (request,) = api.requests
    assert request.json["model"] == MODEL
    assert any(KEY in value for value in request.headers.values())
    sent = request.text()
    # The figures the model sees are the report's own, as report.md prints them.
    assert f"| Baseline | {ROWS[0].metric:.6f} |" in sent
    assert f"| Kept | {report.kept} |" in sent
    for change in report.kept_changes:
        assert change.description in sent and change.rationale in sent
    for idea in report.failed_ideas:
        assert idea.description in sent
    assert "Quote a number only if it appears in the report" in sent

    write_report(run, narrative=narrative)
    markdown = (run / REPORT_NAME).read_text()
    assert story in markdown
    assert figures_table(markdown) == figures_before
    assert KEY not in markdown


async def test_no_key_is_one_clear_line(tmp_path: Path) -> None:
    report = build_report(write_run(tmp_path / "run"))
    with pytest.raises(NarrationError, match="needs an Anthropic API key: set ANTHROPIC_API_KEY"):
        await narrate(report, model=MODEL, base_url="http://127.0.0.1:9")


async def test_a_rejected_key_is_reported_without_the_key(tmp_path: Path) -> None:
    report = build_report(write_run(tmp_path / "run"))
    with FakeMessagesAPI() as api:
        api.script(error(401, "authentication_error", f"invalid x-api-key: {KEY}"))
        with pytest.raises(NarrationError) as caught:
            await narrate(report, model=MODEL, api_key=KEY, base_url=api.base_url)
    message = str(caught.value)
    assert message.startswith("the API rejected the key (401)")
    assert KEY not in message and "[redacted]" in message
    assert "\n" not in message


async def test_an_unreachable_api_is_reported(tmp_path: Path) -> None:
    report = build_report(write_run(tmp_path / "run"))
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(NarrationError, match=f"could not reach the API at http://127.0.0.1:{port}"):
        await narrate(report, model=MODEL, api_key=KEY, base_url=f"http://127.0.0.1:{port}")


async def test_an_empty_answer_is_an_error_not_an_empty_section(tmp_path: Path) -> None:
    report = build_report(write_run(tmp_path / "run"))
    with FakeMessagesAPI() as api:
        api.script(reply(text("  ")))
        with pytest.raises(NarrationError, match="returned no narrative"):
            await narrate(report, model=MODEL, api_key=KEY, base_url=api.base_url)
