"""Small synthetic price series and CSV writers in the real file layouts, for the stock tests."""

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
    """A geometric random walk with consistent open/high/low and a noisy volume, on business days."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(drift + vol * rng.standard_normal(n)))
    open_ = np.concatenate([[close[0]], close[:-1]]) * np.exp(0.002 * rng.standard_normal(n))
    high = np.maximum(open_, close) * np.exp(np.abs(0.004 * rng.standard_normal(n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(0.004 * rng.standard_normal(n)))
    volume = np.round(1e6 * np.exp(0.3 * rng.standard_normal(n)))
    index = pd.DatetimeIndex(pd.bdate_range(start, periods=n), name="date")
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=index)


def write_csv(frame: pd.DataFrame, path: Path, layout: str, name: str = "TEST") -> Path:
    """Write ``frame`` as a CSV in one of ``LAYOUTS``; returns the path."""
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
    return path
