"""The served anomaly model: raw rows of one series in, a score, an anomaly score and a flag per row out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

from pipelines.anomaly_detection.data import Series, build_series
from pipelines.anomaly_detection.detection import SeriesDetector
from pipelines.csv_table import read_csv_strings
from pipelines.errors import DataError
from pipelines.serving import KerasServingModel, check_time_order

SERIES_COLUMN = "series"
OUTPUT_COLUMNS = ("score", "anomaly_score", "is_anomaly")


def serving_signature(timestamp_column: str, value_columns: tuple[str, ...]) -> ModelSignature:
    """The served model's signature.

    Args:
        timestamp_column: the timestamp column of the training data.
        value_columns: the value columns of the training data.

    Returns:
        Input: optional timestamp and series name, the value columns; output: optional timestamp,
        ``score``, ``anomaly_score`` (0..1, threshold 0.5) and ``is_anomaly`` (0/1).
    """
    inputs = Schema(
        [ColSpec("string", timestamp_column, required=False), ColSpec("string", SERIES_COLUMN, required=False)]
        + [ColSpec("double", column) for column in value_columns]
    )
    outputs = Schema(
        [
            ColSpec("string", timestamp_column, required=False),
            ColSpec("double", "score"),
            ColSpec("double", "anomaly_score"),
            ColSpec("long", "is_anomaly"),
        ]
    )
    return ModelSignature(inputs=inputs, outputs=outputs)


def save_detectors(
    detectors: dict[str, SeriesDetector], timestamp_column: str, value_columns: tuple[str, ...], workdir: str | Path
) -> str:
    """Write the calibrated per-series detectors as JSON (``detectors.json``, an artifact of the model).

    Args:
        detectors: ``{series name: detector}``.
        timestamp_column: the timestamp column of the training data.
        value_columns: the value columns of the training data.
        workdir: the folder to write into.

    Returns:
        The file's path.
    """
    path = Path(workdir) / "detectors.json"
    state = {
        "timestamp_column": timestamp_column,
        "value_columns": list(value_columns),
        "series": [detector.to_dict() for detector in detectors.values()],
    }
    path.write_text(json.dumps(state))
    return str(path)


def request_frame(
    series: Series, timestamp_column: str, value_columns: tuple[str, ...], series_name: str | None = None
) -> pd.DataFrame:
    """A served-model request holding all of a series.

    Args:
        series: the series.
        timestamp_column: the request's timestamp column (the served model's).
        value_columns: the request's value columns (the served model's).
        series_name: written in a ``series`` column when given. Default: ``None``, no such column.

    Returns:
        The timestamp as text, the ``series`` column (when named), then the value columns.
    """
    out = pd.DataFrame({timestamp_column: series.timestamps.astype(str)})
    if series_name is not None:
        out[SERIES_COLUMN] = series_name
    for index, column in enumerate(value_columns):
        out[column] = series.values[:, index]
    return out


class AnomalyServingModel(KerasServingModel):
    """``predict(rows)``: consecutive rows of one series, oldest first, with the value columns the
    model was trained on (an optional timestamp column; a ``series`` column naming the series when
    the model was trained on several). Answers one row per input row from the first scorable one
    (``window + prediction_steps - 1`` rows in for the prediction detector, ``window - 1`` for
    reconstruction): the raw ``score``, the ``anomaly_score`` in 0..1 and ``is_anomaly``. The cooldown
    between alerts starts afresh with each request; the likelihood's history and the value and
    seasonal checks' past values start from the training prefix, as if the request followed it."""

    def load_preprocessing(self, context) -> None:
        """Read the per-series detectors (``detectors.json``) from the model's artifacts."""
        state = json.loads(Path(context.artifacts["detectors"]).read_text())
        self.timestamp_column = state["timestamp_column"]
        self.value_columns = state["value_columns"]
        self.detectors = {item["name"]: SeriesDetector.from_dict(item) for item in state["series"]}

    def _detector(self, frame: pd.DataFrame) -> SeriesDetector:
        if SERIES_COLUMN in frame.columns:
            blank = np.flatnonzero(frame[SERIES_COLUMN].isna().to_numpy())
            if blank.size:
                raise DataError(f"request row {blank[0]}, column '{SERIES_COLUMN}': missing")
            names = frame[SERIES_COLUMN].astype(str).unique()
            if len(names) != 1 or names[0] not in self.detectors:
                raise DataError(
                    f"request column '{SERIES_COLUMN}' must name one series the model knows: "
                    f"{', '.join(self.detectors)}; got {', '.join(names[:5])}"
                )
            return self.detectors[names[0]]
        if len(self.detectors) != 1:
            raise DataError(
                f"this model was calibrated on {len(self.detectors)} series; add a '{SERIES_COLUMN}' column "
                f"naming one of: {', '.join(self.detectors)}"
            )
        return next(iter(self.detectors.values()))

    def serve(self, model_input) -> pd.DataFrame:
        """Score a request (see the class docstring); a bad one raises ``DataError`` naming the row or column."""
        frame = pd.DataFrame(model_input)
        missing = [column for column in self.value_columns if column not in frame.columns]
        if missing:
            raise DataError(f"request is missing column(s) {', '.join(missing)}; send {', '.join(self.value_columns)}")
        check_time_order(frame, self.timestamp_column)
        detector = self._detector(frame)
        values = frame[self.value_columns].to_numpy(dtype=np.float64)
        bad = np.argwhere(~np.isfinite(values))
        if len(bad):
            row, col = bad[0]
            raise DataError(f"request row {row}, column '{self.value_columns[col]}': value is missing or not finite")
        if len(values) <= detector.first_row:
            raise DataError(
                f"request has {len(values)} rows; this {detector.detector} detector scores from row "
                f"{detector.first_row + 1} on (window {detector.window}, prediction steps {detector.steps})"
            )
        detection = detector.detect(lambda x: self.keras_model.predict(x, verbose=0), values)
        start = detector.first_row
        out = pd.DataFrame(
            {
                "score": detection.score[start:],
                "anomaly_score": detection.anomaly_score[start:],
                "is_anomaly": detection.alert[start:].astype(np.int64),
            }
        )
        if self.timestamp_column in frame.columns:
            out.insert(0, self.timestamp_column, frame[self.timestamp_column].astype(str).to_numpy()[start:])
        return out


