"""The bounded per-slot buffer behind the training log pane."""

from __future__ import annotations

from ar_tui.ui.log_buffer import MAX_LINE_CHARS, LogBuffer


def test_a_carriage_return_update_overwrites_the_previous_line() -> None:
    buffer = LogBuffer(max_lines=100)
    buffer.add(0, 1, "compiling")
    for percent in range(0, 101, 10):
        buffer.add(0, 1, f"progress {percent}%", replace=percent > 0)
    assert list(buffer.slot(0).lines) == ["compiling", "progress 100%"]


def test_memory_stays_bounded_and_counts_what_it_dropped() -> None:
    buffer = LogBuffer(max_lines=1000)
    for i in range(50_000):
        buffer.add(0, 1, f"line {i}")
    log = buffer.slot(0)
    assert len(log.lines) == 1000
    assert log.lines[0] == "line 49000" and log.lines[-1] == "line 49999"
    assert log.dropped == 49_000


def test_a_huge_line_is_cut() -> None:
    buffer = LogBuffer()
    buffer.add(0, 1, "x" * 10 * MAX_LINE_CHARS)
    assert len(buffer.slot(0).lines[0]) == MAX_LINE_CHARS + 1


def test_output_of_a_new_experiment_starts_a_fresh_log_per_slot() -> None:
    buffer = LogBuffer()
    buffer.add(0, 1, "exp 1 on slot 0")
    buffer.add(1, 2, "exp 2 on slot 1")
    buffer.add(0, 3, "exp 3 on slot 0")
    assert list(buffer.slot(0).lines) == ["exp 3 on slot 0"] and buffer.slot(0).exp == 3
    assert list(buffer.slot(1).lines) == ["exp 2 on slot 1"]
