"""Data, split and scoring of the forecast example: fixed, the agent never edits it.

The series is the yearly mean sunspot number, 1700-2008 (309 years, public
data from SIDC), as the statsmodels package ships it
(`statsmodels/datasets/sunspots/sunspots.csv`). The file is read straight
from the installed package, so nothing is downloaded and statsmodels itself
is not imported (that would take seconds).

The last HELD_OUT_YEARS years are held out. A model forecasts each of them
one year ahead from the true years before it; the score is the root mean
squared error of those forecasts, in sunspots (lower is better).

    python prepare.py                      # check the data is there
    python prepare.py --score PREDICTIONS  # the trusted scorer (ar-tui's evaluate command)
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import math
import os
import sys
from pathlib import Path

import numpy as np

HELD_OUT_YEARS = 40  # 1969-2008: almost four solar cycles
SCALE = 100.0  # sunspot numbers are divided by this before a model sees them
METRIC = "val_rmse"


class PrepareError(Exception):
    """A one-line message for the user."""


def data_file() -> Path:
    spec = importlib.util.find_spec("statsmodels")
    if spec is None or not spec.submodule_search_locations:
        raise PrepareError("the sunspot series ships with statsmodels: pip install statsmodels")
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "sunspots" / "sunspots.csv"
    if not path.is_file():
        raise PrepareError(f"statsmodels is installed but {path} is missing; reinstall statsmodels")
    return path


def load_series() -> tuple[np.ndarray, np.ndarray]:
    """(years, sunspot numbers), in order."""
    with open(data_file(), newline="") as handle:
        rows = [(int(float(r["YEAR"])), float(r["SUNACTIVITY"])) for r in csv.DictReader(handle)]
    years, values = zip(*rows)
    return np.asarray(years), np.asarray(values, dtype=np.float64)


def split() -> tuple[np.ndarray, np.ndarray]:
    """(training series, held-out series) in sunspots."""
    _, values = load_series()
    return values[:-HELD_OUT_YEARS], values[-HELD_OUT_YEARS:]


def training_windows(history: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs (n, history) and next-year targets (n,) from the training years, scaled by SCALE."""
    train, _ = split()
    scaled = train / SCALE
    inputs = np.stack([scaled[i : i + history] for i in range(len(scaled) - history)])
    return inputs, scaled[history:]


def held_out_inputs(history: int) -> np.ndarray:
    """For each held-out year, the `history` true years before it (scaled): what a forecast may use."""
    _, values = load_series()
    scaled = values / SCALE
    start = len(values) - HELD_OUT_YEARS
    if history > start:
        raise PrepareError(f"a history of {history} years is longer than the {start} training years")
    return np.stack([scaled[i - history : i] for i in range(start, len(values))])


def score(predictions: np.ndarray) -> float:
    """RMSE of one-year-ahead forecasts of the held-out years, in sunspots."""
    predictions = np.asarray(predictions, dtype=np.float64).reshape(-1)
    if predictions.shape != (HELD_OUT_YEARS,):
        raise PrepareError(f"expected {HELD_OUT_YEARS} forecasts, got {predictions.size}")
    _, truth = split()
    if not np.all(np.isfinite(predictions)):
        return math.nan
    return float(np.sqrt(np.mean((predictions - truth) ** 2)))


def finish(predictions: np.ndarray, **extra: float) -> None:
    """What train.py calls at the end: save the forecasts where ar-tui's
    trusted scorer reads them (AR_CHECKPOINT), and print the result block."""
    predictions = np.asarray(predictions, dtype=np.float64).reshape(-1)
    checkpoint = os.environ.get("AR_CHECKPOINT")
    if checkpoint:
        with open(checkpoint, "wb") as handle:
            np.save(handle, predictions)
    print("---")
    print(f"{METRIC}: {score(predictions):.6f}")
    for name, value in extra.items():
        print(f"{name}: {value:.6f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="prepare.py", description=__doc__.splitlines()[0])
    parser.add_argument("--score", metavar="PREDICTIONS", help="score forecasts saved by train.py (.npy)")
    args = parser.parse_args(argv)
    try:
        if args.score:
            with open(args.score, "rb") as handle:
                predictions = np.load(handle, allow_pickle=False)
            print("---")
            print(f"{METRIC}: {score(predictions):.6f}")
        else:
            years, values = load_series()
            print(f"sunspots {years[0]}-{years[-1]}: {len(values)} years, the last {HELD_OUT_YEARS} held out")
    except PrepareError as exc:
        print(f"prepare: error: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"prepare: error: cannot read the forecasts: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
