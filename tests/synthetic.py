"""Small data in the real formats, written by the tests themselves (never downloaded)."""

import numpy as np
import pandas as pd


def ohlcv_frame(days=400, seed=0, start="2015-01-02", drift=0.0005, volatility=0.01):
    """A geometric random walk with consistent open/high/low/close/volume, business-day dates."""
    rng = np.random.default_rng(seed)
    close = 50.0 * np.exp(np.cumsum(drift + volatility * rng.standard_normal(days)))
    open_ = close * np.exp(0.003 * rng.standard_normal(days))
    high = np.maximum(open_, close) * (1 + np.abs(0.004 * rng.standard_normal(days)))
    low = np.minimum(open_, close) * (1 - np.abs(0.004 * rng.standard_normal(days)))
    volume = rng.integers(1_000_000, 5_000_000, size=days)
    dates = pd.bdate_range(start, periods=days)
    return pd.DataFrame(
        {"Date": dates.strftime("%Y-%m-%d"), "Open": open_, "High": high, "Low": low, "Close": close, "Volume": volume}
    )


def write_ohlcv_csv(path, **kwargs):
    """Write `ohlcv_frame(**kwargs)` in the Yahoo layout (`Date,Open,High,Low,Close,Volume`)."""
    ohlcv_frame(**kwargs).to_csv(path, index=False)
    return path
