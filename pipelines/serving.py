"""The base of every served model: a Keras model plus the task's preprocessing, as an MLflow pyfunc.

Tasks subclass `KerasServingModel` and implement `predict`; the saved `.keras` file and a few real
sample inputs travel as artifacts, so `export` can check every format against the Keras model.
"""

from pathlib import Path

import mlflow
import numpy as np


class KerasServingModel(mlflow.pyfunc.PythonModel):
    """Loads `keras_model` (a `.keras` file) and `sample_inputs` (a `.npy` file) from artifacts."""

    def load_context(self, context):
        import keras

        import lstm_models  # noqa: F401  (registers the custom layers for safe-mode loading)

        self.keras_model = keras.models.load_model(context.artifacts["keras_model"])
        self.sample_inputs = np.load(context.artifacts["sample_inputs"])
        self.load_preprocessing(context)

    def load_preprocessing(self, context):
        """Load the task's preprocessing state from `context.artifacts`."""


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
