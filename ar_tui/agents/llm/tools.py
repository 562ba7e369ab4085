"""The tools the roles are given, and the text editor they edit through.

The editor is Anthropic's text editor tool for Claude on the Anthropic API
(for other models and APIs, the same commands with an explicit schema), executed
against a `Workspace`: the workers' holds the target's editable files, the
planner's only its notes. `run_experiment` submits a worker's change; `review`
is the reviewer's verdict; web search is a server-side tool the API runs.
"""

from __future__ import annotations

from typing import Any

from ar_tui.core.workspace import EDITOR_TOOL_NAME, Workspace, WorkspaceError

RUN_TOOL_NAME = "run_experiment"
REVIEW_TOOL_NAME = "review"
WEB_SEARCH_TOOL_NAME = "web_search"
VERDICTS = ("approve", "revise", "reject")
STABLE_CACHE = {"type": "ephemeral", "ttl": "1h"}
VIEW_CHARS = 60_000  # a larger view result is cut: the files are in the opening message already
MAX_DESCRIPTION_CHARS = 200
MAX_WEB_SEARCHES = 5  # per planner request

EDITOR_TOOL: dict[str, Any] = {"type": "text_editor_20250728", "name": EDITOR_TOOL_NAME}

# The same tool, described with an explicit schema, for servers that speak the
# Messages API but do not know Anthropic's built-in tool types (Ollama,
# llama.cpp, vLLM). The commands and their inputs are those of the built-in tool.
EDITOR_TOOL_CUSTOM: dict[str, Any] = {
    "name": EDITOR_TOOL_NAME,
    "description": (
        "View and edit the editable files. Commands: `view` (path, optional view_range [first, last] line "
        "numbers); `str_replace` (path, old_str, new_str; old_str must occur exactly once); `create` (path, "
        "file_text; replaces the whole file); `insert` (path, insert_line, insert_text; inserted after that "
        "line, 0 for the top)."
    ),
    "input_schema": {
        "type": "object",
        "properties": {
            "command": {"type": "string", "enum": ["view", "str_replace", "create", "insert"]},
            "path": {"type": "string", "description": "a file path relative to the target, e.g. train.py"},
            "view_range": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2},
            "old_str": {"type": "string"},
            "new_str": {"type": "string"},
            "file_text": {"type": "string"},
            "insert_line": {"type": "integer"},
            "insert_text": {"type": "string"},
        },
        "required": ["command", "path"],
    },
}

RUN_TOOL: dict[str, Any] = {
    "name": RUN_TOOL_NAME,
    "description": (
        "Submit the change you made to the editable files as this experiment. Call it exactly once, "
        "after your edits succeeded; it ends your turn. The harness commits the change, trains with the "
        "fixed time budget, reads the metric and keeps the commit only if the metric improved."
    ),
    "input_schema": {
        "type": "object",
        "properties": {
            "description": {
                "type": "string",
                "description": "A short description of the change, under 100 characters, e.g. 'halve the learning rate'.",
            },
            "rationale": {
                "type": "string",
                "description": "Optional: one or two sentences on why you expect it to help.",
            },
        },
        "required": ["description"],
    },
}

REVIEW_TOOL: dict[str, Any] = {
    "name": REVIEW_TOOL_NAME,
    "description": (
        "Give your verdict on the proposed change before it spends training time: approve it, ask its "
        "author to revise it once (say what to change), or reject it (a repeat of a tried idea, a change "
        "only to the seed, to the time budget or to the evaluation)."
    ),
    "input_schema": {
        "type": "object",
        "properties": {
            "verdict": {"type": "string", "enum": list(VERDICTS)},
            "reason": {"type": "string", "description": "One or two sentences: why."},
        },
        "required": ["verdict", "reason"],
    },
}

WEB_SEARCH_TOOL: dict[str, Any] = {"type": "web_search_20250305", "name": WEB_SEARCH_TOOL_NAME,
                                   "max_uses": MAX_WEB_SEARCHES}


def editor_tool(kind: str = "builtin") -> dict[str, Any]:
    """`kind` is "builtin" (Anthropic's text editor tool type) or "custom"
    (the same tool with an explicit schema)."""
    return dict(EDITOR_TOOL if kind == "builtin" else EDITOR_TOOL_CUSTOM)


