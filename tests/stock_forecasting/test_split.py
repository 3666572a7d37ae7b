"""Chronological split at shared calendar dates, purging, training-only statistics and the too-short error."""

import numpy as np
import pandas as pd
import pytest

from pipelines.errors import DataError
from pipelines.stock_forecasting.data import rows_needed
from pipelines.stock_forecasting.features import compute_features, log_return_targets, prepare_dataset
from pipelines.stock_forecasting.synthetic import synthetic_ohlcv
from tests.stock_forecasting.conftest import HORIZON, TEST, VAL, WINDOW


@pytest.fixture
def dataset(prices):
    return prepare_dataset(prices, WINDOW, HORIZON, VAL, TEST)


def _positions(dataset, index, name):
    dates = index.loc[index.series == name, "origin_date"]
    return dataset.history[name].index.get_indexer(dates)


def test_shapes_and_alignment(dataset, prices):
    for split in ("train", "val", "test"):
        x, y = getattr(dataset, f"x_{split}"), getattr(dataset, f"y_{split}")
        index = getattr(dataset, f"{split}_index")
        assert x.shape == (len(index), WINDOW, dataset.n_features) and x.dtype == np.float32
        assert y.shape == (len(index), HORIZON) and y.dtype == np.float32
        assert list(index.columns) == ["series", "origin_date", "last_close", "actual_1", "actual_2", "actual_3"]
    assert dataset.n_features == len(dataset.feature_names) == dataset.x_train.shape[2]
    assert set(dataset.test_index.series) == {"AAA", "BBB"}


def test_splits_do_not_overlap_in_time_and_are_purged(dataset, prices):
    union = prices["AAA"].index.union(prices["BBB"].index)
    val_start, test_start = union[int(len(union) * (1 - VAL - TEST) + 1e-9)], union[int(len(union) * (1 - TEST) + 1e-9)]
    for name, frame in prices.items():
        n = len(frame)
        n_train, n_val_end = (frame.index < val_start).sum(), (frame.index < test_start).sum()
        train, val, test = (_positions(dataset, getattr(dataset, f"{s}_index"), name) for s in ("train", "val", "test"))
        # every origin of a split, plus its targets, lies inside that split's days
        assert train.min() == WINDOW and train.max() + HORIZON == n_train - 1
        assert val.min() == n_train and val.max() + HORIZON == n_val_end - 1
        assert test.min() == n_val_end and test.max() + HORIZON == n - 1
        # purge: exactly `horizon` origins dropped at the end of train and of val
        assert len(train) == n_train - HORIZON - WINDOW and len(val) == n_val_end - n_train - HORIZON
        dates = frame.index
        assert dates[train.max() + HORIZON] < dates[val.min()] and dates[val.max() + HORIZON] < dates[test.min()]
        np.testing.assert_array_equal(dataset.train_closes[name], frame["close"].to_numpy()[: train.max() + 1])
        assert dataset.history[name].equals(frame)


def test_scaler_uses_training_rows_only(dataset, prices):
    rows, targets = [], []
    for name, frame in prices.items():
        train = _positions(dataset, dataset.train_index, name)
        rows.append(compute_features(frame)[: train.max()])  # feature rows of days 1 .. last train origin
        targets.append(log_return_targets(frame["close"].to_numpy(), train, HORIZON))
    rows, targets = np.concatenate(rows), np.concatenate(targets)
    pre = dataset.preprocessor
    np.testing.assert_allclose(pre.feature_mean, rows.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(pre.feature_scale, rows.std(axis=0), rtol=1e-12)
    np.testing.assert_allclose(pre.target_scale, targets.std(axis=0), rtol=1e-12)
    # so the training inputs are standardised, the test inputs only roughly
    train_rows = dataset.x_train[:, -1, :]
    np.testing.assert_allclose(dataset.y_train.std(axis=0), 1.0, rtol=1e-5)
    assert np.abs(train_rows.mean(axis=0)).max() < 0.2


def test_too_short_series_names_file_rows_and_needed():
    needed = rows_needed(WINDOW, HORIZON, VAL, TEST)
    ok = synthetic_ohlcv(needed)
    ds = prepare_dataset({"OK": ok}, WINDOW, HORIZON, VAL, TEST)
    assert min(len(ds.train_index), len(ds.val_index), len(ds.test_index)) == 1
    short = synthetic_ohlcv(needed - 1)
    short.attrs["source"] = "data/SHORT.csv"
    with pytest.raises(DataError, match=rf"data/SHORT\.csv: series 'S' has {needed - 1} rows, needs at least {needed}"):
        prepare_dataset({"OK": ok, "S": short}, WINDOW, HORIZON, VAL, TEST)


def _split_dates(dataset, split, horizon):
    """Origin dates of a split and the dates of their last targets, over all series."""
    index = getattr(dataset, f"{split}_index")
    last_targets = [
        dataset.history[name].index[_positions(dataset, index, name) + horizon] for name in pd.unique(index.series)
    ]
    return pd.DatetimeIndex(index.origin_date), last_targets[0].append(last_targets[1:])


def test_a_later_series_is_cut_at_the_same_dates():
    # OLD runs 2010-2019, NEW from 2015: by its own fractions NEW would train inside OLD's validation period.
    old, new = synthetic_ohlcv(2500, seed=3, start="2010-01-01"), synthetic_ohlcv(1000, seed=4, start="2015-01-01")
    ds = prepare_dataset({"OLD": old, "NEW": new}, 30, 5, 0.15, 0.15)
    train, train_targets = _split_dates(ds, "train", 5)
    val, val_targets = _split_dates(ds, "val", 5)
    test, _ = _split_dates(ds, "test", 5)
    assert set(ds.train_index.series) == set(ds.val_index.series) == set(ds.test_index.series) == {"OLD", "NEW"}
    assert train_targets.max() < val.min() and val_targets.max() < test.min()


@pytest.mark.parametrize(
    ("start", "n", "days", "empty"),
    [
        ("2017-01-02", 500, "0 .* 2016-09-16, 299 .* 2018-02-23, 201", "train"),  # listed after the validation start
        ("2019-01-01", 200, "0 .* 2016-11-01, 0 .* 2018-04-19, 200", "train, val"),  # entirely in the test period
    ],
)
def test_late_series_names_file_days_and_cut_dates(start, n, days, empty):
    old, late = synthetic_ohlcv(2500, seed=3, start="2010-01-01"), synthetic_ohlcv(n, seed=4, start=start)
    late.attrs["source"] = "data/LATE.csv"
    assert n >= rows_needed(30, 5, 0.15, 0.15)  # long enough on its own, misplaced in time
    message = (
        rf"data/LATE\.csv: series 'LATE' has no {empty} window at the calendar cut dates shared by all series: "
        rf"{days} on or after it; .* needs at least 36 days before the validation start"
    )
    with pytest.raises(DataError, match=message):
        prepare_dataset({"OLD": old, "LATE": late}, 30, 5, 0.15, 0.15)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window": 0}, "window=0"),
        ({"horizon": 1.5}, "horizon=1.5"),
        ({"val_fraction": 0.0}, "val_fraction=0.0"),
        ({"test_fraction": 0.6, "val_fraction": 0.5}, "val_fraction \\+ test_fraction < 1"),
    ],
)
def test_bad_arguments(prices, kwargs, message):
    args = {"window": WINDOW, "horizon": HORIZON, "val_fraction": VAL, "test_fraction": TEST, **kwargs}
    with pytest.raises(ValueError, match=message):
        prepare_dataset(prices, **args)
