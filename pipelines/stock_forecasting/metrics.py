"""Point-forecast metrics on prices and the Diebold-Mariano test.

Arrays are ``(n_windows, horizon)`` (or ``(n_windows,)``); every metric averages over all entries.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import mean_absolute_error, mean_absolute_percentage_error, root_mean_squared_error

METRIC_NAMES = ("rmse", "mae", "mape", "mase", "u2", "directional_accuracy")


def rmse(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Root mean squared error over all entries."""
    a, f = _pair(actual, forecast)
    return float(root_mean_squared_error(a.ravel(), f.ravel()))


def mae(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Mean absolute error over all entries."""
    a, f = _pair(actual, forecast)
    return float(mean_absolute_error(a.ravel(), f.ravel()))


def mape(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Mean absolute percentage error, in percent (``100 * mean(|a - f| / |a|)``)."""
    a, f = _pair(actual, forecast)
    return float(100.0 * mean_absolute_percentage_error(a.ravel(), f.ravel()))


def naive_scale(train_closes: np.ndarray) -> float:
    """MASE denominator: mean absolute one-step naive error on the training closes.

    Args:
        train_closes: one series' closes up to the last training origin.

    Returns:
        ``mean(|close[t] - close[t - 1]|)``.
    """
    closes = np.asarray(train_closes, dtype=np.float64)
    if len(closes) < 2:
        raise ValueError(f"Expected at least 2 training closes for the MASE scale. Received: {len(closes)}")
    return float(np.mean(np.abs(np.diff(closes))))


def mase(actual: np.ndarray, forecast: np.ndarray, scale: float | np.ndarray) -> float:
    """Mean absolute scaled error.

    Args:
        actual: actual prices.
        forecast: forecast prices, same shape.
        scale: ``naive_scale`` of the training closes; one float, or one per window ``(n,)`` when
            the windows come from several series.

    Returns:
        ``mean(|actual - forecast| / scale)``.
    """
    a, f = _pair(actual, forecast)
    scale = np.asarray(scale, dtype=np.float64)
    if scale.ndim == 1:
        scale = scale.reshape((-1,) + (1,) * (a.ndim - 1))
    return float(np.mean(np.abs(a - f) / scale))


def theils_u2(actual: np.ndarray, forecast: np.ndarray, naive: np.ndarray) -> float:
    """Theil's U2: RMSE of the forecast over RMSE of the naive (random walk) forecast.

    Returns:
        Below 1 means better than the naive forecast; NaN when the naive RMSE is 0.
    """
    denominator = rmse(actual, naive)
    return float(rmse(actual, forecast) / denominator) if denominator > 0 else float("nan")


def directional_accuracy(actual: np.ndarray, forecast: np.ndarray, last_close: np.ndarray) -> float:
    """Share of entries where ``forecast - last_close`` and ``actual - last_close`` have the same sign.

    Args:
        actual: actual prices ``(n, horizon)``.
        forecast: forecast prices, same shape.
        last_close: close at each window's origin ``(n,)``.

    Returns:
        A fraction in [0, 1]; a flat forecast only scores where the price did not move.
    """
    a, f = _pair(actual, forecast)
    last = np.asarray(last_close, dtype=np.float64).reshape((-1,) + (1,) * (a.ndim - 1))
    return float(np.mean(np.sign(f - last) == np.sign(a - last)))


def diebold_mariano(
    errors_a: np.ndarray, errors_b: np.ndarray, horizon: int, dates: np.ndarray | None = None
) -> tuple[float, float]:
    """Diebold-Mariano test of equal squared-error loss, with the Harvey-Leybourne-Newbold correction.

    For ``(n, horizon)`` errors the loss of a window is the mean squared error over its steps. The
    long-run variance uses autocovariances up to lag ``horizon - 1`` (overlapping windows). With
    ``dates``, the loss differentials of the windows that share an origin date (several series) are
    averaged first and the test runs on one value per date, in date order: series forecast on the
    same day are not independent, so counting their windows separately would understate the variance.

    Args:
        errors_a: forecast errors of model A, ``(n,)`` or ``(n, horizon)``.
        errors_b: forecast errors of model B, same shape.
        horizon: forecast horizon ``h``.
        dates: origin date of each window, ``(n,)``, or None when the rows are one series in order.

    Returns:
        ``(statistic, p_value)``: two-sided p-value from Student's t with ``n - 1`` degrees of freedom
        (``n`` dates with ``dates``); a negative statistic means A has the smaller loss.
    """
    a, b = _pair(errors_a, errors_b)
    loss = a**2 - b**2
    d = loss.mean(axis=1) if loss.ndim == 2 else loss
    if dates is not None:
        d = pd.Series(d).groupby(np.asarray(dates), sort=True).mean().to_numpy()
    n = len(d)
    if n < 2:
        raise ValueError(f"Expected at least 2 forecast errors for the Diebold-Mariano test. Received: {n}")
    mean = d.mean()
    centred = d - mean
    autocov = [centred[k:] @ centred[: n - k] / n for k in range(min(horizon, n))]
    variance = (autocov[0] + 2.0 * sum(autocov[1:])) / n
    if variance <= 0:  # the truncated long-run estimate can go negative; fall back to lag 0
        variance = autocov[0] / n
    if variance <= 0:
        return (0.0, 1.0) if mean == 0 else (float(np.sign(mean) * np.inf), 0.0)
    correction = np.sqrt(max(n + 1 - 2 * horizon + horizon * (horizon - 1) / n, 0.0) / n)
    statistic = float(correction * mean / np.sqrt(variance))
    return statistic, float(2.0 * stats.t.sf(abs(statistic), df=n - 1))


def forecast_metrics(
    actual: np.ndarray, forecast: np.ndarray, naive: np.ndarray, last_close: np.ndarray, scale: float | np.ndarray
) -> dict[str, float]:
    """All point metrics of one forecaster.

    Args:
        actual: actual prices ``(n, horizon)``.
        forecast: forecast prices, same shape.
        naive: the naive forecast on the same windows (for U2).
        last_close: close at each origin ``(n,)``.
        scale: MASE scale, one float or one per window.

    Returns:
        ``{"rmse", "mae", "mape", "mase", "u2", "directional_accuracy"}`` as floats.
    """
    return {
        "rmse": rmse(actual, forecast),
        "mae": mae(actual, forecast),
        "mape": mape(actual, forecast),
        "mase": mase(actual, forecast, scale),
        "u2": theils_u2(actual, forecast, naive),
        "directional_accuracy": directional_accuracy(actual, forecast, last_close),
    }


def _pair(actual, forecast) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(actual, dtype=np.float64)
    f = np.asarray(forecast, dtype=np.float64)
    if a.shape != f.shape:
        raise ValueError(f"Expected arrays of the same shape. Received: {a.shape} and {f.shape}")
    return a, f
