"""Which number a training script's output reports: its name, a pattern that
matches its last value, and which way is better. Pure: lines in, a guess out.

Two shapes of output are common. karpathy/autoresearch and the bundled
examples end with a result block after a `---` line (`val_bpb: 0.99`), its
first line the metric. Most training scripts print at every evaluation
(`step 500: train loss 1.61, val loss 1.79`), and the last value of a
validation loss is the result.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NUMBER = r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?"
# `val loss 1.79`, `val_loss: 1.79`, `eval/loss=1.79`, `accuracy 0.93`
_PAIR = re.compile(rf"([A-Za-z][\w/.\-]*(?: [A-Za-z][\w/.\-]*)?)\s*(?::|=|\s)\s*({_NUMBER})(?![\w.])")
# Counters and settings, never the result.
_NOT_METRIC = re.compile(r"^(?:step|steps|iter|iters|iteration|epoch|epochs|batch|lr|learning.rate|time|ms|dt|"
                         r"elapsed|seconds|tokens|tok/s|mfu|seed|repeat|day|days|peak.*|.*memory.*|.*vram.*|"
                         r"num.*|n_.*|total.*|training_seconds|.*_mb|grad.*|norm)$", re.IGNORECASE)
_HELD_OUT = re.compile(r"(?:^|[\s_/.-])(?:val|valid|validation|eval|test|dev|held.?out)(?:$|[\s_/.-])", re.IGNORECASE)
_QUALITY = re.compile(r"loss|bpb|bpc|nll|ppl|perplexity|rmse|mse|mae|error|err|acc|accuracy|f1|auc|score|sharpe|"
                      r"reward|return|bleu|rouge|precision|recall", re.IGNORECASE)
_HIGHER_IS_BETTER = re.compile(r"acc|accuracy|f1|auc|score|sharpe|reward|return|bleu|rouge|precision|recall|"
                               r"throughput|per_s|per_sec|/s$|mfu|win|success", re.IGNORECASE)
_TRAINING = re.compile(r"(?:^|[\s_/.-])train(?:ing)?(?:$|[\s_/.-])", re.IGNORECASE)


@dataclass(frozen=True)
class MetricGuess:
    name: str  # for [metric] name: `val_loss` for `val loss`
    shown: str  # as the script prints it
    value: float  # its last value
    direction: str  # "min" or "max"
    pattern: str | None  # None: the default `name: value` line matches it
    why: str  # one line

    @property
    def direction_why(self) -> str:
        return "higher is better" if self.direction == "max" else "lower is better"


def config_name(shown: str) -> str:
    return re.sub(r"\s+", "_", shown.strip())


def direction_of(name: str) -> str:
    return "max" if _HIGHER_IS_BETTER.search(name) and not re.search(r"error|loss|err\b", name, re.I) else "min"


def pairs(line: str) -> list[tuple[str, str]]:
    """The `name value` pairs on one output line, counters left out."""
    found = []
    for name, value in _PAIR.findall(line):
        words = name.split(" ")
        # `step 500: train loss` reads `step 500`, then `train loss 1.61`.
        if len(words) == 2 and _NOT_METRIC.match(words[0]) and not _QUALITY.search(words[0]):
            name = words[1]
        if not _NOT_METRIC.match(name) and not _NOT_METRIC.match(config_name(name)):
            found.append((name, value))
    return found


def default_pattern_matches(name: str, lines: list[str]) -> bool:
    line_re = re.compile(rf"^\s*{re.escape(name)}\s*[:=]\s*(\S+)")
    return any(line_re.match(line) for line in lines)


def guess_metric(output: str) -> list[MetricGuess]:
    """The candidates for the metric, best first."""
    lines = [line.rstrip() for line in output.replace("\r", "\n").splitlines()]
    last: dict[str, str] = {}
    order: list[str] = []
    for line in lines:
        for name, value in pairs(line):
            if name not in last:
                order.append(name)
            last[name] = value
    block: list[str] = []
    separators = [i for i, line in enumerate(lines) if line.strip() == "---"]
    if separators:
        for line in lines[separators[-1] + 1:]:
            block += [name for name, _ in pairs(line)]

    def score(name: str) -> tuple[int, int]:
        rank = 0
        if block and name == block[0]:
            rank += 8
        elif name in block:
            rank += 2
        if _HELD_OUT.search(name):
            rank += 4
        if _QUALITY.search(name):
            rank += 3
        if _TRAINING.search(name):
            rank -= 3
        return rank, -order.index(name)

    guesses = []
    for name in sorted(order, key=score, reverse=True):
        if score(name)[0] <= 0:
            continue
        try:
            value = float(last[name])
        except ValueError:
            continue
        key = config_name(name)
        pattern = None
        if not (key == name and default_pattern_matches(name, lines)):
            pattern = re.escape(name).replace("\\ ", " ") + r"\s*[:=]?\s*([-+0-9.eE]+)"
        if block and name == block[0]:
            why = f"the first line of the result block after `---` ({name}: {last[name]})"
        elif _HELD_OUT.search(name):
            why = f"a held-out {'quality' if _QUALITY.search(name) else 'number'} the script prints, last {last[name]}"
        else:
            why = f"the most metric-like number the script prints, last {last[name]}"
        guesses.append(MetricGuess(key, name, value, direction_of(key), pattern, why))
    return guesses
