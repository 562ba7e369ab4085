"""Scores prompt.py against evalset.jsonl through the Messages API: fixed,
the agent never edits it.

prompt.py is read as data (its constants, through `ast`), never imported, so
nothing the agent writes runs beside the API key. Each review goes to the
model with PROMPT as the system prompt; an answer counts when its first word
is the review's label. The metric is the share of reviews answered right.

The key comes from AR_PROMPT_API_KEY: ar-tui never passes ANTHROPIC_API_KEY
to a target's commands, so this example has a variable of its own.
AR_PROMPT_BASE_URL points it at another Messages API server, AR_PROMPT_MODEL
picks the model.
"""

import ast
import asyncio
import json
import os
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_MODEL = "claude-haiku-4-5"
CONCURRENCY = 4  # requests in flight at once
METRIC = "accuracy"
REQUIRED = {"PROMPT": str, "MAX_TOKENS": int}


class ScoreError(Exception):
    """A one-line message for the user."""


def read_prompt(path: Path = HERE / "prompt.py") -> dict:
    """PROMPT and MAX_TOKENS as literals assigned at the top level."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except SyntaxError as exc:
        raise ScoreError(f"prompt.py does not parse: {exc}") from None
    values = {}
    for statement in tree.body:
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1 and isinstance(statement.targets[0], ast.Name):
            name = statement.targets[0].id
            if name in REQUIRED:
                try:
                    values[name] = ast.literal_eval(statement.value)
                except ValueError:
                    raise ScoreError(f"prompt.py: {name} must be a literal") from None
    for name, kind in REQUIRED.items():
        if not isinstance(values.get(name), kind) or isinstance(values.get(name), bool):
            raise ScoreError(f"prompt.py: {name} is missing or not a {kind.__name__}")
    if not 1 <= values["MAX_TOKENS"] <= 1024:
        raise ScoreError(f"prompt.py: MAX_TOKENS must be within [1, 1024], not {values['MAX_TOKENS']}")
    return values


def read_evalset(path: Path = HERE / "evalset.jsonl") -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def first_word(answer: str) -> str:
    words = re.findall(r"[a-z]+", answer.lower())
    return words[0] if words else ""


async def score(prompt: dict, items: list[dict]) -> float:
    from anthropic import AsyncAnthropic

    client = AsyncAnthropic(api_key=os.environ["AR_PROMPT_API_KEY"],
                            base_url=os.environ.get("AR_PROMPT_BASE_URL") or None, max_retries=4)
    model = os.environ.get("AR_PROMPT_MODEL", DEFAULT_MODEL)
    gate = asyncio.Semaphore(CONCURRENCY)
    done = 0

    async def ask(item: dict) -> bool:
        nonlocal done
        async with gate:
            message = await client.messages.create(
                model=model, max_tokens=prompt["MAX_TOKENS"], system=prompt["PROMPT"], messages=[{"role": "user", "content": item["text"]}])
        answer = "".join(block.text for block in message.content if block.type == "text")
        done += 1
        right = first_word(answer) == item["label"]
        print(f"{done}/{len(items)} {'right' if right else 'wrong'}: {answer.strip()[:60]!r}", flush=True)
        return right

    try:
        results = await asyncio.gather(*(ask(item) for item in items))
    finally:
        await client.close()
    return sum(results) / len(results)


def main() -> int:
    if not os.environ.get("AR_PROMPT_API_KEY"):
        print("prompt: error: no API key; set AR_PROMPT_API_KEY to score prompts "
              "(ar-tui never passes ANTHROPIC_API_KEY to a target)", file=sys.stderr)
        return 2
    try:
        prompt = read_prompt()
        accuracy = asyncio.run(score(prompt, read_evalset()))
    except ScoreError as exc:
        print(f"prompt: error: {exc}", file=sys.stderr)
        return 2
    print("---")
    print(f"{METRIC}: {accuracy:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