def cached(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tools with a one-hour cache breakpoint on the last: they never change in a run."""
    return [*tools[:-1], {**tools[-1], "cache_control": STABLE_CACHE}]


def worker_tools(editor: str = "builtin") -> list[dict[str, Any]]:
    return cached([editor_tool(editor), RUN_TOOL])


def planner_tools(editor: str = "builtin", web_search: bool = False) -> list[dict[str, Any]]:
    return cached([editor_tool(editor), *([WEB_SEARCH_TOOL] if web_search else [])])


def reviewer_tools() -> list[dict[str, Any]]:
    return cached([REVIEW_TOOL])


# --- the editor ------------------------------------------------------------------


def edit_summary(params: dict[str, Any]) -> str:
    command = params.get("command", "?")
    path = params.get("path", "?")
    summary = f"{command} {path}"
    if command == "view" and params.get("view_range") is not None:
        summary += f" {params['view_range']}"
    if command == "insert" and params.get("insert_line") is not None:
        summary += f" after line {params['insert_line']}"
    return summary


def _require(params: dict[str, Any], command: str, key: str) -> Any:
    if key not in params:
        raise WorkspaceError(f"{command} needs `{key}`")
    return params[key]


def edit(workspace: Workspace, params: dict[str, Any]) -> tuple[str, str]:
    """Run one text-editor command; returns (tool result, one-line event result).
    The event line never carries file contents."""
    command = params.get("command")
    path = params.get("path")
    if not isinstance(path, str):
        raise WorkspaceError("`path` must be a string naming an editable file")
    if command == "view":
        view_range = params.get("view_range")
        output = workspace.view(path, view_range)
        lines = output.count("\n") + 1
        if len(output) > VIEW_CHARS:
            output = output[:VIEW_CHARS] + "\n… (cut; use view_range to see the rest)"
        return output, f"viewed {lines} lines"
    if command == "str_replace":
        old = _require(params, command, "old_str")
        # The tool's schema makes new_str optional: missing means delete old_str.
        new = params.get("new_str", "")
        result = workspace.str_replace(path, old, new)
        return result, result
    if command == "create":
        result = workspace.create(path, _require(params, command, "file_text"))
        return result, result
    if command == "insert":
        line = _require(params, command, "insert_line")
        # text_editor_20250728 calls it insert_text; older versions and some
        # local models send new_str.
        if "insert_text" in params:
            text = params["insert_text"]
        elif "new_str" in params:
            text = params["new_str"]
        else:
            raise WorkspaceError("insert needs `insert_text`")
        result = workspace.insert(path, line, text)
        return result, result
    if command == "undo_edit":
        raise WorkspaceError("undo_edit is not available; use str_replace to change the text back")
    raise WorkspaceError(f"unknown command {command!r}; use view, str_replace, create or insert")


def submission(params: dict[str, Any]) -> tuple[str, str, str | None]:
    """(description, rationale, problem) from run_experiment's input."""
    description = params.get("description")
    rationale = params.get("rationale", "")
    if not isinstance(description, str) or not description.strip():
        return "", "", "run_experiment needs a non-empty `description` string"
    if rationale is None:
        rationale = ""
    if not isinstance(rationale, str):
        return description, "", "`rationale` must be a string"
    description = " ".join(description.split())
    if len(description) > MAX_DESCRIPTION_CHARS:
        description = description[: MAX_DESCRIPTION_CHARS - 1] + "…"
    return description, " ".join(rationale.split()), None


def verdict_of(params: dict[str, Any]) -> tuple[str, str, str | None]:
    """(verdict, reason, problem) from review's input."""
    verdict = params.get("verdict")
    reason = params.get("reason", "")
    if verdict not in VERDICTS:
        return "", "", f"`verdict` must be one of {', '.join(VERDICTS)}"
    if not isinstance(reason, str):
        return "", "", "`reason` must be a string"
    return verdict, " ".join(reason.split()), None


def snapshot(workspace: Workspace) -> dict[str, str | None]:
    state: dict[str, str | None] = {}
    for rel in workspace.editable:
        try:
            state[rel] = workspace.read(rel)
        except WorkspaceError:
            state[rel] = None
    return state
