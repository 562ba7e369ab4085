"""The morning report, from hand-built run dirs: an ar-tui run (ledger, events,
diffs) and a bare results.tsv in karpathy/autoresearch's own format. Every
figure is recomputed here from the rows the test wrote and compared with what
report.md and the JSON say."""

from __future__ import annotations

import json
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

import pytest

from ar_tui.core import events as ev
from ar_tui.core.records.ledger import Ledger, LedgerRow
from ar_tui.core.records.rundir import CHART_FILE as CHART_NAME
from ar_tui.core.records.rundir import REPORT_FILE as REPORT_NAME
from ar_tui.report import ReportError, build_report, render_markdown, report_as_dict, write_report
from ar_tui.report.chart import MAX_CHART_LABELS, MAX_LABEL_CHARS, chart_labels

DATA = Path(__file__).parent / "data"
T0 = 1_780_000_000.0


@dataclass
class Row:
    exp: int
    commit: str
    metric: float | None
    status: str
    description: str
    cost: float
    seconds: float
    rationale: str = ""
    rule: str = ""
    forced: bool = False


# A night in miniature: two real improvements, one forced keep that made things
# worse, ideas that failed in every way the ledger knows, and one far-off discard.
ROWS = [
    Row(0, "aaaaaa0", 1.000000, "keep", "baseline", 0.0, 300.0, rule="baseline"),
    Row(1, "bbbbbb1", 0.990000, "keep", "raise matrix LR to 0.04", 0.12, 301.0, "Loss was still falling fast at the end.", "beat best"),
    Row(2, "cccccc2", 0.995000, "discard", "switch to GeLU", 0.10, 299.0, "Smoother activation.", "no better than best"),
    Row(3, "dddddd3", None, "crash", "double the width", 0.08, 41.0, "More capacity.", "crash: CUDA out of memory"),
    Row(4, "eeeeee4", None, "veto", "train on the validation split", 0.05, 12.0, "", "vetoed by a person"),
    Row(5, "ffffff5", 0.993000, "keep", "keep RMSNorm eps at 1e-5", 0.09, 300.0, "Stability.", "forced keep", True),
    Row(6, "aaaaaa6", 0.981500, "keep", "warmup 5% then cosine to zero", 0.11, 302.0, "The schedule ends too high.", "beat best"),
    Row(7, "bbbbbb7", 1.250000, "discard", "halve the batch size", 0.07, 300.0, "More steps.", "no better than best"),
]
USAGE = [  # (exp, input, output, cache write 5m, cache read, cost)
    (1, 20_000, 1_500, 4_000, 0, 0.12),
    (2, 3_000, 1_200, 500, 18_000, 0.10),
    (3, 2_500, 900, 300, 19_000, 0.08),
    (4, 1_000, 400, 0, 20_000, 0.05),
    (5, 2_000, 1_100, 200, 21_000, 0.09),
    (6, 2_200, 1_300, 250, 22_000, 0.11),
    (7, 1_800, 800, 100, 23_000, 0.07),
]
FAILED_PROPOSAL_COST = 0.03  # a proposal that never became an experiment still cost money


def write_ledger(run_dir: Path, rows: list[Row]) -> None:
    """Through the engine's own writer, so the report reads what a run writes."""
    ledger = Ledger(run_dir, "val_bpb")
    for row in rows:
        ledger.append(LedgerRow(
            commit=row.commit, metric=row.metric, memory_gb=2.5 if row.metric is not None else None,
            status=row.status, description=row.description, exp=row.exp, cost_usd=row.cost,
            seconds=row.seconds, forced=row.forced, rule=row.rule, rationale=row.rationale,
        ))


