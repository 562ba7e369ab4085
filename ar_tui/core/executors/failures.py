"""A crashed run's one line: what went wrong, read from the end of its log,
and what to do when the cause looks like the environment rather than the
experiment.

"crash: exit code 1" sends the user to the log; the log's last exception
line usually says everything ("ModuleNotFoundError: No module named
'kernels'"). That line is what the ledger's rule, the headless output, the
app, `ar-tui status` and the report show, so it is built once, here. Pure:
text in, text out.
"""

from __future__ import annotations

import re
import signal

MAX_REASON_CHARS = 200

# `ValueError: x`, `torch.OutOfMemoryError: y`, `KeyboardInterrupt`: the
# line a traceback ends with. A bare exception name counts only after a traceback.
_EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?([A-Z]\w*(?:Error|Exception|Exit|Interrupt|Warning))(?::\s*(.*))?$")
_TRACEBACK_START = "Traceback (most recent call last):"
# `prepare: error: no API key`, `error: Failed to fetch`: how command-line
# tools (uv, argparse, the examples) say why they exited.
_ERROR_LINE = re.compile(r"^(?:[\w.-]+: )?error: \S", re.IGNORECASE)
# Causes that are the machine's, not the code's, whatever printed them (a
# shell tool, a C library, a Python traceback cut off by the kill).
_RESOURCE_LINE = re.compile(r"No space left on device|Disk quota exceeded|CUDA out of memory|Cannot allocate memory"
                            r"|MemoryError|std::bad_alloc|Resource temporarily unavailable|File size limit exceeded")
_MISSING_MODULE = re.compile(r"No module named '([^']+)'")
_CUDA_MISSING = re.compile(
    r"Torch not compiled with CUDA enabled|Found no NVIDIA driver|No CUDA GPUs are available"
    r"|CUDA driver initialization failed|no CUDA-capable device|CUDA is not available|nvidia-smi.*not found"
    r"|libcuda\.so|cuda.*requires a GPU",
    re.IGNORECASE,
)
_COMMAND_NOT_FOUND = re.compile(r"(?:^|: )(\S+): (?:command )?not found$|No such file or directory.*python", re.MULTILINE)
_UV_SETUP = re.compile(r"^error: .*(?:offline|network|No interpreter found|Failed to (?:fetch|download|build))",
                       re.IGNORECASE | re.MULTILINE)
_PYTHON_VERSION = re.compile(r"requires (?:a different )?Python|Python \d+\.\d+ or (?:newer|later)|"
                             r"SyntaxError: .*(?:match|walrus|f-string)", re.IGNORECASE)


def exception_line(tail: str) -> str | None:
    """The last exception line of a traceback in `tail`, or None."""
    lines = [line.strip() for line in tail.splitlines()]
    seen_traceback = False
    found: str | None = None
    for line in lines:
        if line.startswith(_TRACEBACK_START):
            seen_traceback = True
            continue
        match = _EXCEPTION_LINE.match(line)
        if match and (match.group(2) is not None or seen_traceback):
            found = line
    return found


def resource_line(tail: str) -> str | None:
    """The last line naming a resource the run ran out of, or None."""
    found = [line.strip() for line in tail.splitlines() if _RESOURCE_LINE.search(line)]
    return found[-1] if found else None


def error_line(tail: str) -> str | None:
    """The last `tool: error: ...` line in `tail`, or None."""
    found = [line.strip() for line in tail.splitlines() if _ERROR_LINE.match(line.strip())]
    return found[-1] if found else None


def environment_hint(tail: str, python: str = "") -> str | None:
    """What to do when the log says the environment is the cause; `python`
    is the startup line's description of the interpreter that ran."""
    ran = f" (ran with {python})" if python else ""
    missing = _MISSING_MODULE.search(tail)
    if missing and ("ModuleNotFoundError" in tail or "ImportError" in tail):
        return (f"the target's environment lacks {missing.group(1).split('.')[0]!r}{ran}; install it there, "
                "or point ar-tui at the environment that has it: a .venv or uv.lock in the target, "
                "or [target] python in autoresearch.toml")
    if _UV_SETUP.search(tail):
        return "uv could not set up the target's environment; run `uv sync` in the target first"
    if _CUDA_MISSING.search(tail):
        return "the script needs a CUDA GPU and this slot has none; run it on a GPU machine (--devices)"
    if _PYTHON_VERSION.search(tail):
        return f"the script wants another Python version{ran}; set [target] python in autoresearch.toml"
    not_found = _COMMAND_NOT_FOUND.search(tail)
    if not_found:
        what = not_found.group(1) or "python"
        return f"{what} was not found{ran}; set [target] python in autoresearch.toml or fix the command"
    return None


def crash_reason(tail: str, exit_code: int | None, python: str = "", hint: str | None = None) -> str:
    """The one line for a run that exited with `exit_code`, from the last
    lines of its output; `hint`, when the caller knows better (data the
    checkout holds and git ignores, `core.records.target_data`), replaces the
    environment's."""
    if exit_code is not None and exit_code < 0:
        try:
            name = signal.Signals(-exit_code).name
        except ValueError:
            name = f"signal {-exit_code}"
        code = f"killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")
    else:
        code = f"exit code {exit_code}"
    cause = exception_line(tail) or error_line(tail) or resource_line(tail)
    if cause is None and exit_code == 127:
        cause = _last_line(tail)
    reason = f"{_cut(cause)} ({code})" if cause else code
    hint = hint or environment_hint(tail, python)
    return f"{reason}; hint: {hint}" if hint else reason


def _last_line(tail: str) -> str | None:
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    return lines[-1] if lines else None


def _cut(text: str) -> str:
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 3] + "..."
