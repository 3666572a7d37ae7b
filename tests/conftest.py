"""Shared test setup: quiet TensorFlow, no telemetry, MLflow and Optuna state under tmp_path."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import mlflow  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path, monkeypatch):
    """Every test gets its own MLflow store and working directory and a fresh Keras session."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)  # the process-wide URI a previous test may have set
    mlflow.set_registry_uri(uri)
    while mlflow.active_run():
        mlflow.end_run()
    monkeypatch.chdir(tmp_path)
    keras.backend.clear_session(free_memory=False)
    keras.utils.set_random_seed(0)
    yield
