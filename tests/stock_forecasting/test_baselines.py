"""Naive, drift and walk-forward ARIMA baselines use only the past and land where they should."""

import numpy as np
import pandas as pd
import pytest

from pipelines.stock_forecasting.baselines import (
    arima_forecast,
    baseline_forecasts,
    drift_forecast,
    naive_forecast,
)
from pipelines.stock_forecasting.features import prepare_dataset
from pipelines.stock_forecasting.synthetic import synthetic_ohlcv
from tests.stock_forecasting.conftest import HORIZON, TEST, VAL, WINDOW


def _frame(close):
    close = np.asarray(close, dtype=float)
    index = pd.DatetimeIndex(pd.bdate_range("2010-01-04", periods=len(close)), name="date")
    return pd.DataFrame(
        {"open": close, "high": close * 1.01, "low": close * 0.99, "close": close, "volume": 1000.0}, index=index
    )


def test_naive_repeats_the_last_close(prices):
    ds = prepare_dataset(prices, WINDOW, HORIZON, VAL, TEST)
    naive = naive_forecast(ds.test_index)
    assert naive.shape == (len(ds.test_index), HORIZON)
    np.testing.assert_array_equal(naive, np.repeat(ds.test_index["last_close"].to_numpy()[:, None], HORIZON, 1))


def test_drift_is_exact_on_a_straight_line():
    ds = prepare_dataset({"LINE": _frame(100 + 0.5 * np.arange(120))}, 5, 4, 0.2, 0.2)
    actual = ds.test_index[[f"actual_{k}" for k in range(1, 5)]].to_numpy()
    np.testing.assert_allclose(drift_forecast(ds, ds.test_index), actual, rtol=1e-12)
    assert not np.allclose(naive_forecast(ds.test_index), actual)


@pytest.fixture(scope="module")
def random_walk():
    """A log random walk with drift: ARIMA should find (close to) the drift."""
    frame = synthetic_ohlcv(600, seed=5, drift=0.002, vol=0.01)
    frame.attrs["source"] = "walk.csv"
    return prepare_dataset({"WALK": frame}, 10, 5, 0.15, 0.15)


def test_arima_on_a_random_walk_with_drift_is_close_to_drift(random_walk):
    ds = random_walk
    arima, drift = arima_forecast(ds, ds.test_index), drift_forecast(ds, ds.test_index)
    assert arima.shape == drift.shape == (len(ds.test_index), 5)
    np.testing.assert_allclose(arima, drift, rtol=0.01)
    # it does forecast growth, unlike the random walk without drift
    assert (arima[:, -1] > ds.test_index["last_close"].to_numpy()).mean() > 0.9


def test_arima_walk_forward_uses_only_data_up_to_each_origin(random_walk):
    ds = random_walk
    frame = ds.history["WALK"]
    cut = len(ds.test_index) // 2
    cut_date = ds.test_index["origin_date"].iloc[cut]
    changed = frame.copy()
    changed.loc[changed.index > cut_date, "close"] *= 1.3
    ds_changed = prepare_dataset({"WALK": changed}, 10, 5, 0.15, 0.15)
    before = arima_forecast(ds, ds.test_index, order=(1, 1, 1))
    after = arima_forecast(ds_changed, ds_changed.test_index, order=(1, 1, 1))
    np.testing.assert_allclose(before[: cut + 1], after[: cut + 1], rtol=1e-10)
    assert not np.allclose(before[cut + 1 :], after[cut + 1 :])


def test_arima_matches_the_library_forecast_from_the_cut_series(random_walk):
    from pipelines.stock_forecasting.baselines import _fit_arima

    ds = random_walk
    log_close = np.log(ds.history["WALK"]["close"].to_numpy())
    fitted = _fit_arima(np.log(ds.train_closes["WALK"]), (1, 1, 1))
    forecast = arima_forecast(ds, ds.test_index, order=(1, 1, 1))
    for i in (0, len(ds.test_index) - 1):
        t = ds.history["WALK"].index.get_loc(ds.test_index["origin_date"].iloc[i])
        expected = np.exp(fitted.apply(log_close[: t + 1]).forecast(5))
        np.testing.assert_allclose(forecast[i], expected, rtol=1e-9)


def test_baseline_forecasts_cover_the_same_windows(prices):
    ds = prepare_dataset(prices, WINDOW, HORIZON, VAL, TEST)
    subset = ds.test_index.iloc[::3]
    forecasts = baseline_forecasts(ds, subset)
    assert set(forecasts) == {"naive", "drift", "arima"}
    for f in forecasts.values():
        assert f.shape == (len(subset), HORIZON) and np.isfinite(f).all()