def night_events() -> list[ev.Event]:
    """The events an engine would have written for ROWS, with known times: one
    session of 3h, then a resumed session of 1h after 5h stopped."""
    out: list[ev.Event] = []

    def started(ts: float, resumed: bool) -> ev.RunStarted:
        return ev.RunStarted(
            tag="nov27", target="nanochat", run_dir="runs/nov27", agent="claude", model="claude-test-1",
            metric="val_bpb", direction="min", attended=False, veto_window_s=0.0, slots=["cuda:0"],
            lookahead=0, resumed=resumed, ts=ts,
        )

    out.append(started(T0, False))
    totals = [0, 0, 0, 0, 0.0]
    clock = T0 + 10
    for row in ROWS:
        if row.exp == 6:  # stopped for the night after exp 5, resumed five hours later
            out.append(ev.RunStopped(reason="user asked", experiments=5, kept=2, best_metric=0.99,
                                     baseline_metric=1.0, improvement_pct=1.0, cost_usd=totals[4], ts=clock))
            clock += 5 * 3600
            out.append(started(clock, True))
            clock += 10
        if row.exp:
            usage = next(u for u in USAGE if u[0] == row.exp)
            for i, value in enumerate(usage[1:5]):
                totals[i] += value
            totals[4] += usage[5]
            out.append(ev.Usage(
                exp=row.exp, model="claude-test-1", input_tokens=usage[1], output_tokens=usage[2],
                cache_write_5m_tokens=usage[3], cache_write_1h_tokens=0, cache_read_tokens=usage[4],
                cost_usd=usage[5], total_input_tokens=totals[0], total_output_tokens=totals[1],
                total_cache_write_tokens=totals[2], total_cache_read_tokens=totals[3],
                total_cost_usd=totals[4], ts=clock,
            ))
            out.append(ev.ProposalReady(exp=row.exp, description=row.description, rationale=row.rationale,
                                        diff=f"--- a/train.py\n+++ b/train.py\n@@ -1 +1 @@\n-old {row.exp}\n+new {row.exp}\n",
                                        base_commit="x", cost_usd=row.cost, ts=clock))
        out.append(ev.ExperimentStarted(exp=row.exp, slot=0, device="cuda:0", commit=row.commit, parent="p",
                                        description=row.description, ts=clock))
        clock += row.seconds
        outcome = ev.OUTCOME_CRASH if row.status == "crash" else ev.OUTCOME_VETOED if row.status == "veto" else ev.OUTCOME_OK
        out.append(ev.ExperimentFinished(exp=row.exp, slot=0, outcome=outcome, metric=row.metric,
                                         reported_metric=row.metric, memory_gb=2.5, seconds=row.seconds,
                                         exit_code=0, ts=clock))
        out.append(ev.Decision(exp=row.exp, status=row.status, rule=row.rule, metric=row.metric, best_before=None,
                               best_after=None, commit=row.commit, description=row.description,
                               forced=row.forced, cost_usd=row.cost, ts=clock))
        clock += 60  # proposing and bookkeeping between runs
    totals[4] += FAILED_PROPOSAL_COST
    out.append(ev.Usage(exp=8, model="claude-test-1", input_tokens=0, output_tokens=0, cache_write_5m_tokens=0,
                        cache_write_1h_tokens=0, cache_read_tokens=0, cost_usd=FAILED_PROPOSAL_COST,
                        total_input_tokens=totals[0], total_output_tokens=totals[1],
                        total_cache_write_tokens=totals[2], total_cache_read_tokens=totals[3],
                        total_cost_usd=totals[4], ts=clock))
    out.append(ev.RunStopped(reason="max experiments reached", experiments=7, kept=3, best_metric=0.9815,
                             baseline_metric=1.0, improvement_pct=1.85, cost_usd=totals[4], ts=clock + 5))
    return out


def write_run(run_dir: Path, rows: list[Row] = ROWS, events: list[ev.Event] | None = None) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    write_ledger(run_dir, rows)
    events = night_events() if events is None else events
    (run_dir / "events.jsonl").write_text("".join(e.to_json() + "\n" for e in events))
    (run_dir / "diffs").mkdir(exist_ok=True)
    for row in rows[1:]:
        (run_dir / "diffs" / f"{row.exp}.diff").write_text(
            f"--- a/train.py\n+++ b/train.py\n@@ -10 +10 @@\n-# before {row.exp}\n+# after {row.exp}: {row.description}\n"
        )
    return run_dir


