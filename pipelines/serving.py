"""The base of every served model: a Keras model plus the task's preprocessing, as an MLflow pyfunc.

Tasks subclass `KerasServingModel` and implement `serve`; the saved `.keras` file and a few real
sample inputs travel as artifacts, so `export` can check every format against the Keras model.
"""

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from pipelines.errors import DataError

if TYPE_CHECKING:  # Keras is imported when a model is loaded, not with this module
    import keras


class RequestError(DataError, MlflowException):
    """A request a served model cannot answer, the message naming the row or field.

    A `DataError` to Python callers and the CLI, and an `MlflowException` with HTTP status 400 to
    MLflow's scoring server, which would otherwise answer any other exception with a generic message
    and leave this one in the stack trace.

    Args:
        message: What is wrong with the request, naming the row or field.
    """

    def __init__(self, message: str) -> None:
        MlflowException.__init__(self, message, error_code=INVALID_PARAMETER_VALUE)


class KerasServingModel(mlflow.pyfunc.PythonModel):
    """Loads `keras_model` (a `.keras` file) and `sample_inputs` (a `.npy` file) from artifacts.

    Tasks implement `serve`; `predict` turns its `DataError`s into `RequestError`s.
    """

    # Each task checks its requests itself (errors naming the row or field) against an explicit
    # signature. MLflow 3 would wrap an untyped `predict` anyway and warn, at every import, to add
    # type hints; this is its switch for classes that validate their own input.
    _skip_type_hint_validation = True

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        """Load the Keras model, the sample inputs and the task's preprocessing.

        Args:
            context: MLflow's context; `context.artifacts` maps artifact names to local paths.
        """
        import keras

        import lstm_models  # noqa: F401  (registers the custom layers for safe-mode loading)

        self.keras_model = keras.models.load_model(context.artifacts["keras_model"])
        self.sample_inputs = np.load(context.artifacts["sample_inputs"])
        self.load_preprocessing(context)

    def model_outputs(self, inputs: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """The Keras model's outputs for a request's inputs, `batch_size` rows at a time.

        Through `predict_on_batch`: `keras.Model.predict` builds a data adapter and a step loop at
        every call, which costs far more than the model itself on a small request
        (`python benchmarks/train_throughput.py --serving`, docs/benchmarks.md).

        Args:
            inputs: The model's inputs, first axis the rows.
            batch_size: Rows per call of the model. Default: `256`.

        Returns:
            The outputs, first axis the rows, as `predict` returns them.
        """
        batches = [inputs[start : start + batch_size] for start in range(0, len(inputs), batch_size)]
        return np.concatenate([np.asarray(self.keras_model.predict_on_batch(batch)) for batch in batches or [inputs]])

    def load_preprocessing(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        """Load the task's preprocessing state from `context.artifacts`.

        Args:
            context: MLflow's context; `context.artifacts` maps artifact names to local paths.
        """

    # `model_input` and the return value stay without type hints: MLflow reads them as the request
    # and response schema.
    def predict(self, context: mlflow.pyfunc.PythonModelContext, model_input, params: dict[str, Any] | None = None):
        """Answer a request.

        Args:
            context: MLflow's context (unused: everything was loaded in `load_context`).
            model_input: The request, as MLflow parsed it.
            params: MLflow inference parameters (unused). Default: `None`.

        Returns:
            The task's answer (`serve`).

        Raises:
            RequestError: A request the model cannot answer, naming the row or field.
        """
        try:
            return self.serve(model_input)
        except RequestError:
            raise
        except DataError as error:
            raise RequestError(str(error)) from None

    def serve(self, model_input: Any) -> Any:
        """The task's answer to a request.

        Args:
            model_input: A DataFrame, or what MLflow parsed from the body.

        Returns:
            The task's answer.

        Raises:
            DataError: A request the model cannot answer, naming the row or field.
        """
        raise NotImplementedError


def check_time_order(frame: pd.DataFrame, column: str) -> None:
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


def save_keras_artifacts(model: "keras.Model", sample_inputs: Any, workdir: str | os.PathLike) -> dict[str, str]:
    """Write the `.keras` model and sample inputs for a pyfunc model.

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
