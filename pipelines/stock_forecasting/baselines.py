"""Baseline price forecasts for the windows of an index frame (``StockDataset.test_index`` or ``val_index``).

Every baseline uses only the data up to each window's origin and returns prices ``(n, horizon)``
in the row order of the index frame.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from pipelines.stock_forecasting.features import StockDataset

logger = logging.getLogger(__name__)

# A small stepwise search: the baseline is refitted for every evaluation, so it must stay cheap.
AUTO_ARIMA_SEARCH = {
    "start_p": 0,
    "start_q": 0,
    "max_p": 2,
    "max_q": 2,
    "max_order": 4,
    "seasonal": False,
    "stepwise": True,
    "information_criterion": "aic",
}


def naive_forecast(index_frame: pd.DataFrame, horizon: int | None = None) -> np.ndarray:
    """Random walk: every future close equals the last observed close.

    Args:
        index_frame: rows with ``last_close`` and ``actual_1 .. actual_h`` columns.
        horizon: steps to forecast. Default: the number of ``actual_*`` columns.

    Returns:
        float64 ``(n, horizon)``.
    """
    horizon = horizon or _horizon(index_frame)
    return np.repeat(index_frame["last_close"].to_numpy(np.float64)[:, None], horizon, axis=1)


def drift_forecast(dataset: StockDataset, index_frame: pd.DataFrame) -> np.ndarray:
    """Last close plus ``k`` times the series' average daily change from its first day to the origin.

    Args:
        dataset: the ``StockDataset`` the index frame comes from (for ``history``).
        index_frame: rows with ``series``, ``origin_date`` and ``last_close``.

    Returns:
        float64 ``(n, horizon)``.
    """
    forecast = np.empty((len(index_frame), dataset.horizon))
    steps = np.arange(1, dataset.horizon + 1)
    for name, rows, positions in _origins_by_series(dataset, index_frame):
        close = dataset.history[name]["close"].to_numpy(np.float64)
        slope = (close[positions] - close[0]) / np.maximum(positions, 1)
        forecast[rows] = close[positions][:, None] + slope[:, None] * steps
    return forecast


def arima_forecast(
    dataset: StockDataset, index_frame: pd.DataFrame, order: tuple[int, int, int] | None = None
) -> np.ndarray:
    """Walk-forward ARIMA on log closes: fitted once per series on the training closes, then the
    ``horizon``-step forecast from every origin, conditioned on the data up to that origin only.

    The fitted state-space model is filtered once over the whole series with fixed parameters; the
    state predicted for the day after each origin is propagated ``horizon`` steps: the same numbers
    as ``fitted.apply(log_close[: t + 1]).forecast(horizon)`` for each origin ``t``, in one O(N) pass.

    Args:
        dataset: the ``StockDataset`` (for ``train_closes`` and ``history``).
        index_frame: rows with ``series`` and ``origin_date``.
        order: a fixed ``(p, d, q)`` order with an intercept. Default: a small ``auto_arima`` search
            (``AUTO_ARIMA_SEARCH``, d = 1).

    Returns:
        float64 price forecasts ``(n, horizon)``.
    """
    forecast = np.empty((len(index_frame), dataset.horizon))
    # The Kalman filter's matrices are tiny: extra BLAS threads only spin, and on a busy machine
    # they slow the fit down many times over.
    with threadpool_limits(limits=1, user_api="blas"):
        for name, rows, positions in _origins_by_series(dataset, index_frame):
            fitted = _fit_arima(np.log(dataset.train_closes[name]), order)
            log_close = np.log(dataset.history[name]["close"].to_numpy(np.float64))
            forecast[rows] = np.exp(_walk_forward(fitted, log_close, positions, dataset.horizon))
    return forecast


def baseline_forecasts(dataset: StockDataset, index_frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """All baselines on the same windows.

    Args:
        dataset: the ``StockDataset`` the index frame comes from.
        index_frame: ``dataset.test_index``, ``dataset.val_index`` or a subset of its rows.

    Returns:
        ``{"naive": ..., "drift": ..., "arima": ...}``, each float64 ``(n, horizon)``.
    """
    return {
        "naive": naive_forecast(index_frame, dataset.horizon),
        "drift": drift_forecast(dataset, index_frame),
        "arima": arima_forecast(dataset, index_frame),
    }


def _horizon(index_frame: pd.DataFrame) -> int:
    return sum(str(col).startswith("actual_") for col in index_frame.columns)


def _origins_by_series(dataset: StockDataset, index_frame: pd.DataFrame):
    """Yield ``(series, row numbers in index_frame, origin positions in the series' history)``."""
    series = index_frame["series"].to_numpy()
    for name in pd.unique(series):
        rows = np.flatnonzero(series == name)
        dates = pd.DatetimeIndex(index_frame["origin_date"].to_numpy()[rows])
        positions = dataset.history[name].index.get_indexer(dates)
        if (positions < 0).any():
            missing = dates[positions < 0][0]
            raise ValueError(f"index_frame origin_date {missing.date()} is not a day of series '{name}'")
        yield name, rows, positions


def _fit_arima(log_train: np.ndarray, order: tuple[int, int, int] | None):
    """Fit on the training log closes; returns the statsmodels SARIMAX results."""
    import pmdarima as pm

    with warnings.catch_warnings():  # convergence chatter from the search's candidate models
        warnings.simplefilter("ignore")
        if order is None:
            model = pm.auto_arima(log_train, d=1, suppress_warnings=True, error_action="ignore", **AUTO_ARIMA_SEARCH)
        else:
            model = pm.ARIMA(order=tuple(order), suppress_warnings=True).fit(log_train)
    logger.info("ARIMA%s fitted on %d training log closes", model.order, len(log_train))
    return model.arima_res_


def _walk_forward(fitted, log_close: np.ndarray, positions: np.ndarray, horizon: int) -> np.ndarray:
    """``horizon``-step forecasts of ``log_close`` from each origin position, parameters fixed."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        filtered = fitted.apply(log_close)
    ssm = filtered.model.ssm
    transition, design = _constant(ssm["transition"], 2), _constant(ssm["design"], 2)
    state_intercept, obs_intercept = _constant(ssm["state_intercept"], 1), _constant(ssm["obs_intercept"], 1)
    # predicted_state[:, t + 1] is the state for day t + 1 given the data up to day t.
    state = filtered.filter_results.predicted_state[:, positions + 1]
    steps = []
    for _ in range(horizon):
        steps.append((design @ state)[0] + obs_intercept[0])
        state = transition @ state + state_intercept[:, None]
    return np.column_stack(steps)


def _constant(matrix: np.ndarray, ndim: int) -> np.ndarray:
    """A state-space matrix without its time axis; the ARIMA models used here are time-invariant."""
    if matrix.ndim == ndim:
        return matrix
    if not np.allclose(matrix, matrix[..., :1]):
        raise ValueError("ARIMA baseline needs a time-invariant model (no time trend)")
    return matrix[..., 0]