def figures_table(markdown: str) -> dict[str, str]:
    """The `| label | value |` rows of report.md's Figures section."""
    section = markdown.split("## Figures", 1)[1].split("\n## ", 1)[0]
    table = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if len(cells) == 2 and cells[0] and not cells[0].startswith("---"):
            table[cells[0]] = cells[1]
    return table


@dataclass
class Expected:
    baseline: float
    best: float
    best_exp: int
    improvement_pct: float
    experiments: int
    kept: int
    discarded: int
    crashed: int
    vetoed: int
    wall_seconds: float | None
    training_seconds: float | None
    cost: float | None
    tokens: dict[str, int] | None


def expected_from(rows: list[Row], events: list[ev.Event] | None, direction: str = "min") -> Expected:
    """The figures, derived from what the test wrote, without the report's code."""
    baseline = rows[0].metric
    kept = [r for r in rows[1:] if r.status == "keep"]
    best_row = (min if direction == "min" else max)([rows[0], *kept], key=lambda r: r.metric)
    gain = baseline - best_row.metric if direction == "min" else best_row.metric - baseline
    wall = training = cost = tokens = None
    if events:
        sessions, current = [], []
        for e in events:
            if isinstance(e, ev.RunStarted) and current:
                sessions.append(current)
                current = []
            current.append(e.ts)
        sessions.append(current)
        wall = sum(s[-1] - s[0] for s in sessions)
        training = sum(e.seconds for e in events if isinstance(e, ev.ExperimentFinished))
        last_usage = [e for e in events if isinstance(e, ev.Usage)][-1]
        cost = last_usage.total_cost_usd
        tokens = {
            "input": last_usage.total_input_tokens,
            "output": last_usage.total_output_tokens,
            "cache_write": last_usage.total_cache_write_tokens,
            "cache_read": last_usage.total_cache_read_tokens,
        }
    return Expected(
        baseline=baseline,
        best=best_row.metric,
        best_exp=best_row.exp,
        improvement_pct=100 * gain / abs(baseline),
        experiments=len(rows) - 1,
        kept=len(kept),
        discarded=sum(r.status == "discard" for r in rows),
        crashed=sum(r.status == "crash" for r in rows),
        vetoed=sum(r.status == "veto" for r in rows),
        wall_seconds=wall,
        training_seconds=training,
        cost=cost,
        tokens=tokens,
    )


# ---------------------------------------------------------------- an ar-tui run


