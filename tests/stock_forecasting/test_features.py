"""Per-day features, causality of windows and scaler, and the preprocessor's round-trips."""

import json
import pickle

import numpy as np
import pandas as pd
import pytest

from pipelines.errors import DataError
from pipelines.stock_forecasting.features import FEATURE_NAMES, StockPreprocessor, compute_features, prepare_dataset
from tests.stock_forecasting.conftest import HORIZON, TEST, VAL, WINDOW


def test_features_by_hand():
    rows = np.array([[10.0, 11.0, 9.0, 10.0, 99.0], [11.0, 12.0, 10.0, 12.0, 199.0]])
    expected = [np.log(12 / 10), np.log(12 / 10), np.log(12 / 11), np.log(11 / 10), np.log(200 / 100)]
    features = compute_features(rows)
    assert features.shape == (1, len(FEATURE_NAMES))
    np.testing.assert_allclose(features[0], expected)


def test_features_reject_bad_values():
    rows = np.array([[10.0, 11.0, 9.0, 10.0, 99.0], [11.0, 12.0, 0.0, 12.0, 199.0]])
    with pytest.raises(DataError, match="row 1, column 'low'"):
        compute_features(rows)


def _dataset(prices):
    return prepare_dataset(prices, WINDOW, HORIZON, VAL, TEST)


def _changed_after(prices, name, day):
    """A copy of ``prices`` where every row of ``name`` after position ``day`` is different."""
    changed = {k: v.copy() for k, v in prices.items()}
    frame = changed[name]
    rng = np.random.default_rng(99)
    frame.iloc[day + 1 :] = frame.iloc[day + 1 :].to_numpy() * np.exp(
        0.05 * rng.standard_normal((len(frame) - day - 1, 5))
    )
    return changed


def test_features_and_windows_are_causal(prices):
    frame = prices["AAA"]
    pre = _dataset(prices).preprocessor
    for day in (WINDOW, 120, 190):
        changed = _changed_after(prices, "AAA", day)["AAA"]
        np.testing.assert_array_equal(compute_features(frame)[:day], compute_features(changed)[:day])
        # window i ends on day WINDOW + i, so windows with origin <= day are the first day - WINDOW + 1
        n = day - WINDOW + 1
        np.testing.assert_array_equal(pre.windows_from_ohlcv(frame)[:n], pre.windows_from_ohlcv(changed)[:n])
        assert not np.array_equal(pre.windows_from_ohlcv(frame)[n:], pre.windows_from_ohlcv(changed)[n:])


def test_dataset_windows_and_scaler_ignore_rows_after_training(prices):
    original = _dataset(prices)
    last_train = prices["AAA"].index.get_loc(original.train_index.query("series == 'AAA'").origin_date.max())
    day = last_train + 5  # val period: changes must not reach the scaler nor earlier windows
    changed = _dataset(_changed_after(prices, "AAA", day))
    for field in ("feature_mean", "feature_scale", "target_scale"):
        np.testing.assert_array_equal(getattr(original.preprocessor, field), getattr(changed.preprocessor, field))
    np.testing.assert_array_equal(original.x_train, changed.x_train)
    np.testing.assert_array_equal(original.y_train, changed.y_train)
    early = (original.val_index.series == "AAA") & (original.val_index.origin_date <= prices["AAA"].index[day])
    assert early.sum() > 0
    np.testing.assert_array_equal(original.x_val[early], changed.x_val[early])
    assert not np.array_equal(original.x_val[~early], changed.x_val[~early])


def test_scaler_changes_when_training_rows_change(prices):
    changed = _dataset(_changed_after(prices, "AAA", 50))
    assert not np.array_equal(_dataset(prices).preprocessor.feature_mean, changed.preprocessor.feature_mean)


def test_preprocessor_round_trips_through_json_and_pickle(prices):
    pre = _dataset(prices).preprocessor
    frame = prices["BBB"]
    for copy in (StockPreprocessor.from_dict(json.loads(json.dumps(pre.to_dict()))), pickle.loads(pickle.dumps(pre))):
        assert (copy.window, copy.horizon, copy.feature_names) == (WINDOW, HORIZON, FEATURE_NAMES)
        for field in ("feature_mean", "feature_scale", "target_scale"):
            np.testing.assert_array_equal(getattr(copy, field), getattr(pre, field))
        np.testing.assert_array_equal(copy.windows_from_ohlcv(frame), pre.windows_from_ohlcv(frame))


def test_windows_from_window_plus_one_rows_match_the_dataset(prices):
    ds = _dataset(prices)
    frame = prices["BBB"]
    rows = np.flatnonzero(ds.test_index.series == "BBB")
    for i in (rows[0], rows[-1]):
        row = ds.test_index.iloc[i]
        t = frame.index.get_loc(row.origin_date)
        block = frame.iloc[t - WINDOW : t + 1]
        renamed = block.rename(columns=str.title).reset_index()  # case-insensitive, extra column ignored
        for given in (block, renamed, block.to_numpy()):
            windows = ds.preprocessor.windows_from_ohlcv(given)
            assert windows.shape == (1, WINDOW, len(FEATURE_NAMES)) and windows.dtype == np.float32
            np.testing.assert_array_equal(windows[0], ds.x_test[i])
    assert ds.preprocessor.windows_from_ohlcv(frame).shape == (len(frame) - WINDOW, WINDOW, len(FEATURE_NAMES))


def test_windows_from_too_few_rows(prices):
    pre = _dataset(prices).preprocessor
    with pytest.raises(DataError, match=rf"got {WINDOW} OHLCV rows, but window={WINDOW} needs at least {WINDOW + 1}"):
        pre.windows_from_ohlcv(prices["AAA"].iloc[:WINDOW])
    with pytest.raises(DataError, match=r"missing column\(s\) \['volume'\]"):
        pre.windows_from_ohlcv(prices["AAA"].drop(columns="volume"))


def test_to_prices_inverts_the_targets(prices):
    ds = _dataset(prices)
    last = ds.test_index["last_close"].to_numpy()
    actual = ds.test_index[[f"actual_{k}" for k in range(1, HORIZON + 1)]].to_numpy()
    np.testing.assert_allclose(ds.preprocessor.to_prices(ds.y_test, last), actual, rtol=1e-5)
    np.testing.assert_allclose(ds.preprocessor.to_prices(np.zeros(HORIZON), 5.0), [[5.0] * HORIZON])
    assert isinstance(ds.test_index["origin_date"].iloc[0], pd.Timestamp)
