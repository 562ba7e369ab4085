"""What an API request cost, in US dollars.

The price table is per million tokens, in the five kinds the Messages API bills
separately. A model missing from the table has no price: callers show its token
counts and a warning, never a guessed dollar figure. Users add or correct
models with overrides (see `parse_price_overrides`).

OpenAI-compatible servers bill three kinds: input, cached input (a cache read)
and output; they write their cache for free, so their cache-write prices are
the input price and their usage never reports a write.

Costs are summed in `Decimal` so that a run's total is the exact sum of its
requests rather than an accumulation of float rounding errors.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any

from ar_tui.core.errors import UserError


@dataclass
class TokenUsage:
    """One request's tokens (or a sum of requests'). A count the server did
    not report is None, unknown, never a zero that would price it as free;
    a sum with an unknown part is unknown."""

    input_tokens: int | None = 0  # uncached input
    output_tokens: int | None = 0
    cache_write_5m_tokens: int | None = 0
    cache_write_1h_tokens: int | None = 0
    cache_read_tokens: int | None = 0

    def add(self, other: "TokenUsage") -> None:
        for name in TOKEN_FIELDS:
            mine, theirs = getattr(self, name), getattr(other, name)
            setattr(self, name, None if mine is None or theirs is None else mine + theirs)

    def known(self, name: str) -> int:
        """A count for display and totals: an unknown one counts as 0."""
        return getattr(self, name) or 0

    @property
    def unknown(self) -> tuple[str, ...]:
        return tuple(name for name in TOKEN_FIELDS if getattr(self, name) is None)


TOKEN_FIELDS = tuple(f.name for f in fields(TokenUsage))


_MILLION = Decimal(1_000_000)


@dataclass(frozen=True)
class Price:
    """US dollars per million tokens."""

    input: Decimal
    cache_write_5m: Decimal
    cache_write_1h: Decimal
    cache_read: Decimal
    output: Decimal

    @classmethod
    def of(cls, input: float | str, cache_write_5m: float | str, cache_write_1h: float | str,
           cache_read: float | str, output: float | str) -> Price:
        # str() first: Decimal(0.3) would carry the float's binary error.
        return cls(*(Decimal(str(v)) for v in (input, cache_write_5m, cache_write_1h, cache_read, output)))


PRICE_FIELDS = tuple(f.name for f in fields(Price))

# The server-side web search tool: $10 per 1,000 searches, on top of tokens.
WEB_SEARCH_USD = Decimal("0.01")

# Anthropic's list prices (https://platform.claude.com/docs/en/about-claude/pricing).
# A 5-minute cache write costs 1.25x input, a 1-hour write 2x, a cache read 0.1x.
PRICES: dict[str, Price] = {
    "claude-opus-5-5": Price.of(4, 5, 8, "0.20", 20),
    "claude-sonnet-5-5": Price.of(2, "2.50", 4, "0.10", 10),
    "claude-opus-4-6": Price.of(5, "6.25", 10, "0.50", 25),
    "claude-sonnet-4-6": Price.of(3, "3.75", 6, "0.30", 15),
    "claude-opus-4-5": Price.of(5, "6.25", 10, "0.50", 25),
    "claude-sonnet-4-5": Price.of(3, "3.75", 6, "0.30", 15),
    "claude-haiku-4-5": Price.of(1, "1.25", 2, "0.10", 5),
    "claude-opus-4-1": Price.of(15, "18.75", 30, "1.50", 75),
    "claude-opus-4": Price.of(15, "18.75", 30, "1.50", 75),
    "claude-sonnet-4": Price.of(3, "3.75", 6, "0.30", 15),
    "claude-3-7-sonnet": Price.of(3, "3.75", 6, "0.30", 15),
    "claude-3-5-haiku": Price.of("0.80", 1, "1.60", "0.08", 4),
    "claude-3-haiku": Price.of("0.25", "0.30", "0.50", "0.03", "1.25"),
    # OpenAI's list prices (https://platform.openai.com/docs/pricing): input,
    # cached input, output; a cache write is billed as plain input.
    "gpt-5": Price.of("1.25", "1.25", "1.25", "0.125", 10),
    "gpt-5-mini": Price.of("0.25", "0.25", "0.25", "0.025", 2),
    "gpt-5-nano": Price.of("0.05", "0.05", "0.05", "0.005", "0.40"),
    "gpt-4.1": Price.of(2, 2, 2, "0.50", 8),
    "gpt-4.1-mini": Price.of("0.40", "0.40", "0.40", "0.10", "1.60"),
    "gpt-4.1-nano": Price.of("0.10", "0.10", "0.10", "0.025", "0.40"),
    "gpt-4o": Price.of("2.50", "2.50", "2.50", "1.25", 10),
    "gpt-4o-mini": Price.of("0.15", "0.15", "0.15", "0.075", "0.60"),
}

# claude-sonnet-4-5-20250929, claude-sonnet-4-5@20250929 (Vertex),
# us.anthropic.claude-sonnet-4-5-20250929-v1:0 (Bedrock), claude-3-5-haiku-latest,
# gpt-4o-2024-08-06, openai/gpt-4o (OpenRouter).
_PROVIDER_PREFIX = re.compile(r"^(?:(?:[a-z]{2,4}\.)?anthropic\.|openai/)")
_SUFFIXES = (
    re.compile(r"-v\d+(?::\d+)?$"),
    re.compile(r"@.*$"),
    re.compile(r"-latest$"),
    re.compile(r"-\d{8}$"),
    re.compile(r"-\d{4}-\d{2}-\d{2}$"),
)


class PriceError(UserError, ValueError):
    """A price override the user wrote is not usable; the message is one line."""


def model_family(model: str) -> str:
    """The price-table key for a model id: dated, provider-prefixed and
    `-latest` ids map to their family."""
    name = _PROVIDER_PREFIX.sub("", model.strip().lower())
    for suffix in _SUFFIXES:
        name = suffix.sub("", name)
    return name


def price_for(model: str, overrides: Mapping[str, Price] | None = None) -> Price | None:
    """The price of `model`: an override for the exact id wins, then an
    override for its family, then the built-in table; None when unknown."""
    family = model_family(model)
    for table in (overrides or {}, PRICES):
        for key in (model, family):
            if key in table:
                return table[key]
    return None


def cost_of(model: str, usage: TokenUsage, overrides: Mapping[str, Price] | None = None) -> float | None:
    """Dollars for one request's (or a sum of requests') token usage, or None
    when the model has no known price."""
    exact = exact_cost(model, usage, overrides)
    return None if exact is None else float(exact)


def exact_cost(model: str, usage: TokenUsage, overrides: Mapping[str, Price] | None = None) -> Decimal | None:
    """None also when the input or output count is unknown. An unknown cache
    count costs nothing extra: a server that does not report its cache reads
    counts them in the input, priced in full (an upper bound), and one that
    does not report writes does not bill them apart."""
    price = price_for(model, overrides)
    if price is None or usage.input_tokens is None or usage.output_tokens is None:
        return None
    total = (
        usage.input_tokens * price.input
        + usage.known("cache_write_5m_tokens") * price.cache_write_5m
        + usage.known("cache_write_1h_tokens") * price.cache_write_1h
        + usage.known("cache_read_tokens") * price.cache_read
        + usage.output_tokens * price.output
    )
    return total / _MILLION


def parse_price_overrides(data: Any) -> dict[str, Price]:
    """Read overrides written by a user, e.g. in TOML:

        [prices."claude-new-model"]
        input = 3
        cache_write_5m = 3.75
        cache_write_1h = 6
        cache_read = 0.30
        output = 15

    or one list per model in that order: `"claude-new-model" = [3, 3.75, 6, 0.3, 15]`.
    Raises PriceError with a one-line message naming the bad entry."""
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise PriceError("prices must be a table of model id -> prices")
    parsed: dict[str, Price] = {}
    for model, value in data.items():
        if not isinstance(model, str) or not model.strip():
            raise PriceError(f"prices: model id {model!r} must be a non-empty string")
        if isinstance(value, Price):
            parsed[model] = value
            continue
        if isinstance(value, Mapping):
            unknown = set(value) - set(PRICE_FIELDS)
            missing = [name for name in PRICE_FIELDS if name not in value]
            if unknown or missing:
                problem = f"unknown {', '.join(sorted(map(str, unknown)))}" if unknown else f"missing {', '.join(missing)}"
                raise PriceError(f"prices.{model}: {problem}; give {', '.join(PRICE_FIELDS)} in $ per million tokens")
            numbers = [value[name] for name in PRICE_FIELDS]
        elif isinstance(value, (list, tuple)) and len(value) == len(PRICE_FIELDS):
            numbers = list(value)
        else:
            raise PriceError(
                f"prices.{model}: expected a table or a list of 5 numbers ({', '.join(PRICE_FIELDS)})"
            )
        for name, number in zip(PRICE_FIELDS, numbers):
            if isinstance(number, bool) or not isinstance(number, (int, float, str)):
                raise PriceError(f"prices.{model}.{name}: {number!r} is not a number")
            try:
                amount = Decimal(str(number))
            except ArithmeticError:
                raise PriceError(f"prices.{model}.{name}: {number!r} is not a number") from None
            if not amount.is_finite() or amount < 0:
                raise PriceError(f"prices.{model}.{name}: {number!r} must be a non-negative number")
        parsed[model] = Price.of(*numbers)
    return parsed
