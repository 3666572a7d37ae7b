"""Stock forecasting on the shared engine: OHLCV CSV in, multi-step close forecast out."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pipelines.config import make_config_class
from pipelines.errors import ConfigError
from pipelines.serving import save_keras_artifacts
from pipelines.stock_forecasting import data as price_data
from pipelines.stock_forecasting.baselines import naive_forecast
from pipelines.stock_forecasting.evaluation import (
    conformal_quantiles,
    diebold_mariano,
    evaluate_forecasts,
    interval_metrics,
    score_forecasts,
)
from pipelines.stock_forecasting.features import (
    StockDataset,
    actual_columns,
    check_covariate,
    covariate_column,
    prepare_dataset,
)
from pipelines.stock_forecasting.serving import StockServingModel, request_frame, save_preprocessor, serving_signature
from pipelines.tasks import Evaluation, GateDecision, ServingBundle, Task, metric_check
from pipelines.tracking import local_dataset

if TYPE_CHECKING:
    import keras


@dataclasses.dataclass
class StockDataConfig:
    """`data` group: where the prices are and how they are split in time."""

    path: str | None = None  # CSV file or folder of CSVs; None: the MSFT series shipped with pmdarima
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    eval_folds: int = 4  # walk-forward periods of the test origins

    def __post_init__(self):
        if self.eval_folds < 1:
            raise ConfigError(f"data.eval_folds: expected a positive integer, got {self.eval_folds!r}")
        for key in ("val_fraction", "test_fraction"):
            if not 0.0 < getattr(self, key) < 0.5:
                raise ConfigError(f"data.{key}: expected a fraction in (0, 0.5), got {getattr(self, key)!r}")


@dataclasses.dataclass
class StockFeaturesConfig:
    """`features` group: what the model sees."""

    window: int = 30  # days of features per input window
    # column:<CSV column>, series:<another series of data.path>, calendar:day_of_week|month|day_of_month
    covariates: list[str] = dataclasses.field(default_factory=list)

    def __post_init__(self):
        if self.window < 1:
            raise ConfigError(f"features.window: expected a positive integer, got {self.window!r}")
        for spec in self.covariates:
            check_covariate(spec)
        if len(set(self.covariates)) != len(self.covariates):
            raise ConfigError(f"features.covariates: an entry is named twice: {self.covariates!r}")


@dataclasses.dataclass
class ForecastConfig:
    """`forecast` group: what the task forecasts."""

    horizon: int = 5  # trading days forecast after each window
    interval_levels: list[float] = dataclasses.field(default_factory=lambda: [0.8, 0.95])

    def __post_init__(self):
        if self.horizon < 1:
            raise ConfigError(f"forecast.horizon: expected a positive integer, got {self.horizon!r}")
        levels = self.interval_levels
        if not all(isinstance(v, int | float) and not isinstance(v, bool) and 0 < v < 1 for v in levels):
            raise ConfigError(f"forecast.interval_levels: expected levels in (0, 1), e.g. [0.8, 0.95], got {levels!r}")
        if len(set(levels)) != len(levels):
            raise ConfigError(f"forecast.interval_levels: a level is named twice: {levels!r}")
        self.interval_levels = [float(v) for v in levels]


StockConfig = make_config_class(
    "StockConfig",
    data=StockDataConfig,
    features=StockFeaturesConfig,
    output=("forecast", ForecastConfig),
    moved={"data.window": "features.window", "data.horizon": "forecast.horizon"},
)


class StockForecasting(Task):
    """The next `forecast.horizon` daily closes from `features.window` days of OHLCV features."""

    name = "stock_forecasting"
    config_class = StockConfig
    head = "regression"
    loss = "mse"
    objective = "val_mase"

    def load_source(self, config: Any) -> dict[str, pd.DataFrame]:
        """Read the prices of `data.path`, or the default MSFT series.

        Args:
            config: a `StockConfig`.

        Returns:
            `{series: frame}` as `data.load_prices` returns it.
        """
        return price_data.load_prices_or_default(config.data.path, _column_covariates(config.features.covariates))

    def prepare(self, config: Any, source: dict[str, pd.DataFrame]) -> StockDataset:
        """Scaled windows and targets, split at shared calendar dates.

        Args:
            config: a `StockConfig`.
            source: `load_source`'s prices.

        Returns:
            A `StockDataset`.
        """
        return prepare_dataset(
            source,
            config.features.window,
            config.forecast.horizon,
            config.data.val_fraction,
            config.data.test_fraction,
            tuple(config.features.covariates),
            tuple(config.forecast.interval_levels),
        )

    def dataset_for_logging(self, config: Any, source: dict[str, pd.DataFrame]) -> Any:
        """The prices as an MLflow dataset (all series in one frame with a `series` column).

        Args:
            config: a `StockConfig`.
            source: `load_source`'s prices.

        Returns:
            An MLflow dataset.
        """
        frames = [frame.assign(series=name) for name, frame in source.items()]
        frame = pd.concat(frames).reset_index()
        origin = config.data.path or price_data.DEFAULT_SOURCE
        return local_dataset(frame, origin, f"prices ({len(source)} series)")

    def evaluate(self, model: keras.Model, data: StockDataset, config: Any) -> Evaluation:
        """Validation metrics, the test windows scored against the naive, drift and ARIMA baselines,
        and the forecast intervals' coverage and Winkler score beside the naive forecast's.

        Args:
            model: the trained model.
            data: `prepare`'s dataset.
            config: a `StockConfig`.

        Returns:
            `val_*` and `test_*` metrics, the report's figures and tables, and the headline test U2.
        """
        val_prices = _forecast(model, data, data.x_val, data.val_index)
        val = score_forecasts(data, data.val_index, val_prices)
        val_actual = data.val_index[actual_columns(data.horizon)].to_numpy(np.float64)
        val_naive = naive_forecast(data.val_index, data.horizon)
        statistic, p_value = diebold_mariano(
            val_prices - val_actual, val_naive - val_actual, data.horizon, data.val_index["origin_date"].to_numpy()
        )
        val.update({"dm_statistic": statistic, "dm_p_value": p_value})

        test_prices = _forecast(model, data, data.x_test, data.test_index)
        test_actual = data.test_index[actual_columns(data.horizon)].to_numpy(np.float64)
        calibrated = calibrated_preprocessor(model, data)
        naive_quantiles = conformal_quantiles(val_actual, val_naive, data.interval_levels)
        naive_bands = data.preprocessor.with_intervals(data.interval_levels, naive_quantiles).intervals(
            naive_forecast(data.test_index, data.horizon)
        )
        model_bands = calibrated.intervals(test_prices)
        intervals, interval_table = interval_metrics(test_actual, {"model": model_bands, "naive": naive_bands})

        report = evaluate_forecasts(data, data.test_index, test_prices, folds=config.data.eval_folds, bands=model_bands)
        metrics = {f"val_{key}": float(value) for key, value in val.items()}
        metrics.update({key: float(value) for key, value in report.as_metrics("test").items()})
        metrics.update({f"test_{key}": float(value) for key, value in intervals.items()})
        forecasts = data.test_index.copy()
        for step in range(data.horizon):
            forecasts[f"forecast_{step + 1}"] = test_prices[:, step]
        return Evaluation(
            metrics=metrics,
            figures=report.figures,
            tables={
                "walk_forward": report.walk_forward,
                "per_series": report.per_series,
                "test_forecasts": forecasts,
                "intervals": interval_table,
                "data_summary": _data_summary(data),
            },
            summary=report.summary,
            headline={"metric": "test_u2", "value": metrics["test_u2"], "baseline": "naive U2 = 1.0"},
        )

    def gate(self, metrics: dict[str, float], config: Any, champion: dict[str, float] | None) -> GateDecision:
        """Beats the naive forecast on validation: U2 below 1, and with `tracking.gate.alpha` the
        Diebold-Mariano test too (a smaller loss, p below alpha).

        Args:
            metrics: the candidate's metrics.
            config: a `StockConfig`.
            champion: the current champion's metrics (unused: the naive forecast is the bar).

        Returns:
            The decision.
        """
        checks = [metric_check(metrics, "val_u2", 1.0, False, "the naive forecast's U2")]
        alpha = config.tracking.gate.alpha
        if alpha is not None:
            checks.append(metric_check(metrics, "val_dm_statistic", 0.0, False, "a smaller loss than naive"))
            checks.append(metric_check(metrics, "val_dm_p_value", alpha, False, "tracking.gate.alpha"))
        return GateDecision(checks)

    def serving_bundle(self, model: keras.Model, data: StockDataset, workdir: str) -> ServingBundle:
        """The served model: the Keras model, the fitted preprocessor, and a request of real rows.

        Args:
            model: the trained model.
            data: `prepare`'s dataset.
            workdir: a folder for the artifacts.

        Returns:
            A `ServingBundle` whose example request is the last `window + 1` days of the first series.
        """
        artifacts = save_keras_artifacts(model, data.x_test[:32], workdir)
        preprocessor = calibrated_preprocessor(model, data)
        artifacts["preprocessor"] = save_preprocessor(preprocessor, workdir)
        extra = _request_columns(preprocessor.covariates)
        request = request_frame(next(iter(data.history.values())).tail(data.window + 1), extra)
        signature = serving_signature(data.horizon, preprocessor.interval_levels, preprocessor.covariates)
        return ServingBundle(StockServingModel(), artifacts, signature, request)

    def read_inputs(self, path: str, served: Any) -> pd.DataFrame:
        """A `predict --input` price file as a served-model request.

        Args:
            path: a CSV file of one price series.
            served: the loaded model (its covariates name the columns the file must also have).

        Returns:
            `request_frame` of its prices.
        """
        covariates = getattr(getattr(served, "preprocessor", None), "covariates", ())
        extra = _request_columns(covariates)
        prices = price_data.load_prices(path, extra)
        if len(prices) != 1:
            raise ConfigError(f"{path}: predict takes one price series, found {len(prices)}: {', '.join(prices)}")
        return request_frame(next(iter(prices.values())), extra)


def calibrated_preprocessor(model: keras.Model, data: StockDataset) -> Any:
    """The dataset's preprocessor with split-conformal intervals from the model's validation errors.

    Args:
        model: the trained model.
        data: `prepare`'s dataset.

    Returns:
        A `StockPreprocessor` whose `intervals` gives the `data.interval_levels` bounds.
    """
    val_prices = _forecast(model, data, data.x_val, data.val_index)
    val_actual = data.val_index[actual_columns(data.horizon)].to_numpy(np.float64)
    quantiles = conformal_quantiles(val_actual, val_prices, data.interval_levels)
    return data.preprocessor.with_intervals(data.interval_levels, quantiles)


def _column_covariates(covariates: list[str]) -> tuple[str, ...]:
    """The CSV columns `column:` covariates read (series ones are joined from other files)."""
    return tuple(covariate_column(spec) for spec in covariates if spec.startswith("column:"))


def _request_columns(covariates: tuple[str, ...]) -> tuple[str, ...]:
    """The request columns besides OHLCV and date: one per column or series covariate."""
    columns = (covariate_column(spec) for spec in covariates)
    return tuple(dict.fromkeys(column for column in columns if column is not None))


def _data_summary(data: StockDataset) -> pd.DataFrame:
    """One row per series: rows, first and last date, and windows per split (the model card's data section)."""
    counts = {
        split: index["series"].value_counts()
        for split, index in (("train", data.train_index), ("val", data.val_index), ("test", data.test_index))
    }
    rows = []
    for name, frame in data.history.items():
        row = {
            "series": name,
            "rows": len(frame),
            "first_date": frame.index[0].date(),
            "last_date": frame.index[-1].date(),
        }
        row.update({f"{split}_windows": int(count.get(name, 0)) for split, count in counts.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def _forecast(model: keras.Model, data: StockDataset, x: np.ndarray, index_frame: pd.DataFrame) -> np.ndarray:
    """The model's price forecasts for the windows `x` of `index_frame`."""
    scaled = model.predict(x, verbose=0)
    return data.preprocessor.to_prices(scaled, index_frame["last_close"].to_numpy())


TASK = StockForecasting()
