"""`ar-tui report --narrate`: a few paragraphs from Claude on top of the figures.

The model is shown the report as report.md renders it and asked for prose; its
text goes into report.md as-is, in its own section, above figures that the
report computed from the ledger. Nothing the model writes flows back into a
figure, so a model that misreads a number can make the story wrong, never the
table.
"""

from __future__ import annotations

import anthropic

from ar_tui.report import Report, ReportError, render_markdown

# The narrative needs the gist of each change, not every line of a long diff.
PROMPT_DIFF_LINES = 40
MAX_PROMPT_CHARS = 120_000
MAX_NARRATIVE_TOKENS = 1500
REQUEST_TIMEOUT_S = 120.0

SYSTEM = """\
You write the narrative part of a morning report on a night of autonomous ML research: \
an agent edited a training script, ran short fixed-budget experiments, kept the changes \
that improved the metric and reverted the rest.

Write three or four short paragraphs of plain prose (no headings, no tables, no lists) \
for a researcher reading over coffee: what the night found and which changes mattered, \
why they plausibly worked (use the agents' rationales and the diffs), what the failed \
ideas suggest, and what the night cost and whether the pace was good. End with one or \
two concrete suggestions for the next run.

The figures are printed under your text by the report itself. Quote a number only if it \
appears in the report exactly as written there, and do not compute new numbers. Say so \
when the report shows a figure as n/a rather than guessing it."""


class NarrationError(ReportError):
    """No narrative could be written; the message is one line for the user.
    A ReportError, so `ar-tui report --narrate` fails the way a bad run dir does."""


def narration_prompt(report: Report) -> str:
    figures = render_markdown(report, chart=False, max_diff_lines=PROMPT_DIFF_LINES)
    if len(figures) > MAX_PROMPT_CHARS:
        figures = figures[:MAX_PROMPT_CHARS] + "\n\n[the rest of the report is cut for length]"
    return f"Here is the report.\n\n<report>\n{figures}\n</report>\n\nWrite the narrative."


def _one_line(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "[redacted]")
    text = " ".join(text.split())
    return text if len(text) <= 200 else text[:199] + "…"


async def narrate(report: Report, *, model: str, api_key: str | None = None, base_url: str | None = None) -> str:
    """Ask `model` for the narrative of `report`; returns its text."""
    client = anthropic.AsyncAnthropic(api_key=api_key, base_url=base_url, timeout=REQUEST_TIMEOUT_S)
    if client.api_key is None and client.auth_token is None and client.credentials is None:
        raise NarrationError("--narrate needs an Anthropic API key: set ANTHROPIC_API_KEY")
    secrets = [s for s in (client.api_key, client.auth_token) if s]
    try:
        async with client:
            message = await client.messages.create(
                model=model,
                max_tokens=MAX_NARRATIVE_TOKENS,
                system=SYSTEM,
                messages=[{"role": "user", "content": narration_prompt(report)}],
            )
    except anthropic.APIStatusError as exc:
        detail = _one_line(exc.api_message or exc.message or "", secrets)
        if exc.status_code == 401:
            raise NarrationError(f"the API rejected the key (401): {detail}") from None
        raise NarrationError(f"the API refused the narration request ({exc.status_code}): {detail}") from None
    except anthropic.APIConnectionError as exc:
        where = _one_line(str(client.base_url), secrets)
        raise NarrationError(f"could not reach the API at {where}: {_one_line(str(exc), secrets)}") from None
    text = "\n\n".join(block.text.strip() for block in message.content if block.type == "text" and block.text.strip())
    if not text:
        raise NarrationError(f"{model} returned no narrative (stop reason: {message.stop_reason})")
    return text
