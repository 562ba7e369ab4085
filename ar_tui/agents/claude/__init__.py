"""The Claude agent and the parts that several roles share.

- `client.py`: one Messages-API client (streaming, retries, errors, money);
- `tools.py`: the tools' schemas and the text editor over a `Workspace`;
- `agent.py`: the tool loop, and `ClaudeAgent`, the single agent.

Names are resolved lazily so that `prompt.py` can import `tools` without
pulling in the agent (which imports `prompt`).
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "ClaudeAgent": "ar_tui.agents.claude.agent",
    "AgentConfigError": "ar_tui.agents.claude.client",
    "MessagesClient": "ar_tui.agents.claude.client",
    "_retry_after": "ar_tui.agents.claude.client",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), "retry_after" if name == "_retry_after" else name)
    globals()[name] = value
    return value


__all__ = ["AgentConfigError", "ClaudeAgent", "MessagesClient"]