def test_markdown_figures_match_the_ledger_and_events(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run")
    events = night_events()
    want = expected_from(ROWS, events)
    # Guard against a fixture that proves nothing: the resumed session's gap is real.
    assert want.wall_seconds < events[-1].ts - events[0].ts - 4 * 3600

    paths = write_report(run)
    assert paths == [run / CHART_NAME, run / REPORT_NAME]
    table = figures_table((run / REPORT_NAME).read_text())

    assert table["Metric"] == "val_bpb (lower is better)"
    assert table["Baseline"] == f"{want.baseline:.6f}"
    assert table["Best"] == f"{want.best:.6f} (exp {want.best_exp}, {ROWS[want.best_exp].commit})"
    assert table["Improvement"] == f"{want.improvement_pct:.2f}%"
    assert table["Experiments run"] == f"{want.experiments} (after the baseline)"
    assert table["Kept"] == str(want.kept)
    assert table["Discarded"] == str(want.discarded)
    assert table["Crashed"] == str(want.crashed)
    assert table["Vetoed"] == str(want.vetoed)
    assert table["Experiments per hour"] == f"{want.experiments / (want.wall_seconds / 3600):.1f}"
    assert table["Share of wall time training"].startswith(f"{100 * want.training_seconds / want.wall_seconds:.1f}%")
    assert table["Total cost"] == f"${want.cost:.4f}"
    assert table["Cost per experiment"] == f"${want.cost / want.experiments:.4f}"
    assert table["Cost per kept improvement"] == f"${want.cost / want.kept:.4f}"
    for kind, count in want.tokens.items():
        assert f"{kind.replace('_', ' ')} {count:,}" in table["Tokens"]


def test_json_figures_match_the_ledger_and_events(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run")
    want = expected_from(ROWS, night_events())
    figures = json.loads(json.dumps(report_as_dict(build_report(run))))

    assert figures["metric"] == "val_bpb" and figures["direction"] == "min"
    assert figures["tag"] == "nov27" and figures["model"] == "claude-test-1"
    assert figures["baseline"] == want.baseline
    assert figures["best"] == want.best and figures["best_exp"] == want.best_exp
    assert figures["improvement_pct"] == pytest.approx(want.improvement_pct)
    for name in ("experiments", "kept", "discarded", "crashed", "vetoed"):
        assert figures[name] == getattr(want, name), name
    assert figures["experiments"] == figures["kept"] + figures["discarded"] + figures["crashed"] + figures["vetoed"]
    assert figures["wall_seconds"] == pytest.approx(want.wall_seconds)
    assert figures["training_seconds"] == pytest.approx(want.training_seconds)
    assert figures["experiments_per_hour"] == pytest.approx(want.experiments / (want.wall_seconds / 3600))
    assert figures["training_share"] == pytest.approx(want.training_seconds / want.wall_seconds)
    # The total includes the failed proposal, which no ledger row carries.
    assert figures["cost_usd"] == pytest.approx(want.cost)
    assert figures["cost_usd"] == pytest.approx(sum(r.cost for r in ROWS) + FAILED_PROPOSAL_COST)
    assert figures["tokens"] == want.tokens
    assert figures["cost_per_experiment"] == pytest.approx(want.cost / want.experiments)
    assert figures["cost_per_kept"] == pytest.approx(want.cost / want.kept)
    assert figures["stopped_reason"] == "max experiments reached"


def test_kept_changes_in_order_with_rationale_delta_cost_and_diff(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run")
    report = build_report(run)
    kept_rows = [r for r in ROWS[1:] if r.status == "keep"]
    assert [c.exp for c in report.kept_changes] == [r.exp for r in kept_rows]

    previous = ROWS[0].metric
    markdown = render_markdown(report)
    section = markdown.split("## Kept changes", 1)[1].split("## Ideas that failed", 1)[0]
    positions = []
    for change, row in zip(report.kept_changes, kept_rows):
        # Each change is measured against the kept commit it was built on.
        assert change.previous == previous
        assert change.delta == pytest.approx(row.metric - previous)
        assert change.rationale == row.rationale and change.cost_usd == pytest.approx(row.cost)
        assert change.forced is row.forced
        assert change.diff == (run / "diffs" / f"{row.exp}.diff").read_text()
        assert f"val_bpb {row.metric:.6f}, {row.metric - previous:+.6f} from {previous:.6f}" in section
        assert f"cost ${row.cost:.4f}" in section
        assert f"Rationale: {row.rationale}" in section
        assert f"+# after {row.exp}: {row.description}" in section
        positions.append(section.index(f"exp {row.exp} · `{row.commit}` · {row.description}"))
        previous = row.metric
    assert positions == sorted(positions)
    assert "(forced)" in section  # exp 5 was kept by a person against the numbers


def test_failed_ideas_list_every_discard_crash_and_veto(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run")
    report = build_report(run)
    failed_rows = [r for r in ROWS if r.status != "keep"]
    assert [(i.exp, i.status) for i in report.failed_ideas] == [(r.exp, r.status) for r in failed_rows]
    section = render_markdown(report).split("## Ideas that failed", 1)[1]
    for row in failed_rows:
        assert f"| {row.exp} | {row.status} |" in section
        assert row.description in section and row.rule in section
    # A crash has no metric: shown as unknown, never as the ledger's 0.000000.
    assert "| 3 | crash | n/a | n/a |" in section
    assert "| 4 | veto | n/a | n/a |" in section


def test_direction_max_comes_from_the_events(tmp_path: Path) -> None:
    rows = [
        Row(0, "a000000", 0.400000, "keep", "baseline", 0.0, 10.0),
        Row(1, "a000001", 0.450000, "keep", "bigger model", 0.1, 10.0),
        Row(2, "a000002", 0.300000, "discard", "no dropout", 0.1, 10.0),
    ]
    started = ev.RunStarted(tag="acc", target="t", run_dir="r", agent="offline", model=None, metric="val_bpb",
                            direction="max", attended=False, veto_window_s=0, slots=["cpu"], lookahead=0,
                            resumed=False, ts=T0)
    run = write_run(tmp_path / "run", rows, [started])
    report = build_report(run)
    want = expected_from(rows, None, direction="max")
    assert report.direction == "max"
    assert report.best == want.best == 0.45
    assert report.improvement_pct == pytest.approx(want.improvement_pct)
    assert figures_table(render_markdown(report))["Metric"] == "val_bpb (higher is better)"


def test_two_slots_training_side_by_side_share_the_wall_time(tmp_path: Path) -> None:
    rows = [
        Row(0, "a000000", 1.0, "keep", "baseline", 0.0, 100.0),
        Row(1, "a000001", 0.9, "keep", "on slot 0", 0.0, 100.0),
        Row(2, "a000002", 1.1, "discard", "on slot 1", 0.0, 100.0),
    ]
    started = ev.RunStarted(tag="two", target="t", run_dir="r", agent="claude", model="claude-unpriced",
                            metric="val_bpb", direction="min", attended=False, veto_window_s=0,
                            slots=["cuda:0", "cuda:1"], lookahead=0, resumed=False, ts=T0)
    events: list[ev.Event] = [started]
    # The baseline alone, then two experiments at once: 300 s of training in 200 s on two slots.
    events.append(ev.ExperimentFinished(exp=0, slot=0, outcome="ok", metric=1.0, reported_metric=1.0,
                                        memory_gb=1.0, seconds=100.0, exit_code=0, ts=T0 + 100))
    for exp, slot in ((1, 0), (2, 1)):
        events.append(ev.ExperimentFinished(exp=exp, slot=slot, outcome="ok", metric=rows[exp].metric,
                                            reported_metric=None, memory_gb=1.0, seconds=100.0, exit_code=0,
                                            ts=T0 + 200))
    events.append(ev.Usage(exp=1, model="claude-unpriced", input_tokens=10, output_tokens=5,
                           cache_write_5m_tokens=0, cache_write_1h_tokens=0, cache_read_tokens=0, cost_usd=None,
                           total_input_tokens=10, total_output_tokens=5, ts=T0 + 200))
    report = build_report(write_run(tmp_path / "run", rows, events))
    assert report.slots == 2
    assert report.training_share == pytest.approx(300 / (200 * 2))
    table = figures_table(render_markdown(report))
    assert table["Share of wall time training"] == "75.0% (0h 05m training in 0h 03m on 2 slots)"
    # A model with no price: the spend shown is what was priced, and says so.
    assert table["Total cost"] == "$0.0000 (at least; a model had no known price)"


# ---------------------------------------------------------------- karpathy's own results.tsv


def karpathy_rows() -> list[list[str]]:
    lines = (DATA / "karpathy_results.tsv").read_text().splitlines()
    return [line.split("\t") for line in lines[1:]]


def test_bare_original_results_tsv(tmp_path: Path) -> None:
    run = tmp_path / "autoresearch"
    run.mkdir()
    shutil.copy(DATA / "karpathy_results.tsv", run / "results.tsv")
    rows = karpathy_rows()
    assert len(rows) == 10
    metrics = [float(r[1]) for r in rows]
    kept = [float(r[1]) for r in rows[1:] if r[3] == "keep"]

    write_report(run)
    figures = report_as_dict(build_report(run))
    table = figures_table((run / REPORT_NAME).read_text())

    assert figures["source"] == "results.tsv" and figures["direction"] == "min"
    assert figures["baseline"] == metrics[0]
    assert figures["best"] == min([metrics[0], *kept])
    assert figures["best_exp"] == metrics.index(min(kept))
    assert figures["improvement_pct"] == pytest.approx(100 * (metrics[0] - min(kept)) / metrics[0])
    assert figures["experiments"] == 9
    for status, name in (("keep", "kept"), ("discard", "discarded"), ("crash", "crashed"), ("veto", "vetoed")):
        assert figures[name] == sum(r[3] == status for r in rows[1:]), name
    # What a bare ledger cannot know is unknown, not zero.
    for name in ("cost_usd", "tokens", "wall_seconds", "experiments_per_hour", "training_share", "cost_per_kept"):
        assert figures[name] is None, name
    assert figures["original_format"] is True
    assert [set(row) for row in figures["rows"]] == [{"exp", "commit", "metric", "memory_gb", "status", "description"}] * 10
    assert [row["exp"] for row in figures["rows"]] == list(range(10))
    assert [row["metric"] for row in figures["rows"]] == [m if r[3] != "crash" else None for m, r in zip(metrics, rows)]

    assert table["Baseline"] == f"{metrics[0]:.6f}"
    assert table["Best"].startswith(f"{min(kept):.6f} (exp {metrics.index(min(kept))}, ")
    assert table["Improvement"] == f"{100 * (metrics[0] - min(kept)) / metrics[0]:.2f}%"
    assert table["Experiments per hour"] == "n/a (no events.jsonl)"
    assert table["Total cost"] == "n/a (no cost recorded)"
    markdown = (run / REPORT_NAME).read_text()
    for row in rows[1:]:
        assert row[4] in markdown
    previous = metrics[0]
    for row in rows[1:]:
        if row[3] == "keep":
            assert f"val_bpb {float(row[1]):.6f}, {float(row[1]) - previous:+.6f} from {previous:.6f}" in markdown
            previous = float(row[1])
        else:
            metric = "n/a" if row[3] == "crash" else f"{float(row[1]):.6f}"
            delta = "n/a" if row[3] == "crash" else f"{float(row[1]) - previous:+.6f}"
            assert f"| {row[3]} | {metric} | {delta} | {row[4]} |" in markdown


def test_original_format_with_another_metric_name(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.tsv").write_text(
        "commit\tval_loss\tmemory_gb\tstatus\tdescription\n"
        "1111111\t3.200000\t10.0\tkeep\tbaseline\n"
        "2222222\t3.100000\t10.0\tkeep\tlonger warmup\n"
    )
    report = build_report(run)
    assert report.metric == "val_loss" and report.best == 3.1
    assert "val_loss (lower is better)" in render_markdown(report)


# ---------------------------------------------------------------- the chart


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def colour_share(pixels, rgb: tuple[int, int, int], tolerance: int = 12):
    import numpy as np

    diff = np.abs(pixels[:, :, :3].astype(int) - np.array(rgb)).max(axis=2)
    return diff <= tolerance


def test_progress_png_is_a_valid_1400x700_chart_with_kept_crashed_and_discarded(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    run = write_run(tmp_path / "run")
    write_report(run)
    data = (run / CHART_NAME).read_bytes()
    assert png_size(data) == (1400, 700)
    with Image.open(run / CHART_NAME) as image:
        image.load()  # decodes every pixel: a truncated or corrupt file fails here
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape == (700, 1400, 3)
    assert colour_share(pixels, (0x2E, 0xCC, 0x71)).sum() > 100  # kept dots
    crash_red = colour_share(pixels, (0xE7, 0x4C, 0x3C))
    assert crash_red.sum() > 20
    # Crashes have no metric; they sit along the top of the plot.
    assert np.nonzero(crash_red)[0].mean() < 200


def test_chart_labels_every_kept_change_of_a_short_night(tmp_path: Path) -> None:
    report = build_report(write_run(tmp_path / "run"))
    assert chart_labels(report) == {r.exp: r.description for r in ROWS if r.status == "keep"}


def test_chart_labels_only_the_largest_gains_of_a_long_night(tmp_path: Path) -> None:
    # 40 keeps, each gaining a different amount; the descriptions are long.
    gains = [0.0001 * ((i * 7) % 40 + 1) for i in range(40)]
    rows, metric = [Row(0, "0000000", 2.0, "keep", "baseline", 0.0, 1.0)], 2.0
    for i, gain in enumerate(gains, 1):
        metric -= gain
        rows.append(Row(i, f"{i:07d}", metric, "keep", f"change number {i} " + "with a very long explanation " * 3, 0.0, 1.0))
    report = build_report(write_run(tmp_path / "run", rows, []))
    labels = chart_labels(report)
    largest = sorted(range(1, 41), key=lambda i: gains[i - 1], reverse=True)[: MAX_CHART_LABELS - 1]
    assert set(labels) == {0, *largest}
    assert all(len(text) <= MAX_LABEL_CHARS for text in labels.values())
    assert labels[largest[0]].startswith(f"change number {largest[0]} ") and labels[largest[0]].endswith("…")
    write_report(tmp_path / "run")
    assert png_size((tmp_path / "run" / CHART_NAME).read_bytes()) == (1400, 700)


def test_progress_png_from_a_bare_results_tsv_and_a_single_row(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.tsv").write_text("commit\tval_bpb\tmemory_gb\tstatus\tdescription\na1b2c3d\t0.997900\t44.0\tkeep\tbaseline\n")
    write_report(run)
    assert png_size((run / CHART_NAME).read_bytes()) == (1400, 700)
    table = figures_table((run / REPORT_NAME).read_text())
    assert table["Experiments run"] == "0 (after the baseline)"
    assert table["Improvement"] == "0.00%"


# ---------------------------------------------------------------- bad input


def test_missing_run_dir(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="no such run dir"):
        build_report(tmp_path / "nope")


def test_run_dir_without_a_ledger(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="no results.tsv here"):
        build_report(tmp_path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "is empty"),
        ("commit\tval_bpb\tmemory_gb\tstatus\tdescription\n", "no complete rows yet"),
        ("commit,val_bpb,memory_gb,status,description\n", "not a results.tsv"),
        ("commit\tval_bpb\tmemory_gb\tstatus\tdescription\na\t1.0\t1.0\tkeep\tbaseline\nb\tabc\t1.0\tdiscard\tx\nc\t0.9\t1.0\tkeep\ty\n",
         r"results.tsv: row 2 \(b\): a discard row with no number in the val_bpb column"),
        ("commit\tval_bpb\tmemory_gb\tstatus\tdescription\na\t1.0\t1.0\tmaybe\tbaseline\n", "row 1 \\(a\\): unknown status 'maybe'"),
    ],
)
def test_bad_ledgers_give_one_clear_line(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "results.tsv").write_text(content)
    with pytest.raises(ReportError, match=message) as caught:
        build_report(tmp_path)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / REPORT_NAME).exists()


def test_a_file_that_cannot_be_written_is_one_clear_line_and_keeps_the_old_report(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run")
    (run / REPORT_NAME).write_text("last night's report\n")
    before = (run / REPORT_NAME).read_bytes()
    # Something in the way of the chart (works as root too, unlike a read-only dir).
    (run / CHART_NAME).mkdir()
    with pytest.raises(ReportError, match=f"cannot write {run / CHART_NAME}: Is a directory") as caught:
        write_report(run, narrative="new")
    assert "\n" not in str(caught.value)
    assert (run / REPORT_NAME).read_bytes() == before
    assert [p.name for p in run.iterdir() if p.name.endswith(".tmp")] == []


def test_half_written_ledger_uses_the_complete_rows_and_says_so(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run")
    with (run / "results.tsv").open("a") as ledger:
        ledger.write("cccccc8\t0.97")  # the engine was cut off mid-row
    report = build_report(run)
    assert report.experiments == len(ROWS) - 1
    assert report.best == expected_from(ROWS, None).best
    assert report.warnings == [f"results.tsv has a half-written row, left out; the report uses the {len(ROWS)} complete rows"]
    write_report(run)
    assert "half-written" in (run / REPORT_NAME).read_text()


def test_half_written_events_line_is_skipped(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run")
    whole = build_report(run)
    with (run / "events.jsonl").open("a") as events:
        events.write('{"kind":"usage","exp":9,"model":"x","input_tok')
    cut = build_report(run)
    assert report_as_dict(cut) == report_as_dict(whole)


def test_the_narrative_sits_above_figures_it_cannot_change(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run")
    plain = figures_table(render_markdown(build_report(run)))
    story = "The night went well: val_bpb fell to 0.5 and it cost $0.0001."
    write_report(run, narrative=story)
    markdown = (run / REPORT_NAME).read_text()
    assert story in markdown
    assert markdown.index(story) < markdown.index("## Figures")
    assert figures_table(markdown) == plain


# ---------------------------------------------------------------- a real run


async def test_a_real_engine_run_writes_a_report_that_matches_its_ledger(tiny_target: Path, run_dir: Path) -> None:
    from ar_tui.agents.scripted import ScriptedProposer, ScriptStep
    from ar_tui.core.engine import Engine, EngineOptions
    from ar_tui.core.records.ledger import read_events, read_results

    proposer = ScriptedProposer([
        ScriptStep("LR 0.5 -> 0.4", "LR = 0.5", "LR = 0.4", rationale="closer to the optimum"),
        ScriptStep("LR 0.4 -> 0.9", "LR = 0.4", "LR = 0.9"),
        ScriptStep("divide by zero", "LR = 0.4", "LR = 1 / 0"),
        ScriptStep("LR 0.4 -> 0.3", "LR = 0.4", "LR = 0.3", rationale="closer still"),
    ])
    options = EngineOptions(target_dir=tiny_target, tag="real", run_dir=run_dir, attended=False, lookahead=0,
                            baseline_runs=1, max_experiments=4)
    from ar_tui.report import report_service

    await Engine(options, proposer, services=[report_service]).run()

    # The report service wrote the report when the run stopped.
    assert png_size((run_dir / CHART_NAME).read_bytes()) == (1400, 700)
    table = figures_table((run_dir / REPORT_NAME).read_text())
    _, rows, _ = read_results(run_dir / "results.tsv")
    events = list(read_events(run_dir / "events.jsonl"))
    assert [r.status for r in rows] == ["keep", "keep", "discard", "crash", "keep"]
    kept = [r.metric for r in rows[1:] if r.status == "keep"]
    # One session; an event's time is taken when it is made, not when written.
    wall = max(e.ts for e in events) - min(e.ts for e in events)
    training = sum(e.seconds for e in events if isinstance(e, ev.ExperimentFinished))
    assert table["Baseline"] == f"{rows[0].metric:.6f}"
    assert table["Best"].startswith(f"{min(kept):.6f} (exp 4, ")
    assert table["Improvement"] == f"{100 * (rows[0].metric - min(kept)) / rows[0].metric:.2f}%"
    assert (table["Kept"], table["Discarded"], table["Crashed"], table["Vetoed"]) == ("2", "1", "1", "0")
    assert table["Experiments per hour"] == f"{4 / (wall / 3600):.1f}"
    assert table["Share of wall time training"].startswith(f"{100 * training / wall:.1f}%")
    markdown = (run_dir / REPORT_NAME).read_text()
    assert "Rationale: closer still" in markdown and "+LR = 0.3" in markdown
    assert "| 3 | crash |" in markdown
