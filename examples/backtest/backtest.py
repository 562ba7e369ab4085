"""Replays a price history through strategy.py: fixed, the agent never edits it.

The prices are the daily closes of NASDAQ:GOOG from August 2004 to March 2013
(2,148 trading days), as the `backtesting` package ships them
(`backtesting/test/GOOG.csv`). The file is read straight from the installed
package, so nothing is downloaded and neither backtesting nor pandas is
imported.

Each day the strategy is shown the closes up to that day only (a read-only
array) and names an exposure in [-1, 1]; it earns that exposure times the
next day's return, minus COMMISSION per unit of exposure it trades. The metric
is the annualised Sharpe ratio of those daily returns (higher is better;
holding the stock throughout scores about 0.9).
"""

import csv
import importlib.util
import math
import sys
from pathlib import Path

import numpy as np

COMMISSION = 0.001  # 0.1% of the traded amount, each way
TRADING_DAYS = 252  # per year, to annualise
METRIC = "sharpe"


def prices():
    spec = importlib.util.find_spec("backtesting")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("backtest: error: the GOOG price series ships with backtesting: pip install backtesting")
    path = Path(list(spec.submodule_search_locations)[0]) / "test" / "GOOG.csv"
    with open(path, newline="") as handle:
        closes = [float(row["Close"]) for row in csv.DictReader(handle)]
    return np.asarray(closes)


def sharpe(daily):
    sd = float(np.std(daily))
    return float(np.mean(daily)) / sd * math.sqrt(TRADING_DAYS) if sd > 0 else 0.0


def main():
    from strategy import position

    closes = prices()
    closes.setflags(write=False)
    returns = closes[1:] / closes[:-1] - 1.0
    held = 0.0
    daily = np.empty(len(returns))
    traded = 0.0
    for day in range(len(returns)):
        wanted = float(position(closes[: day + 1]))
        if not (math.isfinite(wanted) and -1.0 <= wanted <= 1.0):
            raise ValueError(f"day {day}: position {wanted!r} is not within [-1, 1]")
        cost = abs(wanted - held) * COMMISSION
        traded += abs(wanted - held)
        held = wanted
        daily[day] = held * returns[day] - cost
        if (day + 1) % 500 == 0:
            print(f"day {day + 1}/{len(returns)}: equity {np.prod(1 + daily[: day + 1]):.3f}", flush=True)
    equity = float(np.prod(1 + daily))
    print("---")
    print(f"{METRIC}: {sharpe(daily):.6f}")
    print(f"buy_and_hold_sharpe: {sharpe(returns):.6f}")
    print(f"final_equity: {equity:.6f}")
    print(f"turnover: {traded:.1f}")


if __name__ == "__main__":
    sys.exit(main())
