"""The engine never imports the UI toolkit: proven in a fresh interpreter."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import ar_tui.core


def test_engine_package_imports_neither_textual_nor_rich() -> None:
    modules = [f"ar_tui.core.{m.name}" for m in pkgutil.iter_modules(ar_tui.core.__path__)]
    assert "ar_tui.core.engine" in modules
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "import ar_tui.agents.offline, ar_tui.agents.single, ar_tui.agents.llm.anthropic, ar_tui.agents.llm.openai\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich'))\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
