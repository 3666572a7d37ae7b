"""Synthetic two-series price data shared by the stock forecasting tests."""

import pytest
from threadpoolctl import threadpool_limits

from pipelines.stock_forecasting.synthetic import synthetic_ohlcv

WINDOW, HORIZON, VAL, TEST = 10, 3, 0.2, 0.2


@pytest.fixture(scope="session", autouse=True)
def _one_blas_thread():
    """statsmodels' tiny matrices gain nothing from BLAS threads, which spin on a busy machine."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture
def prices():
    """Two series of different lengths and start dates, as ``load_prices`` returns them."""
    frames = {"AAA": synthetic_ohlcv(200, seed=1), "BBB": synthetic_ohlcv(160, seed=2, start="2015-03-02")}
    for name, frame in frames.items():
        frame.attrs.update(source=f"{name}.csv", repairs={})
    return frames
