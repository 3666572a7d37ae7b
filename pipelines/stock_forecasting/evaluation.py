"""Score price forecasts: point metrics, the Diebold-Mariano test, and the model against the baselines.

Arrays are ``(n_windows, horizon)`` (or ``(n_windows,)``); every metric averages over all entries.
``evaluate_forecasts`` scores a model and every baseline on the same windows, overall, per series and
per period of origin dates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy import stats
from sklearn.metrics import mean_absolute_error, mean_absolute_percentage_error, root_mean_squared_error

from pipelines.stock_forecasting.baselines import baseline_forecasts, naive_forecast
from pipelines.stock_forecasting.features import StockDataset, actual_columns, level_name

METRIC_NAMES = ("rmse", "mae", "mape", "mase", "u2", "directional_accuracy")
SIGNIFICANCE = 0.05


def rmse(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Root mean squared error over all entries.

    Args:
        actual: actual prices.
        forecast: forecast prices, same shape.

    Returns:
        The RMSE.
    """
    a, f = _pair(actual, forecast)
    return float(root_mean_squared_error(a.ravel(), f.ravel()))


def mae(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Mean absolute error over all entries.

    Args:
        actual: actual prices.
        forecast: forecast prices, same shape.

    Returns:
        The MAE.
    """
    a, f = _pair(actual, forecast)
    return float(mean_absolute_error(a.ravel(), f.ravel()))


def mape(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Mean absolute percentage error, in percent.

    Args:
        actual: actual prices.
        forecast: forecast prices, same shape.

    Returns:
        ``100 * mean(|actual - forecast| / |actual|)``.
    """
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

    Args:
        actual: actual prices.
        forecast: forecast prices, same shape.
        naive: the naive forecast on the same windows.

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


def conformal_quantiles(actual: np.ndarray, forecast: np.ndarray, levels: tuple[float, ...]) -> np.ndarray:
    """Split-conformal bounds per horizon step: quantiles of ``log(actual / forecast)`` on calibration windows.

    For level ``L`` the lower and upper bounds are the ``(1 - L) / 2`` and ``(1 + L) / 2`` empirical
    quantiles of the calibration residuals of each step, taken at the finite-sample positions of
    split-conformal prediction (``floor((n + 1) * q)`` and ``ceil((n + 1) * q)`` of ``n`` sorted
    residuals, clipped to the ends), so that exchangeable new windows fall inside with probability
    at least ``L``.

    Args:
        actual: ``(n, horizon)`` actual prices of the calibration (validation) windows.
        forecast: ``(n, horizon)`` forecasts of the same windows.
        levels: interval levels in (0, 1), e.g. ``(0.8, 0.95)``.

    Returns:
        float64 ``(len(levels), 2, horizon)``: lower and upper log-ratio offsets.
    """
    a, f = _pair(actual, forecast)
    residuals = np.sort(np.log(a / f), axis=0)
    n = len(residuals)
    if n < 2:
        raise ValueError(f"Expected at least 2 calibration windows for the intervals. Received: {n}")
    out = np.empty((len(levels), 2, residuals.shape[1]))
    for i, level in enumerate(levels):
        low = int(np.floor((n + 1) * (1.0 - level) / 2.0)) - 1
        high = int(np.ceil((n + 1) * (1.0 + level) / 2.0)) - 1
        out[i, 0] = residuals[min(max(low, 0), n - 1)]
        out[i, 1] = residuals[min(max(high, 0), n - 1)]
    return out


def coverage(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """Share of actual values inside ``[lower, upper]``.

    Args:
        actual: actual prices.
        lower: lower bounds, same shape.
        upper: upper bounds, same shape.

    Returns:
        A fraction in [0, 1].
    """
    a, lo = _pair(actual, lower)
    _, hi = _pair(actual, upper)
    return float(np.mean((a >= lo) & (a <= hi)))


def winkler_score(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray, level: float) -> float:
    """Mean Winkler (interval) score: the width, plus ``2 / (1 - level)`` times any miss; lower is better.

    Args:
        actual: actual prices.
        lower: lower bounds, same shape.
        upper: upper bounds, same shape.
        level: the interval's level in (0, 1).

    Returns:
        The mean score, in price units.
    """
    a, lo = _pair(actual, lower)
    _, hi = _pair(actual, upper)
    penalty = 2.0 / (1.0 - level)
    score = (hi - lo) + penalty * np.maximum(lo - a, 0.0) + penalty * np.maximum(a - hi, 0.0)
    return float(np.mean(score))


def interval_metrics(
    actual: np.ndarray, forecasts: dict[str, dict[float, tuple[np.ndarray, np.ndarray]]]
) -> tuple[dict[str, float], pd.DataFrame]:
    """Coverage and Winkler score of each forecaster's intervals, overall and per horizon step.

    Args:
        actual: ``(n, horizon)`` actual prices.
        forecasts: ``{"model" or a baseline: {level: (lower, upper)}}``.

    Returns:
        ``({"coverage_80": ..., "winkler_80": ..., "naive_coverage_80": ...}, table)``: the model's
        names carry no prefix; the table has a row per forecaster, level and step.
    """
    flat, rows = {}, []
    for name, bands in forecasts.items():
        prefix = "" if name == "model" else f"{name}_"
        for level, (lower, upper) in bands.items():
            tag = level_name(level)
            flat[f"{prefix}coverage_{tag}"] = coverage(actual, lower, upper)
            flat[f"{prefix}winkler_{tag}"] = winkler_score(actual, lower, upper, level)
            for step in range(actual.shape[1]):
                rows.append(
                    {
                        "forecaster": name,
                        "level": level,
                        "step": step + 1,
                        "coverage": coverage(actual[:, step], lower[:, step], upper[:, step]),
                        "winkler": winkler_score(actual[:, step], lower[:, step], upper[:, step], level),
                        "mean_width": float(np.mean(upper[:, step] - lower[:, step])),
                    }
                )
    return flat, pd.DataFrame(rows)


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


def window_scales(dataset: StockDataset, index_frame: pd.DataFrame) -> np.ndarray:
    """The MASE scale of each window: ``naive_scale`` of its series' training closes.

    Args:
        dataset: the ``StockDataset`` the windows come from (for ``train_closes``).
        index_frame: the windows (for ``series``).

    Returns:
        float64 ``(n,)``.
    """
    series = index_frame["series"].to_numpy()
    scales = {name: naive_scale(dataset.train_closes[name]) for name in pd.unique(series)}
    return np.array([scales[name] for name in series], dtype=np.float64)


def score_forecasts(dataset: StockDataset, index_frame: pd.DataFrame, model_prices: np.ndarray) -> dict[str, float]:
    """The point metrics of a model's forecasts, without the baselines (used on the validation windows).

    Args:
        dataset: the ``StockDataset`` the windows come from.
        index_frame: the windows, row ``i`` matching ``model_prices[i]``.
        model_prices: the model's price forecasts ``(n, horizon)``.

    Returns:
        ``{name: value}`` for every name in ``METRIC_NAMES``.
    """
    return forecast_metrics(
        index_frame[actual_columns(dataset.horizon)].to_numpy(np.float64),
        model_prices,
        naive_forecast(index_frame, dataset.horizon),
        index_frame["last_close"].to_numpy(np.float64),
        window_scales(dataset, index_frame),
    )


@dataclass(eq=False)
class ForecastReport:
    """Evaluation of a model against the naive, drift and ARIMA baselines.

    ``metrics`` and each ``baselines[name]`` have the keys of ``METRIC_NAMES``; the DM test
    compares the model's squared errors with the naive forecast's (negative: model better).
    """

    metrics: dict[str, float]
    baselines: dict[str, dict[str, float]]
    dm_statistic: float
    dm_p_value: float
    beats_naive: bool
    summary: str
    walk_forward: pd.DataFrame
    per_series: pd.DataFrame
    figures: dict[str, Figure] = field(default_factory=dict)

    def as_metrics(self, split: str) -> dict[str, float]:
        """Flat metric names carrying the split, for a tracker.

        Args:
            split: e.g. ``"test"`` or ``"val"``.

        Returns:
            ``{"<split>_rmse": ..., "<split>_naive_rmse": ..., "<split>_dm_p_value": ...,
            "<split>_beats_naive": 0.0 or 1.0, ...}``.
        """
        flat = {f"{split}_{key}": value for key, value in self.metrics.items()}
        for name, scores in self.baselines.items():
            flat.update({f"{split}_{name}_{key}": value for key, value in scores.items()})
        flat.update(
            {
                f"{split}_dm_statistic": self.dm_statistic,
                f"{split}_dm_p_value": self.dm_p_value,
                f"{split}_beats_naive": float(self.beats_naive),
            }
        )
        return flat


def evaluate_forecasts(
    dataset: StockDataset,
    index_frame: pd.DataFrame,
    model_prices: np.ndarray,
    folds: int = 4,
    bands: dict[float, tuple[np.ndarray, np.ndarray]] | None = None,
) -> ForecastReport:
    """Score the model and every baseline on exactly the windows of ``index_frame``.

    Args:
        dataset: the ``StockDataset`` the windows come from.
        index_frame: ``dataset.test_index`` (or ``val_index``), row ``i`` matching ``model_prices[i]``.
        model_prices: the model's price forecasts ``(n, horizon)``.
        folds: consecutive periods of origin dates for the walk-forward table. Default: 4.
        bands: the model's ``{level: (lower, upper)}`` intervals, drawn in the forecast figure. Default: none.

    Returns:
        A ``ForecastReport``.
    """
    actual = index_frame[actual_columns(dataset.horizon)].to_numpy(np.float64)
    model_prices = np.asarray(model_prices, dtype=np.float64)
    if model_prices.shape != actual.shape:
        raise ValueError(
            f"Expected model_prices of shape {actual.shape} (windows, horizon). Received: {model_prices.shape}"
        )
    if folds < 1:
        raise ValueError(f"Expected a positive integer for folds. Received: folds={folds}")
    last_close = index_frame["last_close"].to_numpy(np.float64)
    series = index_frame["series"].to_numpy()
    scale = window_scales(dataset, index_frame)

    forecasts = {"model": model_prices, **baseline_forecasts(dataset, index_frame)}
    naive = forecasts["naive"]
    scores = {name: forecast_metrics(actual, f, naive, last_close, scale) for name, f in forecasts.items()}
    dates = index_frame["origin_date"].to_numpy()
    statistic, p_value = diebold_mariano(model_prices - actual, naive - actual, dataset.horizon, dates)
    u2 = scores["model"]["u2"]
    beats = bool(u2 < 1 and statistic < 0 and p_value < SIGNIFICANCE)
    return ForecastReport(
        metrics=scores.pop("model"),
        baselines=scores,
        dm_statistic=statistic,
        dm_p_value=p_value,
        beats_naive=beats,
        summary=_summary(beats, u2, p_value, len(actual)),
        walk_forward=walk_forward_table(index_frame, actual, forecasts, folds),
        per_series=per_series_table(series, actual, forecasts),
        figures={
            "forecast_vs_actual": forecast_figure(dataset, index_frame, forecasts, bands=bands),
            "residuals": residual_figure(index_frame, actual, model_prices),
        },
    )


def per_series_table(series: np.ndarray, actual: np.ndarray, forecasts: dict[str, np.ndarray]) -> pd.DataFrame:
    """One row per series: windows, and RMSE and U2 (vs that series' naive) of every forecaster.

    Args:
        series: series name of each window.
        actual: actual prices ``(n, horizon)``.
        forecasts: ``{name: (n, horizon)}`` including ``"naive"``.

    Returns:
        A DataFrame with ``series, windows, <name>_rmse, <name>_u2``.
    """
    rows = []
    for name in pd.unique(series):
        rows_of = series == name
        row = {"series": name, "windows": int(rows_of.sum())}
        for forecaster, prices in forecasts.items():
            row[f"{forecaster}_rmse"] = rmse(actual[rows_of], prices[rows_of])
            row[f"{forecaster}_u2"] = theils_u2(actual[rows_of], prices[rows_of], forecasts["naive"][rows_of])
        rows.append(row)
    return pd.DataFrame(rows)


def walk_forward_table(
    index_frame: pd.DataFrame, actual: np.ndarray, forecasts: dict[str, np.ndarray], folds: int
) -> pd.DataFrame:
    """Rolling-origin view: the origin dates cut into ``folds`` consecutive periods, each scored.

    Args:
        index_frame: the windows (for ``origin_date``).
        actual: actual prices ``(n, horizon)``.
        forecasts: ``{name: (n, horizon)}`` including ``"naive"``.
        folds: number of periods (fewer when there are fewer distinct origin dates).

    Returns:
        One row per fold: ``fold, start, end, windows`` and ``<name>_rmse, <name>_u2`` per forecaster.
    """
    dates = pd.DatetimeIndex(index_frame["origin_date"].to_numpy())
    periods = [p for p in np.array_split(np.unique(dates.to_numpy()), folds) if len(p)]
    rows = []
    for fold, period in enumerate(periods, start=1):
        mask = dates.isin(period)
        row = {
            "fold": fold,
            "start": pd.Timestamp(period[0]),
            "end": pd.Timestamp(period[-1]),
            "windows": int(mask.sum()),
        }
        for name, f in forecasts.items():
            row[f"{name}_rmse"] = rmse(actual[mask], f[mask])
            row[f"{name}_u2"] = theils_u2(actual[mask], f[mask], forecasts["naive"][mask])
        rows.append(row)
    return pd.DataFrame(rows)


def forecast_figure(
    dataset: StockDataset,
    index_frame: pd.DataFrame,
    forecasts: dict[str, np.ndarray],
    series: str | None = None,
    bands: dict[float, tuple[np.ndarray, np.ndarray]] | None = None,
) -> Figure:
    """Actual closes of one series over its evaluation period with the 1-step and h-step forecasts.

    Args:
        dataset: for the series' dates and closes.
        index_frame: the windows.
        forecasts: ``{"model": ..., baseline: ...}`` price forecasts ``(n, horizon)``.
        series: which series to draw. Default: the first in ``index_frame``.
        bands: the model's ``{level: (lower, upper)}``; the 1-step bands are shaded. Default: none.

    Returns:
        An Agg-backed matplotlib Figure.
    """
    series = series if series is not None else index_frame["series"].iloc[0]
    rows = np.flatnonzero(index_frame["series"].to_numpy() == series)
    history = dataset.history[series]
    origins = history.index.get_indexer(pd.DatetimeIndex(index_frame["origin_date"].to_numpy()[rows]))
    h = dataset.horizon

    fig = _figure((11, 5))
    ax = fig.add_subplot()
    span = slice(origins.min(), origins.max() + h + 1)
    ax.plot(history.index[span], history["close"].to_numpy()[span], color="black", lw=1.5, label="actual")
    for level, (lower, upper) in sorted((bands or {}).items(), reverse=True):
        ax.fill_between(
            history.index[origins + 1],
            lower[rows, 0],
            upper[rows, 0],
            alpha=0.2,
            color="tab:blue",
            lw=0,
            label=f"model, 1-step {level_name(level)}% interval",
        )
    ax.plot(history.index[origins + 1], forecasts["model"][rows, 0], lw=1, label="model, 1-step")
    if h > 1:
        ax.plot(history.index[origins + h], forecasts["model"][rows, -1], lw=1, label=f"model, {h}-step")
    for name, f in forecasts.items():
        if name != "model":
            ax.plot(history.index[origins + h], f[rows, -1], lw=0.8, ls="--", label=f"{name}, {h}-step")
    ax.set_title(f"{series}: forecasts on the evaluation windows (plotted at the target day)")
    ax.set_ylabel("close")
    ax.legend(loc="best", fontsize="small")
    fig.autofmt_xdate()
    return fig


def residual_figure(index_frame: pd.DataFrame, actual: np.ndarray, model_prices: np.ndarray) -> Figure:
    """Model residuals in percent of the actual price: over origin dates, and their histogram.

    Args:
        index_frame: the windows (for ``origin_date``).
        actual: actual prices ``(n, horizon)``.
        model_prices: model forecasts, same shape.

    Returns:
        An Agg-backed matplotlib Figure with two panels.
    """
    residuals = 100.0 * (actual - model_prices) / actual
    dates = pd.DatetimeIndex(index_frame["origin_date"].to_numpy())
    fig = _figure((11, 4))
    over_time, histogram = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2, 1]})
    h = residuals.shape[1]
    for step in sorted({0, h - 1}):
        over_time.scatter(dates, residuals[:, step], s=4, alpha=0.6, label=f"{step + 1}-step")
    over_time.axhline(0.0, color="black", lw=0.8)
    over_time.set_ylabel("actual - forecast (% of actual)")
    over_time.set_title("Model residuals by origin date")
    over_time.legend(loc="best", fontsize="small")
    histogram.hist(residuals.ravel(), bins=50, color="tab:gray")
    histogram.set_title(f"All {h} steps")
    histogram.set_xlabel("% of actual")
    over_time.tick_params(axis="x", labelrotation=30)
    return fig


def _figure(size: tuple[float, float]) -> Figure:
    """A Figure drawn by Agg, without touching pyplot's global state."""
    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _summary(beats: bool, u2: float, p_value: float, n: int) -> str:
    verdict = "beats" if beats else "does not beat"
    return (
        f"The model {verdict} the naive forecast on {n} windows (Theil's U2 = {u2:.3f}, "
        f"Diebold-Mariano p = {p_value:.3g})."
    )


def _pair(actual, forecast) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(actual, dtype=np.float64)
    f = np.asarray(forecast, dtype=np.float64)
    if a.shape != f.shape:
        raise ValueError(f"Expected arrays of the same shape. Received: {a.shape} and {f.shape}")
    return a, f
