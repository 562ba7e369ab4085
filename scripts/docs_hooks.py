"""MkDocs hooks (mkdocs.yml `hooks:`): the reference pages written from the
code at build time, so that no flag and no event is documented by hand.

A page asks for a generated part with a marker on a line of its own:

    <!-- generated: cli -->      every subcommand of `ar-tui` and every flag, from the argparse parser
    <!-- generated: events -->   every event kind and field, from ar_tui/core/events.py

tests/docs import `cli_reference` and `events_reference` from here to check
that every flag and event is in what they write.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import sys
import typing
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Document this checkout's parser, not an installed ar-tui's.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MARKER = "<!-- generated: {} -->"


def _cell(text: object) -> str:
    """Text for a table cell: no pipe or newline to break the row, no `<tag>`
    read as HTML."""
    return str(text).replace("|", "\\|").replace("\n", " ").replace("<", "&lt;").replace(">", "&gt;")


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    for action in parser._actions:  # argparse keeps its actions here; there is no public accessor
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            return [(name, helps.get(name, ""), sub) for name, sub in action.choices.items()]
    return []


def _argument_rows(parser: argparse.ArgumentParser) -> list[str]:
    rows = ["| argument | value | help |", "| --- | --- | --- |"]
    for action in parser._actions:
        names = ", ".join(f"`{name}`" for name in action.option_strings) or f"`{action.dest.upper()}`"
        if action.choices:
            value = " \\| ".join(f"`{choice}`" for choice in action.choices)
        elif action.nargs == 0:
            value = "(a switch)"
        else:
            value = f"`{action.metavar or action.dest.upper()}`"
        if action.nargs == "?" and not action.option_strings:
            value += " (optional)"
        # argparse's own expansion of %(default)s and the like in a help string
        help_text = (action.help or "") % {**vars(action), "prog": parser.prog} if action.help else ""
        rows.append(f"| {names} | {value} | {_cell(help_text)} |")
    return rows


def cli_reference(parser: argparse.ArgumentParser | None = None) -> str:
    """Markdown for every subcommand and every argument of `parser`
    (default: ar-tui's)."""
    if parser is None:
        from ar_tui.cli import build_parser

        parser = build_parser()
    lines = ["```", parser.format_usage().strip(), "```", ""]
    for name, summary, sub in _subcommands(parser):
        lines += [f"## `ar-tui {name}`", "", summary[:1].upper() + summary[1:] + ("." if summary else ""), "",
                  "```", sub.format_usage().strip(), "```", "", *_argument_rows(sub), ""]
    return "\n".join(lines)


def _field_comments(cls: type) -> dict[str, str]:
    """The comment at the end of each field's line in the class's source:
    the reason a field exists is written there, once."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    lines = source.splitlines()
    comments: dict[str, str] = {}
    for node in ast.parse(source).body[0].body:  # type: ignore[attr-defined]
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            line = lines[node.lineno - 1]
            if "  # " in line:
                comments[node.target.id] = line.split("  # ", 1)[1].strip()
                continue
            above: list[str] = []  # or the comment lines just above the field
            number = node.lineno - 2
            while number >= 0 and lines[number].strip().startswith("#"):
                above.insert(0, lines[number].strip().lstrip("#").strip())
                number -= 1
            if above:
                comments[node.target.id] = " ".join(above)
    return comments


# Fields many events share, said once here rather than on every class.
FIELD_MEANINGS = {
    "ts": "when it was emitted: seconds since the epoch (time.time())",
    "exp": "the experiment it is about (0: the baseline, and the best's confirming runs)",
    "slot": "the slot (one per device) it ran on",
    "role": "who acted: agent, planner, worker, reviewer",
    "commit": "the git commit (short sha)",
    "description": "the change in one line, as the ledger writes it",
}


def events_reference() -> str:
    """Markdown for every event kind in ar_tui/core/events.py: its fields,
    their types and what they mean."""
    from ar_tui.core import events as ev

    lines: list[str] = []
    for kind, cls in sorted(ev._REGISTRY.items()):  # the module's own kind registry
        doc = inspect.getdoc(cls) or ""
        if doc.startswith(cls.__name__ + "("):  # the dataclass's generated signature, not a docstring
            doc = ""
        lines += [f"## `{kind}`: {cls.__name__}", ""]
        if doc:
            lines += [doc, ""]
        if not cls.persist:
            lines += ["Not written to `events.jsonl` (live only).", ""]
        hints = typing.get_type_hints(cls)
        comments = _field_comments(cls)
        lines += ["| field | type | meaning |", "| --- | --- | --- |"]
        for field in dataclasses.fields(cls):
            hint = hints.get(field.name, field.type)
            shown = getattr(hint, "__name__", None) if isinstance(hint, type) else None
            shown = shown or str(hint).replace("typing.", "")
            meaning = comments.get(field.name, "") or FIELD_MEANINGS.get(field.name, "")
            lines.append(f"| `{field.name}` | `{_cell(shown)}` | {_cell(meaning)} |")
        lines.append("")
    return "\n".join(lines)


GENERATORS = {"cli": cli_reference, "events": events_reference}


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ARG001 (MkDocs' hook signature)
    for name, generate in GENERATORS.items():
        marker = MARKER.format(name)
        if marker in markdown:
            markdown = markdown.replace(marker, generate())
    return markdown