def read_request(path: str | Path, timestamp_column: str, value_columns: tuple[str, ...]) -> pd.DataFrame:
    """A CSV of one series for ``predict``, checked as training data is.

    The served model's timestamp and value columns, timestamps parsed and ascending (a repeated one
    dropped), values numbers (short gaps filled); errors name the file, line and column. A
    ``series`` column, when present, must name one series. The separator (``,`` or ``;``) is read
    from the header.

    Args:
        path: the CSV file.
        timestamp_column: the served model's timestamp column.
        value_columns: the served model's value columns.

    Returns:
        The request (``request_frame``).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    with path.open(encoding="utf-8-sig", errors="replace") as handle:  # read_csv_strings reports bad bytes
        header = next((line for line in handle if line.strip()), "")
    separator = ";" if header.count(";") > header.count(",") else ","
    frame, lines = read_csv_strings(path, separator)
    value_columns = list(value_columns)
    series = build_series(frame, lines, str(path), path.name, timestamp_column, value_columns)
    if SERIES_COLUMN not in frame.columns:
        return request_frame(series, timestamp_column, value_columns)
    names = frame[SERIES_COLUMN].dropna().unique()
    if len(names) != 1:
        raise DataError(f"{path}: column '{SERIES_COLUMN}' must name one series; found {', '.join(names[:5])}")
    return request_frame(series, timestamp_column, value_columns, names[0])
