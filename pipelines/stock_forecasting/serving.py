"""The served stock model: raw OHLCV rows in, forecast closes per horizon step out."""

import json
from pathlib import Path

import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

from pipelines.errors import DataError
from pipelines.serving import KerasServingModel, check_time_order
from pipelines.stock_forecasting.data import COLUMNS as PRICE_COLUMNS


def serving_signature(horizon):
    """Input: OHLCV rows (an optional `date`); output: optional `date` and `step_1..step_h` prices."""
    inputs = Schema([ColSpec("string", "date", required=False)] + [ColSpec("double", name) for name in PRICE_COLUMNS])
    outputs = Schema(
        [ColSpec("string", "date", required=False)]
        + [ColSpec("double", f"step_{step}") for step in range(1, horizon + 1)]
    )
    return ModelSignature(inputs=inputs, outputs=outputs)


def save_preprocessor(preprocessor, workdir):
    """Write the fitted preprocessor as JSON; returns the path."""
    path = Path(workdir) / "preprocessor.json"
    path.write_text(json.dumps(preprocessor.to_dict()))
    return str(path)


class StockServingModel(KerasServingModel):
    """`predict(rows)`: a DataFrame of `window + 1` or more consecutive daily OHLCV rows (oldest
    first) -> one forecast per window: the closes of the next `horizon` trading days."""

    def load_preprocessing(self, context):
        from pipelines.stock_forecasting.features import StockPreprocessor

        self.preprocessor = StockPreprocessor.from_dict(json.loads(Path(context.artifacts["preprocessor"]).read_text()))

    def serve(self, model_input):
        frame = pd.DataFrame(model_input)
        frame.columns = [str(column).lower() for column in frame.columns]
        missing = [column for column in PRICE_COLUMNS if column not in frame.columns]
        if missing:
            raise DataError(f"request is missing column(s) {', '.join(missing)}; send {', '.join(PRICE_COLUMNS)}")
        check_time_order(frame, "date")
        prices = frame[list(PRICE_COLUMNS)].astype("float64")
        windows = self.preprocessor.windows_from_ohlcv(prices)
        scaled = self.keras_model.predict(windows, verbose=0)
        window = self.preprocessor.window
        last_close = prices["close"].to_numpy()[window:]
        forecast = self.preprocessor.to_prices(scaled, last_close)
        out = pd.DataFrame(forecast, columns=[f"step_{step}" for step in range(1, forecast.shape[1] + 1)])
        if "date" in frame.columns:
            out.insert(0, "date", frame["date"].astype(str).to_numpy()[window:])
        return out
