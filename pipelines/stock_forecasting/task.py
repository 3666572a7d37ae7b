"""Stock forecasting on the shared engine: OHLCV CSV in, multi-step close forecast out."""

import dataclasses

import numpy as np
import pandas as pd

from pipelines.config import make_config_class
from pipelines.errors import ConfigError
from pipelines.serving import save_keras_artifacts
from pipelines.stock_forecasting import data as price_data
from pipelines.stock_forecasting.baselines import naive_forecast
from pipelines.stock_forecasting.dataset import prepare_dataset
from pipelines.stock_forecasting.evaluation import evaluate_forecasts
from pipelines.stock_forecasting.metrics import forecast_metrics
from pipelines.stock_forecasting.serving import StockServingModel, save_preprocessor, serving_signature
from pipelines.tasks import Evaluation, ServingBundle, Task
from pipelines.tracking import local_dataset


@dataclasses.dataclass
class StockDataConfig:
    """`data` section: where the prices are and how windows are cut."""

    path: str | None = None
    window: int = 30
    horizon: int = 5
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    eval_folds: int = 4

    def __post_init__(self):
        for key in ("window", "horizon", "eval_folds"):
            if getattr(self, key) < 1:
                raise ConfigError(f"data.{key}: expected a positive integer, got {getattr(self, key)!r}")
        for key in ("val_fraction", "test_fraction"):
            if not 0.0 < getattr(self, key) < 0.5:
                raise ConfigError(f"data.{key}: expected a fraction in (0, 0.5), got {getattr(self, key)!r}")


StockConfig = make_config_class(StockDataConfig)


@dataclasses.dataclass
class StockSplits:
    """The engine's view of a `StockDataset`."""

    dataset: object
    horizon: int

    def __getattr__(self, name):
        return getattr(self.dataset, name)

    @property
    def input_shape(self):
        return self.dataset.x_train.shape[1:]

    @property
    def output_dim(self):
        return self.horizon


def _actual(index_frame, horizon):
    return index_frame[[f"actual_{k}" for k in range(1, horizon + 1)]].to_numpy(dtype="float64")


class StockForecasting(Task):
    name = "stock_forecasting"
    config_class = StockConfig
    head = "regression"
    loss = "mse"
    objective = "val_mase"

    def load_source(self, config):
        return price_data.load_prices_or_default(config.data.path)

    def prepare(self, config, source):
        dataset = prepare_dataset(
            source, config.data.window, config.data.horizon, config.data.val_fraction, config.data.test_fraction
        )
        return StockSplits(dataset, config.data.horizon)

    def dataset_for_logging(self, config, source):
        frames = [frame.assign(series=name) for name, frame in source.items()]
        frame = pd.concat(frames).reset_index()
        origin = config.data.path or "pmdarima.datasets.load_msft"
        return local_dataset(frame, origin, f"prices ({len(source)} series)")

    def _forecast(self, model, data, x, index_frame):
        scaled = model.predict(x, verbose=0)
        return data.preprocessor.to_prices(scaled, index_frame["last_close"].to_numpy())

    def evaluate(self, model, data, config):
        horizon = config.data.horizon
        val_prices = self._forecast(model, data, data.x_val, data.val_index)
        val = forecast_metrics(
            _actual(data.val_index, horizon),
            val_prices,
            naive_forecast(data.val_index),
            data.val_index["last_close"].to_numpy(),
            _mase_scale(data, data.val_index),
        )
        test_prices = self._forecast(model, data, data.x_test, data.test_index)
        report = evaluate_forecasts(data.dataset, data.test_index, test_prices, folds=config.data.eval_folds)
        metrics = {f"val_{key}": float(value) for key, value in val.items()}
        metrics.update({key: float(value) for key, value in report.as_metrics("test").items()})
        forecasts = data.test_index.copy()
        for step in range(horizon):
            forecasts[f"forecast_{step + 1}"] = test_prices[:, step]
        return Evaluation(
            metrics=metrics,
            figures=report.figures,
            tables={"walk_forward": report.walk_forward, "per_series": report.per_series, "test_forecasts": forecasts},
            summary=report.summary,
            headline={"metric": "test_u2", "value": metrics["test_u2"], "baseline": "naive U2 = 1.0"},
        )

    def serving_bundle(self, model, data, workdir):
        artifacts = save_keras_artifacts(model, data.x_test[:32], workdir)
        artifacts["preprocessor"] = save_preprocessor(data.preprocessor, workdir)
        request = self._request(next(iter(data.history.values())).tail(data.window + 1))
        return ServingBundle(StockServingModel(), artifacts, serving_signature(data.horizon), request)

    @staticmethod
    def _request(frame):
        """A served-model request from a price frame indexed by date: `date` (ISO, with the time of day
        when the prices are intraday) and OHLCV columns."""
        out = frame.reset_index()
        daily = bool((out["date"] == out["date"].dt.normalize()).all())
        out["date"] = out["date"].dt.strftime("%Y-%m-%d" if daily else "%Y-%m-%dT%H:%M:%S")
        return out[["date", *price_data.COLUMNS]]

    def read_inputs(self, path, served):
        prices = price_data.load_prices(path)
        if len(prices) != 1:
            raise ConfigError(f"{path}: predict takes one price series, found {len(prices)}: {', '.join(prices)}")
        return self._request(next(iter(prices.values())))


def _mase_scale(data, index_frame):
    """Per-window MASE scale: the mean absolute one-step change of that series' training closes."""
    scales = {name: float(np.mean(np.abs(np.diff(closes)))) for name, closes in data.train_closes.items()}
    return index_frame["series"].map(scales).to_numpy()[:, None]


TASK = StockForecasting()
