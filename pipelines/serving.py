"""The base of every served model: a Keras model plus the task's preprocessing, as an MLflow pyfunc.

Tasks subclass `KerasServingModel` and implement `predict`; the saved `.keras` file and a few real
sample inputs travel as artifacts, so `export` can check every format against the Keras model.
"""

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from pipelines.errors import DataError


class RequestError(DataError, MlflowException):
    """A request a served model cannot answer, the message naming the row or field.

    A `DataError` to Python callers and the CLI, and an `MlflowException` with HTTP status 400 to
    MLflow's scoring server, which would otherwise answer any other exception with a generic message
    and leave this one in the stack trace.
    """

    def __init__(self, message):
        MlflowException.__init__(self, message, error_code=INVALID_PARAMETER_VALUE)


class KerasServingModel(mlflow.pyfunc.PythonModel):
    """Loads `keras_model` (a `.keras` file) and `sample_inputs` (a `.npy` file) from artifacts.

    Tasks implement `serve`; `predict` turns its `DataError`s into `RequestError`s.
    """

    # Each task checks its requests itself (errors naming the row or field) against an explicit
    # signature. MLflow 3 would wrap an untyped `predict` anyway and warn, at every import, to add
    # type hints; this is its switch for classes that validate their own input.
    _skip_type_hint_validation = True

    def load_context(self, context):
        import keras

        import lstm_models  # noqa: F401  (registers the custom layers for safe-mode loading)

        self.keras_model = keras.models.load_model(context.artifacts["keras_model"])
        self.sample_inputs = np.load(context.artifacts["sample_inputs"])
        self.load_preprocessing(context)

    def load_preprocessing(self, context):
        """Load the task's preprocessing state from `context.artifacts`."""

    def predict(self, context, model_input, params=None):
        """Answer a request; a bad one raises `RequestError` naming the row or field."""
        try:
            return self.serve(model_input)
        except RequestError:
            raise
        except DataError as error:
            raise RequestError(str(error)) from None

    def serve(self, model_input):
        """The task's answer to a request (a DataFrame or what MLflow parsed from the body)."""
        raise NotImplementedError


def check_time_order(frame, column):
    """Refuse a request whose time column (when sent) does not parse or is not strictly ascending.

    Args:
        frame: The request as a DataFrame.
        column: The time column's name.

    Raises:
        DataError: Naming the request row (counted from 0), the column and the value.
    """
    if column not in frame.columns:
        return
    text = frame[column].astype(str)
    stamps = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
    if stamps.isna().any():  # per-row parsing, slow on long requests, only when ISO 8601 does not fit
        stamps = pd.to_datetime(text, errors="coerce", utc=True, format="mixed")
    bad = np.flatnonzero(stamps.isna().to_numpy())
    if bad.size:
        raise DataError(f"request row {bad[0]}, column '{column}': cannot parse {text.iloc[bad[0]]!r} as a time")
    steps = np.diff(stamps.dt.tz_localize(None).to_numpy())
    late = np.flatnonzero(steps <= np.timedelta64(0))
    if late.size:
        row = int(late[0]) + 1
        raise DataError(
            f"request row {row}, column '{column}': {text.iloc[row]} does not come after row {row - 1}'s "
            f"{text.iloc[row - 1]}; send rows oldest first, each time once"
        )


def save_keras_artifacts(model, sample_inputs, workdir):
    """Write the `.keras` model and sample inputs; returns the artifacts mapping for pyfunc.

    Args:
        model: The trained Keras model.
        sample_inputs: A few real, preprocessed model inputs.
        workdir: Folder to write into.

    Returns:
        `{"keras_model": path, "sample_inputs": path}`.
    """
    workdir = Path(workdir)
    model_path = workdir / "model.keras"
    samples_path = workdir / "sample_inputs.npy"
    model.save(model_path)
    np.save(samples_path, np.asarray(sample_inputs, dtype="float32"))
    return {"keras_model": str(model_path), "sample_inputs": str(samples_path)}
