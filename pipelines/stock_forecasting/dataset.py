"""Windows, targets and a leak-free chronological train/val/test split for one or more series.

All series are cut at the same two calendar dates, so no series trains on days that another series
validates or tests on. Over the sorted union of every series' dates (``N`` days), validation starts
on union day ``floor(N * (1 - val_fraction - test_fraction))`` and testing on union day
``floor(N * (1 - test_fraction))``. A series' days before the validation start (``[0, n_train)``)
are its training days, those from there to the test start (``[n_train, n_val_end)``) its validation
days and the rest its test days; one series alone, or series on the same dates, is cut by the
fractions of its own days. A series needs ``rows_needed`` days, and windows in every split at the
shared dates. An origin (last observed day of a window) belongs to the split of its
day. Origins whose targets would reach into the next split (the last ``horizon`` train and val
origins) are purged. The scaler sees only the feature rows of days up to each series' last training
origin, and the target scale only the training targets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipelines.errors import DataError
from pipelines.stock_forecasting.features import (
    FEATURE_NAMES,
    StockPreprocessor,
    compute_features,
    log_return_targets,
)

SPLITS = ("train", "val", "test")


@dataclass(eq=False)
class StockDataset:
    """Model inputs, targets and the bookkeeping needed to evaluate price forecasts.

    ``x_*`` are float32 ``(n, window, n_features)``, ``y_*`` float32 ``(n, horizon)`` scaled
    cumulative log returns. Row ``i`` of ``x_test`` is row ``i`` of ``test_index``, whose columns
    are ``series, origin_date, last_close, actual_1 .. actual_<horizon>`` (prices).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    preprocessor: StockPreprocessor
    train_index: pd.DataFrame
    val_index: pd.DataFrame
    test_index: pd.DataFrame
    train_closes: dict[str, np.ndarray]
    history: dict[str, pd.DataFrame]
    feature_names: tuple[str, ...]
    n_features: int
    window: int
    horizon: int


def split_origins(
    n_rows: int, window: int, horizon: int, val_fraction: float, test_fraction: float
) -> dict[str, np.ndarray]:
    """Origin positions of each split for a series of ``n_rows`` days, purged at the boundaries.

    Args:
        n_rows: days in the series.
        window: feature rows per window; the first origin is day ``window``.
        horizon: future steps per target.
        val_fraction: share of the days for validation.
        test_fraction: share of the days for testing.

    Returns:
        ``{"train": positions, "val": positions, "test": positions}`` (int arrays, may be empty).
    """
    n_train, n_val_end = _cut_positions(n_rows, val_fraction, test_fraction)
    return origins_between_cuts(n_rows, n_train, n_val_end, window, horizon)


def origins_between_cuts(n_rows: int, n_train: int, n_val_end: int, window: int, horizon: int) -> dict[str, np.ndarray]:
    """Origin positions of each split of a series whose split boundaries are given, purged at the boundaries.

    Args:
        n_rows: days in the series.
        n_train: the series' days before the validation start.
        n_val_end: the series' days before the test start.
        window: feature rows per window; the first origin is day ``window``.
        horizon: future steps per target.

    Returns:
        ``{"train": positions, "val": positions, "test": positions}`` (int arrays, may be empty).
    """
    bounds = {"train": (0, n_train), "val": (n_train, n_val_end), "test": (n_val_end, n_rows)}
    # An origin t needs days t - window .. t + horizon, all before the end of its own split.
    return {name: np.arange(max(start, window), end - horizon) for name, (start, end) in bounds.items()}


