"""The shared training step and the MLflow edge: divergence, metric names, unreachable server."""

import socket
import subprocess
import sys
import time
import warnings

import keras
import mlflow
import numpy as np
import pandas as pd
import pytest

from pipelines import tracking
from pipelines.config import ModelConfig, TrainConfig
from pipelines.tasks import ServingBundle
from pipelines.training import (
    StopOnDivergence,
    TrainingDiverged,
    average_ensemble,
    build_and_compile,
    ensemble_members,
    fit,
)


class _Config:
    model = ModelConfig(variant="lstm", units=4)
    train = TrainConfig(learning_rate=1e-3)


def test_nan_loss_raises_training_diverged():
    model = build_and_compile(_Config, (5, 2), "regression", 1, "mse")
    x = np.random.rand(64, 5, 2).astype("float32")
    y = np.full((64, 1), np.nan, dtype="float32")  # a NaN target makes the very first loss NaN
    with pytest.raises(TrainingDiverged, match="loss became nan"):
        model.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[StopOnDivergence()])


def test_finite_training_is_not_interrupted():
    model = build_and_compile(_Config, (5, 2), "regression", 1, "mse")
    x = np.random.rand(64, 5, 2).astype("float32")
    history = model.fit(x, x[:, -1, :1], epochs=2, batch_size=16, verbose=0, callbacks=[StopOnDivergence()])
    assert len(history.epoch) == 2


@pytest.mark.parametrize(
    ("keras_name", "expected"),
    [("loss", "train_loss"), ("mae", "train_mae"), ("val_loss", "val_loss"), ("val_mae", "val_mae")],
)
def test_metric_names_carry_their_split(keras_name, expected):
    assert tracking.metric_name(keras_name) == expected


def test_unreachable_tracking_server_fails_fast(monkeypatch):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    start = time.monotonic()
    with pytest.raises(tracking.TrackingUnavailable, match=f"127.0.0.1:{port} is unreachable"):
        tracking.setup("stock_forecasting")
    assert time.monotonic() - start < 10


def test_default_tracking_uri_is_local_sqlite(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert tracking.tracking_uri() == "sqlite:///mlflow.db"
    keras.backend.clear_session()


def test_average_ensemble_averages_its_members_and_reloads(tmp_path):
    x = np.random.default_rng(0).random((16, 5, 2)).astype("float32")
    members = [build_and_compile(_Config, (5, 2), "classification", 3, "sparse_categorical_crossentropy")
               for _ in range(3)]  # fmt: skip
    single = average_ensemble(members[:1])
    assert single is members[0] and ensemble_members(single) == [members[0]]
    ensemble = average_ensemble(members)
    expected = np.mean([member.predict(x, verbose=0) for member in members], axis=0)
    np.testing.assert_allclose(ensemble.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
    assert [member.name for member in ensemble_members(ensemble)] == ["member_0", "member_1", "member_2"]
    ensemble.save(tmp_path / "ensemble.keras")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reloaded = keras.models.load_model(tmp_path / "ensemble.keras")
    assert not [str(w.message) for w in caught if "optimizer" in str(w.message)]
    assert not reloaded.trainable_weights
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
    assert len(ensemble_members(reloaded)) == 3


def test_fit_on_datasets_trains_without_the_ignored_shuffle_warning():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x, y = rng.random((32, 5, 2)).astype("float32"), rng.random((32, 1)).astype("float32")
    batches = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    data = type("Data", (), {"train_dataset": batches, "val_dataset": batches})()
    config = type("Config", (), {"model": _Config.model, "train": TrainConfig(epochs=2, verbose=0)})
    model = build_and_compile(config, (5, 2), "regression", 1, "mse")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = fit(model, data, config)
    assert len(history.history["val_loss"]) == 2
    assert not [str(w.message) for w in caught if "shuffle" in str(w.message)]


def test_cosine_schedule_decays_the_learning_rate_per_epoch_towards_zero():
    rng = np.random.default_rng(0)
    x, y = rng.random((32, 5, 2)).astype("float32"), rng.random((32, 1)).astype("float32")
    data = type("Data", (), {"x_train": x, "y_train": y, "x_val": x, "y_val": y})()
    train = TrainConfig(epochs=4, learning_rate=0.01, lr_schedule="cosine", early_stopping_patience=10, verbose=0)
    config = type("Config", (), {"model": _Config.model, "train": train})
    model = build_and_compile(config, (5, 2), "regression", 1, "mse")
    history = fit(model, data, config)
    expected = [0.01 * 0.5 * (1 + np.cos(np.pi * epoch / 4)) for epoch in range(4)]
    np.testing.assert_allclose(history.history["learning_rate"], expected, rtol=1e-5)
    assert float(model.optimizer.learning_rate) == pytest.approx(expected[-1], rel=1e-5)


def test_local_dataset_names_its_path_without_the_ambiguous_source_warning(tmp_path):
    path = tmp_path / "prices.csv"
    frame = pd.DataFrame({"close": [1.0, 2.0, 3.0]})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = tracking.local_dataset(frame, path, "prices")
    assert not [w for w in caught if "interpreted in multiple ways" in str(w.message)]
    assert (dataset.name, dataset.source.uri) == ("prices", str(path))
    assert dataset.profile["num_rows"] == 3


def test_importing_the_served_models_prints_no_mlflow_type_hint_warning():
    # MLflow 3 warns at class definition for every untyped `predict`; users saw it on every command.
    modules = ", ".join(
        f"pipelines.{task}.serving" for task in ("stock_forecasting", "speech_commands", "anomaly_detection")
    )
    completed = subprocess.run(
        [sys.executable, "-W", "always", "-c", f"import {modules}"], capture_output=True, text=True, check=True
    )
    assert "Add type hints" not in completed.stderr


class _ServedFromATestModule(mlflow.pyfunc.PythonModel):
    _skip_type_hint_validation = True

    def predict(self, context, model_input, params=None):
        return model_input


def test_a_served_class_outside_the_carried_packages_is_refused_before_logging():
    # A logged model carries only pipelines and lstm_models: a class from elsewhere would not load.
    bundle = ServingBundle(_ServedFromATestModule(), {}, None)
    with pytest.raises(TypeError, match=r"tests\.engine\.test_training_and_tracking\._ServedFromATestModule: it must"):
        tracking.log_serving_model(bundle, "stock_forecasting")
    experiments = [experiment.experiment_id for experiment in mlflow.search_experiments()]
    assert mlflow.active_run() is None and not mlflow.search_logged_models(experiments, output_format="list")
