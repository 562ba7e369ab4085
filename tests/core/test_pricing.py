"""The price table and the cost of token usage."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ar_tui.core.money.pricing import (
    Price,
    PriceError,
    cost_of,
    exact_cost,
    model_family,
    parse_price_overrides,
    price_for,
)
from ar_tui.core.proposer import TokenUsage


def usage(input=0, output=0, w5=0, w1h=0, read=0) -> TokenUsage:
    return TokenUsage(input_tokens=input, output_tokens=output, cache_write_5m_tokens=w5,
                      cache_write_1h_tokens=w1h, cache_read_tokens=read)


@pytest.mark.parametrize(
    "model, prices",
    [
        ("claude-sonnet-4-5", ("3", "3.75", "6", "0.30", "15")),
        ("claude-haiku-4-5", ("1", "1.25", "2", "0.10", "5")),
        ("claude-opus-4-5", ("5", "6.25", "10", "0.50", "25")),
        ("claude-sonnet-5-5", ("2", "2.50", "4", "0.10", "10")),
        ("claude-opus-5-5", ("4", "5", "8", "0.20", "20")),
    ],
)
def test_each_kind_of_token_is_priced_per_million(model, prices):
    # One million tokens of one kind at a time: each of the five prices in turn.
    kinds = ["input", "w5", "w1h", "read", "output"]
    for kind, price in zip(kinds, prices):
        assert exact_cost(model, usage(**{kind: 1_000_000})) == Decimal(price)


def test_a_mixed_request_costs_the_exact_sum():
    # 1200*3 + 350*15 + 100*3.75 + 2000*6 + 500*0.30 = 21375 dollars per million tokens
    u = usage(input=1200, output=350, w5=100, w1h=2000, read=500)
    assert exact_cost("claude-sonnet-4-5", u) == Decimal("0.021375")
    assert cost_of("claude-sonnet-4-5", u) == 0.021375


@pytest.mark.parametrize(
    "model_id, family",
    [
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-sonnet-4-5@20250929", "claude-sonnet-4-5"),
        ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5"),
        ("anthropic.claude-haiku-4-5-20251001-v1:0", "claude-haiku-4-5"),
        ("claude-3-5-haiku-latest", "claude-3-5-haiku"),
        ("Claude-Opus-4-5", "claude-opus-4-5"),
    ],
)
def test_dated_and_provider_ids_map_to_their_family(model_id, family):
    assert model_family(model_id) == family
    assert price_for(model_id) == price_for(family)
    assert price_for(model_id) is not None


def test_an_unknown_model_has_no_price_rather_than_a_guess():
    assert price_for("qwen3-coder:30b") is None
    assert cost_of("qwen3-coder:30b", usage(input=1000, output=1000)) is None
    # A name that merely resembles a known family is not priced as it.
    assert price_for("claude-sonnet-9-9") is None


def test_overrides_price_new_models_and_win_over_the_table():
    overrides = parse_price_overrides({
        "claude-new-7": {"input": 1, "cache_write_5m": 1.25, "cache_write_1h": 2, "cache_read": 0.1, "output": 4},
        "claude-sonnet-4-5": [30, 37.5, 60, 3, 150],
    })
    assert cost_of("claude-new-7-20270101", usage(output=1_000_000), overrides) == 4.0
    assert exact_cost("claude-new-7", usage(read=1_000_000), overrides) == Decimal("0.1")
    assert cost_of("claude-sonnet-4-5", usage(input=1_000_000), overrides) == 30.0
    assert cost_of("claude-sonnet-4-5", usage(input=1_000_000)) == 3.0


@pytest.mark.parametrize(
    "data, fragment",
    [
        ({"m": {"input": 1}}, "missing cache_write_5m"),
        ({"m": {"input": 1, "cache_write_5m": 1, "cache_write_1h": 1, "cache_read": 1, "output": 1, "x": 2}}, "unknown x"),
        ({"m": [1, 2, 3]}, "list of 5 numbers"),
        ({"m": [1, 2, 3, 4, "lots"]}, "prices.m.output"),
        ({"m": [1, 2, 3, 4, -5]}, "non-negative"),
        ({"m": [1, 2, True, 4, 5]}, "not a number"),
        ([1, 2], "must be a table"),
    ],
)
def test_bad_overrides_get_a_one_line_error_naming_the_entry(data, fragment):
    with pytest.raises(PriceError) as info:
        parse_price_overrides(data)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_price_of_keeps_decimal_values_exact():
    assert Price.of(0.3, 0.1, 0.2, 0.03, 1).input == Decimal("0.3")


def test_autoresearch_toml_prices_are_read_and_checked(tmp_path):
    from ar_tui.core.config import ConfigError, load_target

    (tmp_path / "autoresearch.toml").write_text('[prices]\n"claude-new-7" = [1, 1.25, 2, 0.1, 5]\n')
    assert cost_of("claude-new-7", usage(output=1_000_000), load_target(tmp_path).prices) == 5.0
    (tmp_path / "autoresearch.toml").write_text('[prices."claude-new-7"]\ninput = 1\n')
    with pytest.raises(ConfigError) as info:
        load_target(tmp_path)
    message = str(info.value)
    assert "autoresearch.toml" in message and "missing cache_write_5m" in message and "\n" not in message


def test_openai_ids_map_to_their_family_and_are_priced():
    assert model_family("gpt-4o-2024-08-06") == "gpt-4o"
    assert model_family("openai/gpt-4.1-mini") == "gpt-4.1-mini"
    # gpt-4.1-mini: $0.40 input, $0.10 cached input, $1.60 output per million.
    assert exact_cost("openai/gpt-4.1-mini", usage(input=1000, read=3000, output=100)) == Decimal("0.00086")
    assert price_for("qwen2.5-coder:7b") is None


def test_an_unknown_count_is_not_a_zero():
    total = usage(input=10, output=5, read=2)
    total.add(TokenUsage(input_tokens=1, output_tokens=1, cache_read_tokens=None))
    assert (total.input_tokens, total.output_tokens, total.cache_read_tokens) == (11, 6, None)
    assert total.unknown == ("cache_read_tokens",) and total.known("cache_read_tokens") == 0
    # Unknown input or output: no price. An unknown cache count costs nothing extra.
    assert exact_cost("gpt-4o", TokenUsage(input_tokens=None, output_tokens=10)) is None
    assert exact_cost("gpt-4o", TokenUsage(input_tokens=1000, output_tokens=None)) is None
    assert exact_cost("gpt-4o", TokenUsage(1000, 0, None, None, None)) == Decimal("0.0025")
