"""A trend-following trading strategy: long when the fast moving average of
the closing price is above the slow one, out of the market otherwise. The
agent edits this file; backtest.py (fixed) replays the price history day by
day and scores what this strategy would have earned.
"""

import numpy as np

FAST_LENGTH = 8  # days in the fast moving average
SLOW_LENGTH = 64  # days in the slow moving average
ENTRY_MARGIN = 0.01  # how far (as a share of the price) the fast average must clear the slow one
SHORT_FRACTION = 0.0  # how much to sell short when the trend points down (0: never short)


def position(closes):
    """The exposure to hold from today's close to tomorrow's, between -1
    (all short) and 1 (all long), from the closing prices up to today."""
    if len(closes) < SLOW_LENGTH:
        return 0.0
    fast = np.mean(closes[-FAST_LENGTH:])
    slow = np.mean(closes[-SLOW_LENGTH:])
    if fast > slow * (1 + ENTRY_MARGIN):
        return 1.0
    if fast < slow * (1 - ENTRY_MARGIN):
        return -SHORT_FRACTION
    return 0.0
