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
from pipelines.stock_forecasting.evaluation import evaluate_forecasts, score_forecasts
from pipelines.stock_forecasting.features import StockDataset, prepare_dataset
from pipelines.stock_forecasting.serving import StockServingModel, request_frame, save_preprocessor, serving_signature
from pipelines.tasks import Evaluation, ServingBundle, Task
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

    def __post_init__(self):
        if self.window < 1:
            raise ConfigError(f"features.window: expected a positive integer, got {self.window!r}")


@dataclasses.dataclass
class ForecastConfig:
    """`forecast` group: what the task forecasts."""

    horizon: int = 5  # trading days forecast after each window

    def __post_init__(self):
        if self.horizon < 1:
            raise ConfigError(f"forecast.horizon: expected a positive integer, got {self.horizon!r}")


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
        return price_data.load_prices_or_default(config.data.path)

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
        """Validation metrics, and the test windows scored against the naive, drift and ARIMA baselines.

        Args:
            model: the trained model.
            data: `prepare`'s dataset.
            config: a `StockConfig`.

        Returns:
            `val_*` and `test_*` metrics, the report's figures and tables, and the headline test U2.
        """
        val = score_forecasts(data, data.val_index, _forecast(model, data, data.x_val, data.val_index))
        test_prices = _forecast(model, data, data.x_test, data.test_index)
        report = evaluate_forecasts(data, data.test_index, test_prices, folds=config.data.eval_folds)
        metrics = {f"val_{key}": float(value) for key, value in val.items()}
        metrics.update({key: float(value) for key, value in report.as_metrics("test").items()})
        forecasts = data.test_index.copy()
        for step in range(data.horizon):
            forecasts[f"forecast_{step + 1}"] = test_prices[:, step]
        return Evaluation(
            metrics=metrics,
            figures=report.figures,
            tables={"walk_forward": report.walk_forward, "per_series": report.per_series, "test_forecasts": forecasts},
            summary=report.summary,
            headline={"metric": "test_u2", "value": metrics["test_u2"], "baseline": "naive U2 = 1.0"},
        )

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
        artifacts["preprocessor"] = save_preprocessor(data.preprocessor, workdir)
        request = request_frame(next(iter(data.history.values())).tail(data.window + 1))
        return ServingBundle(StockServingModel(), artifacts, serving_signature(data.horizon), request)

    def read_inputs(self, path: str, served: Any) -> pd.DataFrame:
        """A `predict --input` price file as a served-model request.

        Args:
            path: a CSV file of one price series.
            served: the loaded model (unused: any window length is read the same way).

        Returns:
            `request_frame` of its prices.
        """
        prices = price_data.load_prices(path)
        if len(prices) != 1:
            raise ConfigError(f"{path}: predict takes one price series, found {len(prices)}: {', '.join(prices)}")
        return request_frame(next(iter(prices.values())))


def _forecast(model: keras.Model, data: StockDataset, x: np.ndarray, index_frame: pd.DataFrame) -> np.ndarray:
    """The model's price forecasts for the windows `x` of `index_frame`."""
    scaled = model.predict(x, verbose=0)
    return data.preprocessor.to_prices(scaled, index_frame["last_close"].to_numpy())


TASK = StockForecasting()