def calendar_cuts(
    prices: dict[str, pd.DataFrame], val_fraction: float, test_fraction: float
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The validation and test start dates shared by all series.

    Args:
        prices: ``{series: frame}`` with sorted, unique dates as the index.
        val_fraction: share of the union of the series' dates for validation.
        test_fraction: share of the union of the series' dates for testing.

    Returns:
        ``(val_start, test_start)``: days of the union of all series' dates.
    """
    dates = pd.DatetimeIndex(np.unique(np.concatenate([frame.index.to_numpy() for frame in prices.values()])))
    n_train, n_val_end = _cut_positions(len(dates), val_fraction, test_fraction)
    return dates[n_train], dates[n_val_end]


def rows_needed(window: int, horizon: int, val_fraction: float, test_fraction: float) -> int:
    """Fewest days that give at least one origin in every split."""
    n_rows = window + horizon + 1
    while min(len(o) for o in split_origins(n_rows, window, horizon, val_fraction, test_fraction).values()) < 1:
        n_rows += 1
    return n_rows


def prepare_dataset(
    prices: dict[str, pd.DataFrame], window: int, horizon: int, val_fraction: float, test_fraction: float
) -> StockDataset:
    """Build scaled windows and targets for every series and split them at shared calendar dates.

    Args:
        prices: ``{series: frame}`` as ``data.load_prices`` returns it.
        window: days of features per input window.
        horizon: future daily closes per target.
        val_fraction: share of the union of all series' dates for validation, in (0, 1).
        test_fraction: share of the union of all series' dates for testing, in (0, 1).

    Returns:
        A ``StockDataset``; arrays concatenate the series in the order of ``prices``.
    """
    _check_arguments(prices, window, horizon, val_fraction, test_fraction)
    needed = rows_needed(window, horizon, val_fraction, test_fraction)
    for name, frame in prices.items():
        if len(frame) < needed:
            raise DataError(
                f"{frame.attrs.get('source', name)}: series '{name}' has {len(frame)} rows, "
                f"needs at least {needed} for window={window}, horizon={horizon}, "
                f"val_fraction={val_fraction}, test_fraction={test_fraction}"
            )
    cuts = calendar_cuts(prices, val_fraction, test_fraction)  # every series long enough: both cuts are dates
    origins: dict[str, dict[str, np.ndarray]] = {}
    for name, frame in prices.items():
        n_train, n_val_end = (int(frame.index.searchsorted(cut)) for cut in cuts)
        origins[name] = origins_between_cuts(len(frame), n_train, n_val_end, window, horizon)
        if min(len(o) for o in origins[name].values()) < 1:
            raise _calendar_error(name, frame, origins[name], (n_train, n_val_end), cuts, window, horizon)

    features = {name: compute_features(frame) for name, frame in prices.items()}
    closes = {name: frame["close"].to_numpy(np.float64) for name, frame in prices.items()}
    targets = {
        name: {split: log_return_targets(closes[name], o, horizon) for split, o in origins[name].items()}
        for name in prices
    }
    # Feature row j describes day j + 1, so rows [:t] cover days 1 .. t of the training windows.
    train_rows = np.concatenate([features[name][: origins[name]["train"][-1]] for name in prices])
    train_targets = np.concatenate([targets[name]["train"] for name in prices])
    preprocessor = StockPreprocessor.fit(train_rows, train_targets, window)

    arrays: dict[str, list] = {split: [] for split in SPLITS}
    for name, frame in prices.items():
        windows = preprocessor.windows_from_ohlcv(frame)  # window i ends on day window + i
        for split in SPLITS:
            o = origins[name][split]
            arrays[split].append(
                (
                    windows[o - window],
                    preprocessor.scale_targets(targets[name][split]),
                    _index_frame(name, frame, o, horizon),
                )
            )

    def join(split: str, part: int):
        items = [item[part] for item in arrays[split]]
        return pd.concat(items, ignore_index=True) if part == 2 else np.concatenate(items)

    return StockDataset(
        x_train=join("train", 0),
        y_train=join("train", 1),
        x_val=join("val", 0),
        y_val=join("val", 1),
        x_test=join("test", 0),
        y_test=join("test", 1),
        preprocessor=preprocessor,
        train_index=join("train", 2),
        val_index=join("val", 2),
        test_index=join("test", 2),
        train_closes={name: closes[name][: origins[name]["train"][-1] + 1] for name in prices},
        history=dict(prices),
        feature_names=FEATURE_NAMES,
        n_features=len(FEATURE_NAMES),
        window=int(window),
        horizon=int(horizon),
    )


def actual_columns(horizon: int) -> list[str]:
    """Names of the actual-price columns of an index frame: ``actual_1 .. actual_<horizon>``."""
    return [f"actual_{k}" for k in range(1, horizon + 1)]


def _index_frame(name: str, frame: pd.DataFrame, origins: np.ndarray, horizon: int) -> pd.DataFrame:
    close = frame["close"].to_numpy(np.float64)
    index = pd.DataFrame({"series": name, "origin_date": frame.index[origins], "last_close": close[origins]})
    actual = close[origins[:, None] + np.arange(1, horizon + 1)]
    return pd.concat([index, pd.DataFrame(actual, columns=actual_columns(horizon))], axis=1)


def _cut_positions(n_days: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """``(n_train, n_val_end)``: the days before the validation and before the test start."""
    # The epsilon keeps 0.7 * 100 from flooring to 69 through float round-off.
    n_train = int(np.floor(n_days * (1.0 - val_fraction - test_fraction) + 1e-9))
    n_val_end = int(np.floor(n_days * (1.0 - test_fraction) + 1e-9))
    return n_train, n_val_end


def _calendar_error(name, frame, origins, bounds, cuts, window, horizon) -> DataError:
    """A series long enough on its own that the shared cut dates leave without windows in some split."""
    n_train, n_val_end = bounds
    empty = ", ".join(split for split in SPLITS if len(origins[split]) == 0)
    return DataError(
        f"{frame.attrs.get('source', name)}: series '{name}' has no {empty} window at the calendar cut dates "
        f"shared by all series: {n_train} of its days fall before the validation start {cuts[0]:%Y-%m-%d}, "
        f"{n_val_end - n_train} between it and the test start {cuts[1]:%Y-%m-%d}, {len(frame) - n_val_end} on "
        f"or after it; with window={window}, horizon={horizon} it needs at least {window + horizon + 1} days "
        f"before the validation start, {horizon + 1} between the cuts and {horizon + 1} on or after the test start"
    )


def _check_arguments(prices, window, horizon, val_fraction, test_fraction) -> None:
    if not prices:
        raise DataError("no price series given (prices is empty)")
    for arg, value in (("window", window), ("horizon", horizon)):
        if int(value) != value or value < 1:
            raise ValueError(f"Expected a positive integer for {arg}. Received: {arg}={value}")
    for arg, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 < value < 1:
            raise ValueError(f"Expected {arg} in (0, 1). Received: {arg}={value}")
    if val_fraction + test_fraction >= 1:
        raise ValueError(
            "Expected val_fraction + test_fraction < 1. Received: "
            f"val_fraction={val_fraction}, test_fraction={test_fraction}"
        )
