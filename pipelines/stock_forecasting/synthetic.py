"""SYNTHETIC daily prices: geometric random walks with consistent OHLC and a noisy volume.

The tests use these series instead of real prices, and `python -m pipelines.stock_forecasting.synthetic
DIR` writes a folder of them as CSVs that `data.load_prices` (and `--set data.path=DIR`) reads. A
random walk cannot be forecast better than the naive forecast: scores on these series say the
pipeline runs, not how good a model is.

Usage:
    python -m pipelines.stock_forecasting.synthetic DIR [--series 3] [--days 750] [--seed 0] [--layout yahoo]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

LAYOUTS = {
    "yahoo": ["Date", "Open", "High", "Low", "Close", "Adj Close", "Volume"],
    "sp500": ["date", "open", "high", "low", "close", "volume", "Name"],
    "huge": ["Date", "Open", "High", "Low", "Close", "Volume", "OpenInt"],
}


def synthetic_ohlcv(
    n: int, seed: int = 0, start: str = "2015-01-02", drift: float = 0.0005, vol: float = 0.01
) -> pd.DataFrame:
    """A geometric random walk with consistent open/high/low and a noisy volume, on business days.

    Args:
        n: days.
        seed: random seed. Default: 0.
        start: first business day. Default: ``"2015-01-02"``.
        drift: mean daily log return. Default: 0.0005.
        vol: standard deviation of the daily log return. Default: 0.01.

    Returns:
        A frame as ``data.load_prices`` returns one: a ``DatetimeIndex`` named ``date`` and float64
        ``open, high, low, close, volume`` columns, with ``low <= open, close <= high``.
    """
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(drift + vol * rng.standard_normal(n)))
    open_ = np.concatenate([[close[0]], close[:-1]]) * np.exp(0.002 * rng.standard_normal(n))
    high = np.maximum(open_, close) * np.exp(np.abs(0.004 * rng.standard_normal(n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(0.004 * rng.standard_normal(n)))
    volume = np.round(1e6 * np.exp(0.3 * rng.standard_normal(n)))
    index = pd.DatetimeIndex(pd.bdate_range(start, periods=n), name="date")
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=index)


def write_csv(frame: pd.DataFrame, path: str | Path, layout: str = "yahoo", name: str = "TEST") -> Path:
    """Write a price frame as a CSV in one of the layouts ``data.load_prices`` reads.

    Args:
        frame: a frame as ``synthetic_ohlcv`` returns it.
        path: the CSV file to write.
        layout: one of ``LAYOUTS`` (``yahoo``, ``sp500``, ``huge``). Default: ``"yahoo"``.
        name: the series name written in the ``Name`` column of the ``sp500`` layout. Default: ``"TEST"``.

    Returns:
        ``path``.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"Expected layout in {', '.join(LAYOUTS)}. Received: layout={layout!r}")
    out = pd.DataFrame(
        {
            "date": frame.index.strftime("%Y-%m-%d"),
            "open": frame["open"],
            "high": frame["high"],
            "low": frame["low"],
            "close": frame["close"],
            "adj close": frame["close"] * 0.9,
            "volume": frame["volume"].astype(np.int64),
            "name": name,
            "openint": 0,
        }
    )
    columns = LAYOUTS[layout]
    out = out[[c.lower() for c in columns]]
    out.columns = columns
    out.to_csv(path, index=False)
    return Path(path)


def write_synthetic_prices(
    root: str | Path, series: int = 3, days: int = 750, seed: int = 0, layout: str = "yahoo"
) -> list[Path]:
    """Write a folder of synthetic price series, one CSV per series (``SYN1.csv``, ``SYN2.csv``, ...).

    Series ``i`` uses seed ``seed + i`` and starts ``i`` months after the first, so the folder
    exercises the split at calendar dates shared by series of different spans.

    Args:
        root: the folder to write (created).
        series: number of series. Default: 3.
        days: business days per series. Default: 750 (about three years).
        seed: random seed of the first series. Default: 0.
        layout: one of ``LAYOUTS``. Default: ``"yahoo"``.

    Returns:
        The CSV paths, in series order.
    """
    for arg, value in (("series", series), ("days", days)):
        if value < 1:
            raise ValueError(f"Expected a positive integer for {arg}. Received: {arg}={value}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(series):
        start = pd.Timestamp("2015-01-02") + pd.DateOffset(months=i)
        frame = synthetic_ohlcv(days, seed=seed + i, start=start.strftime("%Y-%m-%d"))
        paths.append(write_csv(frame, root / f"SYN{i + 1}.csv", layout, name=f"SYN{i + 1}"))
    return paths


def main(argv: list[str] | None = None) -> None:
    """`python -m pipelines.stock_forecasting.synthetic DIR`: write a folder of SYNTHETIC price CSVs.

    Args:
        argv: command-line arguments. Default: ``sys.argv[1:]``.
    """
    parser = argparse.ArgumentParser(description="Write SYNTHETIC daily OHLCV CSVs (geometric random walks).")
    parser.add_argument("root", help="folder to write (created)")
    parser.add_argument("--series", type=int, default=3, help="number of series (default 3)")
    parser.add_argument("--days", type=int, default=750, help="business days per series (default 750)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the first series (default 0)")
    parser.add_argument("--layout", choices=sorted(LAYOUTS), default="yahoo", help="CSV layout (default yahoo)")
    args = parser.parse_args(argv)
    try:
        write_synthetic_prices(args.root, series=args.series, days=args.days, seed=args.seed, layout=args.layout)
    except ValueError as error:
        parser.exit(2, f"error: {error}\n")
    print(args.root)


if __name__ == "__main__":
    main()
