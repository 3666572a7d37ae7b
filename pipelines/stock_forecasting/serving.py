"""The served stock model: raw OHLCV rows in, forecast closes per horizon step out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

from pipelines.errors import DataError
from pipelines.serving import KerasServingModel, check_time_order
from pipelines.stock_forecasting.data import COLUMNS as PRICE_COLUMNS
from pipelines.stock_forecasting.features import covariate_column, level_name

if TYPE_CHECKING:
    from pipelines.stock_forecasting.features import StockPreprocessor


def bound_columns(horizon: int, levels: tuple[float, ...]) -> list[str]:
    """The interval columns of a response: `step_k_lower_<level>`, `step_k_upper_<level>` per step and level.

    Args:
        horizon: forecast steps.
        levels: interval levels, e.g. `(0.8, 0.95)`.

    Returns:
        The names, step by step, each level's lower then upper bound.
    """
    return [
        f"step_{step}_{side}_{level_name(level)}"
        for step in range(1, horizon + 1)
        for level in levels
        for side in ("lower", "upper")
    ]


def serving_signature(horizon: int, levels: tuple[float, ...] = (), covariates: tuple[str, ...] = ()) -> ModelSignature:
    """The served model's signature.

    Args:
        horizon: forecast steps.
        levels: the interval levels the model gives bounds for. Default: none.
        covariates: `features.covariates` entries: a request column per column or series covariate, and a
            required `date` with a calendar one. Default: none.

    Returns:
        Input: OHLCV rows (and covariate columns) with an optional `date`; output: the optional `date`,
        `step_1..step_h` prices and their interval bounds (`bound_columns`).
    """
    calendar = any(spec.startswith("calendar:") for spec in covariates)
    extra = dict.fromkeys(c for c in (covariate_column(spec) for spec in covariates) if c is not None)
    inputs = Schema(
        [ColSpec("string", "date", required=calendar)]
        + [ColSpec("double", name) for name in PRICE_COLUMNS]
        + [ColSpec("double", name) for name in extra]
    )
    outputs = Schema(
        [ColSpec("string", "date", required=False)]
        + [ColSpec("double", f"step_{step}") for step in range(1, horizon + 1)]
        + [ColSpec("double", name) for name in bound_columns(horizon, tuple(levels))]
    )
    return ModelSignature(inputs=inputs, outputs=outputs)


def save_preprocessor(preprocessor: StockPreprocessor, workdir: str | Path) -> str:
    """Write the fitted preprocessor as JSON.

    Args:
        preprocessor: the training data's fitted preprocessor.
        workdir: the folder to write `preprocessor.json` into.

    Returns:
        The path written.
    """
    path = Path(workdir) / "preprocessor.json"
    path.write_text(json.dumps(preprocessor.to_dict()))
    return str(path)


def request_frame(prices: pd.DataFrame, extra: tuple[str, ...] = ()) -> pd.DataFrame:
    """A served-model request from a price frame indexed by date.

    Args:
        prices: a frame as `data.load_prices` returns one.
        extra: covariate columns to send too. Default: none.

    Returns:
        `date` (ISO, with the time of day when the prices are intraday), the OHLCV columns and `extra`.
    """
    out = prices.reset_index()
    daily = bool((out["date"] == out["date"].dt.normalize()).all())
    out["date"] = out["date"].dt.strftime("%Y-%m-%d" if daily else "%Y-%m-%dT%H:%M:%S")
    return out[["date", *PRICE_COLUMNS, *extra]]


class StockServingModel(KerasServingModel):
    """`predict(rows)`: a DataFrame of `window + 1` or more consecutive daily OHLCV rows (oldest
    first, with the covariates' columns) -> one forecast per window: the closes of the next
    `horizon` trading days and their interval bounds (`step_k_lower_80`, `step_k_upper_80`, ...)."""

    def load_preprocessing(self, context: Any) -> None:
        """Load the fitted preprocessor from `context.artifacts["preprocessor"]`.

        Args:
            context: MLflow's model context.
        """
        from pipelines.stock_forecasting.features import StockPreprocessor

        self.preprocessor = StockPreprocessor.from_dict(json.loads(Path(context.artifacts["preprocessor"]).read_text()))

    def serve(self, model_input: Any) -> pd.DataFrame:
        """Forecast from every window of the rows sent.

        Args:
            model_input: OHLCV rows, oldest first (a DataFrame or what MLflow parsed from the body).

        Returns:
            One row per window: the optional `date` of its last day and `step_1..step_h` prices.
        """
        frame = pd.DataFrame(model_input)
        frame.columns = [str(column).lower() for column in frame.columns]
        missing = [column for column in PRICE_COLUMNS if column not in frame.columns]
        if missing:
            raise DataError(f"request is missing column(s) {', '.join(missing)}; send {', '.join(PRICE_COLUMNS)}")
        check_time_order(frame, "date")
        prices = frame[list(PRICE_COLUMNS)].astype("float64")
        extra = [c for c in frame.columns if c not in PRICE_COLUMNS]
        windows = self.preprocessor.windows_from_ohlcv(pd.concat([prices, frame[extra]], axis=1))
        scaled = self.model_outputs(windows)
        window = self.preprocessor.window
        last_close = prices["close"].to_numpy()[window:]
        forecast = self.preprocessor.to_prices(scaled, last_close)
        out = pd.DataFrame(forecast, columns=[f"step_{step}" for step in range(1, forecast.shape[1] + 1)])
        for level, (lower, upper) in self.preprocessor.intervals(forecast).items():
            for step in range(forecast.shape[1]):
                out[f"step_{step + 1}_lower_{level_name(level)}"] = lower[:, step]
                out[f"step_{step + 1}_upper_{level_name(level)}"] = upper[:, step]
        levels = self.preprocessor.interval_levels
        out = out[[*(f"step_{k}" for k in range(1, forecast.shape[1] + 1)), *bound_columns(forecast.shape[1], levels)]]
        if "date" in frame.columns:
            out.insert(0, "date", frame["date"].astype(str).to_numpy()[window:])
        return out
