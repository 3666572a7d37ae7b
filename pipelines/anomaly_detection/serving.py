"""The served anomaly model: raw rows of one series in; a score, an anomaly score and both decisions per row out.

A series the model was calibrated on is recognised by name (the ``series`` column, which ``predict``
fills with the input file's path): the file name is enough (``nyc_taxi.csv`` finds
``realKnownCause/nyc_taxi.csv``). Any other series is calibrated on its own first rows, a warm-up
of NAB's probationary period (15% of the rows sent, at most 750) unless the request's ``warmup``
parameter (``predict --warmup N``) sets it; the rows of the warm-up get no decision. The
``calibration`` column of the answer says which calibration scored each row.
"""

from __future__ import annotations

import json
import math
from pathlib import Path, PurePosixPath
from types import SimpleNamespace

import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema
from mlflow.types.schema import AnyType

from pipelines.anomaly_detection.data import Series, build_series
from pipelines.anomaly_detection.detection import SeriesDetector, calibrate_part
from pipelines.anomaly_detection.features import check_lengths, series_part
from pipelines.anomaly_detection.nab_scoring import probationary_length
from pipelines.csv_table import read_csv_strings
from pipelines.errors import DataError
from pipelines.serving import KerasServingModel, RequestError, check_time_order

SERIES_COLUMN = "series"
OUTPUT_COLUMNS = ("score", "anomaly_score", "is_anomaly", "alert", "calibration")
WARMUP_PARAM = "warmup"


def serving_signature(timestamp_column: str, value_columns: tuple[str, ...]) -> ModelSignature:
    """The served model's signature.

    Args:
        timestamp_column: the timestamp column of the training data.
        value_columns: the value columns of the training data.

    Returns:
        Input: optional timestamp and series name, the value columns (numbers, integers included: the
        model checks them itself); parameter ``warmup`` (rows; 0: NAB's probationary period); output:
        optional timestamp, ``score``, ``anomaly_score`` (0..1, ``is_anomaly`` from 0.5),
        ``is_anomaly`` and ``alert`` (0/1), ``calibration``.
    """
    inputs = Schema(
        [ColSpec("string", timestamp_column, required=False), ColSpec("string", SERIES_COLUMN, required=False)]
        + [ColSpec(AnyType(), column) for column in value_columns]  # "double" refuses int64 columns
    )
    outputs = Schema(
        [
            ColSpec("string", timestamp_column, required=False),
            ColSpec("double", "score"),
            ColSpec("double", "anomaly_score"),
            ColSpec("long", "is_anomaly"),
            ColSpec("long", "alert"),
            ColSpec("string", "calibration"),
        ]
    )
    return ModelSignature(inputs=inputs, outputs=outputs, params=ParamSchema([ParamSpec(WARMUP_PARAM, "long", 0)]))


