"""A crash's one line says what went wrong, and what to do when the cause is
the environment; prepare's progress reaches the headless output."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from ar_tui.core.executors.failures import crash_reason, environment_hint, exception_line
from tests.conftest import ar_tui_command, make_target

TRACEBACK = textwrap.dedent(
    """\
    step 00010 | loss 3.2
    Traceback (most recent call last):
      File "/t/train.py", line 3, in <module>
        import kernels
    ModuleNotFoundError: No module named 'kernels'
    """
)


def test_the_last_exception_line_is_the_reason_and_a_missing_module_gets_a_hint() -> None:
    reason = crash_reason(TRACEBACK, 1, "python: /t/.venv/bin/python (the target's .venv)")
    assert reason.startswith("ModuleNotFoundError: No module named 'kernels' (exit code 1); hint: ")
    assert "lacks 'kernels'" in reason and "ran with python: /t/.venv/bin/python" in reason
    assert "[target] python" in reason


def test_a_chained_traceback_gives_its_last_exception() -> None:
    tail = TRACEBACK + "\nDuring handling of the above exception, another exception occurred:\n\n" \
        "Traceback (most recent call last):\n  File \"x\", line 1\ntorch.OutOfMemoryError: CUDA out of memory.\n"
    assert exception_line(tail) == "torch.OutOfMemoryError: CUDA out of memory."
    assert crash_reason(tail, 1).startswith("torch.OutOfMemoryError: CUDA out of memory. (exit code 1)")


def test_no_cuda_on_a_cuda_only_script_says_to_use_a_gpu() -> None:
    tail = "Traceback (most recent call last):\n  File \"train.py\"\nAssertionError: Torch not compiled with CUDA enabled"
    reason = crash_reason(tail, 1)
    assert reason.startswith("AssertionError: Torch not compiled with CUDA enabled (exit code 1)")
    assert "needs a CUDA GPU" in reason


def test_a_missing_interpreter_or_uv_failure_points_at_the_environment() -> None:
    reason = crash_reason("sh: 1: python3.12: not found", 127)
    assert reason.startswith("sh: 1: python3.12: not found (exit code 127)") and "[target] python" in reason
    assert "uv sync" in environment_hint("error: Failed to fetch: `https://pypi.org/simple/torch/`")


def test_output_without_a_traceback_keeps_the_exit_code_and_a_kill_is_named() -> None:
    assert crash_reason("loss 3.2\nloss 3.1", 2) == "exit code 2"
    assert crash_reason("Errors: prose that names no exception", 1) == "exit code 1"
    assert crash_reason("", -9) == "killed by SIGKILL (out of memory?)"
    assert crash_reason("x" * 10, -15) == "killed by SIGTERM"


def test_a_tools_own_error_line_is_the_reason_when_there_is_no_traceback() -> None:
    tail = "reading 24 reviews\nprompt: error: no API key; set AR_PROMPT_API_KEY"
    assert crash_reason(tail, 2) == "prompt: error: no API key; set AR_PROMPT_API_KEY (exit code 2)"


def test_an_overlong_exception_line_is_cut() -> None:
    reason = crash_reason(f"Traceback (most recent call last):\nValueError: {'x' * 1000}", 1)
    assert len(reason) < 260 and reason.endswith("... (exit code 1)")


def test_headless_output_shows_prepare_progress_and_the_interpreter(tmp_path: Path) -> None:
    prepare = "import sys\nfor step in range(3):\n    print(f'building shard {step}/3', file=sys.stderr)\n"
    config = '[target]\nprepare = "python prepare.py"\ntime_budget = 5\n'
    target = make_target(tmp_path / "target", config=config)
    (target / "prepare.py").write_text(prepare)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "prepare"], cwd=target,
                   check=True)
    result = subprocess.run([*ar_tui_command(), "run", "--headless", "--agent", "offline", "--target", str(target),
                             "--run-dir", str(tmp_path / "run"), "--max-experiments", "1", "--unattended"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1] == f"python: {sys.executable} (ar-tui's own)"
    assert [line for line in lines if line.startswith("[prepare]")] == [
        f"[prepare] building shard {step}/3" for step in range(3)]
    # Progress comes before the baseline's result.
    assert lines.index("[prepare] building shard 2/3") < next(i for i, l in enumerate(lines) if l.startswith("baseline"))
