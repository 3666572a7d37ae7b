"""Compare a model's price forecasts with the baselines on the same windows, overall and per period."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pipelines.stock_forecasting.baselines import baseline_forecasts
from pipelines.stock_forecasting.dataset import StockDataset, actual_columns
from pipelines.stock_forecasting.metrics import diebold_mariano, forecast_metrics, naive_scale, rmse, theils_u2

SIGNIFICANCE = 0.05


@dataclass(eq=False)
class ForecastReport:
    """Evaluation of a model against the naive, drift and ARIMA baselines.

    ``metrics`` and each ``baselines[name]`` have the keys of ``metrics.METRIC_NAMES``; the DM test
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
    dataset: StockDataset, index_frame: pd.DataFrame, model_prices: np.ndarray, folds: int = 4
) -> ForecastReport:
    """Score the model and every baseline on exactly the windows of ``index_frame``.

    Args:
        dataset: the ``StockDataset`` the windows come from.
        index_frame: ``dataset.test_index`` (or ``val_index``), row ``i`` matching ``model_prices[i]``.
        model_prices: the model's price forecasts ``(n, horizon)``.
        folds: consecutive periods of origin dates for the walk-forward table. Default: 4.

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
    scales = {name: naive_scale(dataset.train_closes[name]) for name in pd.unique(series)}
    scale = np.array([scales[name] for name in series])

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
            "forecast_vs_actual": forecast_figure(dataset, index_frame, forecasts),
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
    dataset: StockDataset, index_frame: pd.DataFrame, forecasts: dict[str, np.ndarray], series: str | None = None
) -> Figure:
    """Actual closes of one series over its evaluation period with the 1-step and h-step forecasts.

    Args:
        dataset: for the series' dates and closes.
        index_frame: the windows.
        forecasts: ``{"model": ..., baseline: ...}`` price forecasts ``(n, horizon)``.
        series: which series to draw. Default: the first in ``index_frame``.

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