def save_detectors(
    detectors: dict[str, SeriesDetector],
    timestamp_column: str,
    value_columns: tuple[str, ...],
    workdir: str | Path,
    settings: dict | None = None,
) -> str:
    """Write the calibrated per-series detectors as JSON (``detectors.json``, an artifact of the model).

    Args:
        detectors: ``{series name: detector}``.
        timestamp_column: the timestamp column of the training data.
        value_columns: the value columns of the training data.
        workdir: the folder to write into.
        settings: ``{"detection": the detection group as a dict, "val_fraction": data.val_fraction}``,
            what a warm-up calibrates with. Default: ``None`` (no warm-up).

    Returns:
        The file's path.
    """
    path = Path(workdir) / "detectors.json"
    state = {
        "timestamp_column": timestamp_column,
        "value_columns": list(value_columns),
        "series": [detector.to_dict() for detector in detectors.values()],
        "settings": settings,
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
    """``predict(rows, params={"warmup": N})``: consecutive rows of one series, oldest first, with the
    value columns the model was trained on (an optional timestamp column; an optional ``series``
    column naming the series, see the module docstring). Answers one row per input row from the
    first scorable one (``window + prediction_steps - 1`` rows in for the prediction detector,
    ``window - 1`` for reconstruction): the raw ``score``, the ``anomaly_score`` in 0..1,
    ``is_anomaly``, ``alert`` and ``calibration`` (the series whose calibration scored the row, or
    ``warm-up: first N rows``). The cooldown between alerts starts afresh with each request; for a
    known series the likelihood's history and the value and seasonal checks' past values start from
    its training prefix, as if the request followed it."""

    def load_preprocessing(self, context) -> None:
        """Read the per-series detectors and the warm-up settings (``detectors.json``) from the artifacts."""
        state = json.loads(Path(context.artifacts["detectors"]).read_text())
        self.timestamp_column = state["timestamp_column"]
        self.value_columns = state["value_columns"]
        self.detectors = {item["name"]: SeriesDetector.from_dict(item) for item in state["series"]}
        self.settings = state.get("settings")  # None: a model logged before the warm-up existed

    def _known(self, frame: pd.DataFrame) -> SeriesDetector | None:
        """The detector of the series the request names (by name or file name); ``None``: warm up."""
        if SERIES_COLUMN not in frame.columns:
            return next(iter(self.detectors.values())) if len(self.detectors) == 1 else None
        blank = np.flatnonzero(frame[SERIES_COLUMN].isna().to_numpy())
        if blank.size:
            raise DataError(f"request row {blank[0]}, column '{SERIES_COLUMN}': missing")
        names = frame[SERIES_COLUMN].astype(str).unique()
        if len(names) != 1:
            raise DataError(f"request column '{SERIES_COLUMN}' must name one series; got {', '.join(names[:5])}")
        name = names[0]
        if name in self.detectors:
            return self.detectors[name]
        matches = [key for key in self.detectors if PurePosixPath(key).name == PurePosixPath(name).name]
        if len(matches) > 1:
            raise DataError(
                f"request series {name!r} matches {len(matches)} series of the model by file name: "
                f"{', '.join(matches)}; name one of them in the '{SERIES_COLUMN}' column"
            )
        return self.detectors[matches[0]] if matches else None

    def predict(self, context, model_input, params: dict | None = None):
        """Answer a request; ``params={"warmup": N}`` sets the warm-up of a series the model never saw.

        Raises:
            RequestError: A request the model cannot answer, naming the row or field.
        """
        try:
            return self.serve(model_input, int((params or {}).get(WARMUP_PARAM) or 0))
        except RequestError:
            raise
        except DataError as error:
            raise RequestError(str(error)) from None

    def serve(self, model_input, warmup: int = 0) -> pd.DataFrame:
        """Score a request (see the class docstring); a bad one raises ``DataError`` naming the row or column.

        Args:
            model_input: the request's rows.
            warmup: rows a series the model never saw is calibrated on; 0: NAB's probationary period.

        Returns:
            One row per scored input row.
        """
        frame = pd.DataFrame(model_input)
        missing = [column for column in self.value_columns if column not in frame.columns]
        if missing:
            raise DataError(f"request is missing column(s) {', '.join(missing)}; send {', '.join(self.value_columns)}")
        check_time_order(frame, self.timestamp_column)
        values = _numbers(frame, self.value_columns)
        predict = self.model_outputs
        detector = self._known(frame)
        if detector is not None:
            if len(values) <= detector.first_row:
                raise DataError(
                    f"request has {len(values)} rows; this {detector.detector} detector scores from row "
                    f"{detector.first_row + 1} on (window {detector.window}, prediction steps {detector.steps})"
                )
            detection, calibration = detector.detect(predict, values), detector.name
        else:
            detector, detection, calibration = self._warm_up(frame, values, warmup, predict)
        start = detector.first_row
        out = pd.DataFrame(
            {
                "score": detection.score[start:],
                "anomaly_score": detection.anomaly_score[start:],
                "is_anomaly": detection.is_anomaly[start:].astype(np.int64),
                "alert": detection.alert[start:].astype(np.int64),
                "calibration": calibration,
            }
        )
        if self.timestamp_column in frame.columns:
            out.insert(0, self.timestamp_column, frame[self.timestamp_column].astype(str).to_numpy()[start:])
        return out

    def _warm_up(self, frame: pd.DataFrame, values: np.ndarray, warmup: int, predict):
        """Calibrate on the request's first rows, as training calibrates on a series' normal prefix."""
        if self.settings is None:
            raise DataError(
                f"this model knows the series {', '.join(self.detectors)} and was logged before it could warm up "
                f"on another; name one of them in a '{SERIES_COLUMN}' column"
            )
        like = next(iter(self.detectors.values()))
        n_prefix = warmup or probationary_length(len(values))
        n_train = math.floor((1.0 - self.settings["val_fraction"]) * n_prefix + 1e-9)
        name = str(frame[SERIES_COLUMN].iloc[0]) if SERIES_COLUMN in frame.columns else "request"
        where = f"warm-up of {name}"
        try:
            check_lengths(where, len(values), n_train, n_prefix, like.detector, like.window, like.steps)
        except DataError as error:
            raise DataError(
                f"{error} The model was not calibrated on this series, so it warms up on its first rows: send "
                f"more rows, or set the warm-up (predict --warmup N, or the request's '{WARMUP_PARAM}' parameter)"
            ) from None
        if self.timestamp_column in frame.columns:
            stamps = pd.to_datetime(frame[self.timestamp_column].astype(str), utc=True, format="mixed")
            stamps = pd.DatetimeIndex(stamps.dt.tz_localize(None), name="timestamp")
            detection_settings = self.settings["detection"]
        else:  # no clock: no seasonal checks
            stamps = pd.date_range("1970-01-01", periods=len(values), freq="s", name="timestamp")
            detection_settings = {**self.settings["detection"], "seasonal_days": []}
        series = Series(name, stamps, values, tuple(self.value_columns), [], False, "request")
        part = series_part(series, n_train, n_prefix)
        outcome, _ = calibrate_part(
            predict, part, SimpleNamespace(**detection_settings), like.detector, like.window, like.steps
        )
        return outcome.detector, outcome.detection, f"warm-up: first {n_prefix} rows"


def _numbers(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """The value columns as float64 (integers too); a missing or non-numeric value raises, naming it."""
    numbers = [pd.to_numeric(frame[column], errors="coerce") for column in columns]
    values = np.column_stack([column.to_numpy(dtype=np.float64, na_value=np.nan) for column in numbers])
    bad = np.argwhere(~np.isfinite(values))
    if len(bad):
        row, col = bad[0]
        raise DataError(f"request row {row}, column '{columns[col]}': value is missing or not a finite number")
    return values


def read_request(
    path: str | Path, timestamp_column: str, value_columns: tuple[str, ...], name: str | None = None
) -> pd.DataFrame:
    """A CSV of one series for ``predict``, checked as training data is.

    The served model's timestamp and value columns, timestamps parsed and ascending (a repeated one
    dropped), values numbers (short gaps filled); errors name the file, line and column. A
    ``series`` column, when present, must name one series; without one, the request names the series
    ``name``. The separator (``,`` or ``;``) is read from the header.

    Args:
        path: the CSV file.
        timestamp_column: the served model's timestamp column.
        value_columns: the served model's value columns.
        name: the series' name, by which the model recognises a series it was calibrated on.
            Default: ``None``, the request names none.

    Returns:
        The request (``request_frame``).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file or folder")
    with path.open(encoding="utf-8-sig", errors="replace") as handle:  # read_csv_strings reports bad bytes
        header = next((line for line in handle if line.strip()), "")
    separator = ";" if header.count(";") > header.count(",") else ","
    frame, lines = read_csv_strings(path, separator)
    value_columns = list(value_columns)
    series = build_series(frame, lines, str(path), path.name, timestamp_column, value_columns)
    if SERIES_COLUMN not in frame.columns:
        return request_frame(series, timestamp_column, value_columns, name)
    names = frame[SERIES_COLUMN].dropna().unique()
    if len(names) != 1:
        raise DataError(f"{path}: column '{SERIES_COLUMN}' must name one series; found {', '.join(names[:5])}")
    return request_frame(series, timestamp_column, value_columns, names[0])
