"""End to end on the stock task: tune -> nested MLflow runs -> register -> load @champion -> predict."""

import io
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from pipelines import workflows
from pipelines.cli import main as cli_main
from pipelines.errors import ConfigError, DataError
from pipelines.stock_forecasting.synthetic import synthetic_ohlcv, write_csv
from pipelines.training import ensemble_members
from tests.helpers import serve_logged_example

TINY = [
    "train.epochs=2",
    "train.verbose=0",
    "model.units=4",
    "features.window=10",
    "forecast.horizon=3",
]
SPACE = [
    "search.space={model.variant: {type: categorical, choices: [lstm, gru]}, "
    "train.learning_rate: {type: float, low: 0.001, high: 0.01, log: true}}"
]


@pytest.fixture
def prices_csv(tmp_path):
    return write_csv(synthetic_ohlcv(300), tmp_path / "prices.csv")


@pytest.mark.slow
def test_tune_resume_register_and_serve(prices_csv, tmp_path):
    overrides = [*TINY, *SPACE, f"data.path={prices_csv}"]
    storage = str(tmp_path / "journal.log")
    # --force: whether a two-epoch model passes the gate is not what this test is about (test_gate_and_card.py).
    first = workflows.tune(
        "stock_forecasting", 2, overrides=overrides, study="s1", storage=storage, register=True, force=True
    )
    assert first.counts["complete"] + first.counts["pruned"] == 2

    client = MlflowClient()
    children = client.search_runs(
        [client.get_experiment_by_name("stock_forecasting").experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{first.parent_run_id}'",
    )
    assert len(children) == 2
    child = children[0]
    assert child.data.params["features.window"] == "10"
    assert child.data.params["model.variant"] in ("lstm", "gru")
    assert {"val_mase", "test_rmse", "test_u2", "test_naive_rmse", "test_arima_rmse"} <= set(child.data.metrics)
    assert child.data.tags["optuna.trial"] in ("0", "1")
    assert len(client.get_metric_history(child.info.run_id, "val_loss")) >= 1
    parent = client.get_run(first.parent_run_id)
    assert parent.data.tags["best.model.variant"] == first.best_trial.params["model.variant"]
    assert "best_test_rmse" in parent.data.metrics
    artifacts = {a.path for a in client.list_artifacts(first.parent_run_id, "optuna")}
    assert "optuna/optimization_history.png" in artifacts
    assert parent.data.tags["mlflow.runName"] == "tune-s1"

    # The champion alias points at the registered version, whose tags name the study and trial.
    version = client.get_model_version_by_alias("stock_forecasting", "champion")
    assert version.tags["study"] == "s1"
    assert int(version.tags["trial"]) == first.best_trial.number
    assert math.isclose(
        float(version.tags["test_rmse"]), first.best_trial.user_attrs["metrics"]["test_rmse"], rel_tol=1e-5
    )

    # Served model: raw OHLCV rows in, prices out, near the last close.
    model = mlflow.pyfunc.load_model("models:/stock_forecasting@champion")
    rows = pd.read_csv(prices_csv).rename(columns=str.lower).tail(11)
    answer = model.predict(rows[["open", "high", "low", "close", "volume"]].astype(float))
    assert list(answer.columns[:3]) == ["step_1", "step_2", "step_3"]
    assert list(answer.columns[3:7]) == ["step_1_lower_80", "step_1_upper_80", "step_1_lower_95", "step_1_upper_95"]
    assert answer.shape == (1, 3 + 3 * 4)
    forecast = answer[["step_1", "step_2", "step_3"]]
    last_close = rows["close"].iloc[-1]
    assert np.all(np.abs(forecast.to_numpy() / last_close - 1) < 0.2)
    # The model carries a real request: the last window + 1 rows of the prices, one forecast.
    request, answer = serve_logged_example("models:/stock_forecasting@champion")
    np.testing.assert_allclose(request["close"], rows["close"])
    assert answer.shape == (1, 16) and answer["date"].iloc[0] == rows["date"].iloc[-1]
    np.testing.assert_allclose(answer[["step_1", "step_2", "step_3"]], forecast, rtol=1e-6)

    # Resume: the same study keeps its two trials and parent run, and runs just one more.
    second = workflows.tune("stock_forecasting", 3, overrides=overrides, study="s1", storage=storage)
    assert second.parent_run_id == first.parent_run_id
    study = optuna.load_study(
        study_name="s1", storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(storage))
    )
    assert len(study.trials) == 3

    # predict CLI writes one forecast per window of the input file.
    output = tmp_path / "forecast.csv"
    assert (
        cli_main(
            [
                "predict",
                "--model",
                "models:/stock_forecasting@champion",
                "--input",
                str(prices_csv),
                "--output",
                str(output),
            ]
        )
        == 0
    )
    written = pd.read_csv(output)
    assert len(written) == 300 - 10 and written["date"].iloc[-1] == pd.read_csv(prices_csv)["Date"].iloc[-1]


@pytest.mark.slow
def test_a_maximised_objective_is_refused_before_anything_is_stored(prices_csv, tmp_path):
    with pytest.raises(ConfigError, match=r"search.direction: stock_forecasting tunes val_mase, which is minimised"):
        workflows.tune(
            "stock_forecasting",
            2,
            overrides=[*TINY, "search.direction=maximize", f"data.path={prices_csv}"],
            storage=str(tmp_path / "j.log"),
        )
    assert not (tmp_path / "j.log").exists(), "no study was created"


def test_failing_trial_is_recorded_and_study_goes_on(prices_csv, tmp_path):
    # stacked_lstm needs num_layers >= 2: with num_layers=1 that trial raises a ValueError.
    space = [
        "search.space={model.variant: {type: categorical, choices: [stacked_lstm, lstm]}}",
        "model.num_layers=1",
    ]
    result = workflows.tune(
        "stock_forecasting",
        3,
        overrides=[*TINY, *space, f"data.path={prices_csv}"],
        study="f",
        storage=str(tmp_path / "j.log"),
    )
    assert result.counts["fail"] >= 1 and result.counts["complete"] >= 1
    client = MlflowClient()
    runs = client.search_runs(
        [client.get_experiment_by_name("stock_forecasting").experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{result.parent_run_id}'",
    )
    failed = [run for run in runs if run.info.status == "FAILED"]
    assert failed and "stacked_lstm needs at least 2 layers" in failed[0].data.tags["error"]
    assert all(run.info.status != "RUNNING" for run in runs)


@pytest.mark.slow
def test_diverging_trial_fails_alone(prices_csv, tmp_path):
    # A learning rate of 1e30 blows the weights up after one step: the loss turns NaN or inf.
    space = ["search.space={train.learning_rate: {type: categorical, choices: [1.0e+30, 0.001]}}"]
    result = workflows.tune(
        "stock_forecasting",
        3,
        overrides=[*TINY, *space, f"data.path={prices_csv}"],
        study="nan",
        storage=str(tmp_path / "j.log"),
    )
    study = optuna.load_study(
        study_name="nan",
        storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "j.log"))),
    )
    diverged = [t for t in study.trials if t.params["train.learning_rate"] > 1]
    healthy = [t for t in study.trials if t.params["train.learning_rate"] < 1]
    assert diverged and all(t.state == optuna.trial.TrialState.FAIL for t in diverged)
    assert healthy and all(t.state == optuna.trial.TrialState.COMPLETE for t in healthy)
    assert result.counts["complete"] == 3
    run = MlflowClient().get_run(diverged[0].user_attrs["mlflow_run_id"])
    assert run.info.status == "FAILED" and "TrainingDiverged" in run.data.tags["error"]


def test_ensemble_run_trains_seeded_members_and_serves_their_mean(prices_csv):
    run = workflows.train("stock_forecasting", overrides=[*TINY, "train.ensemble_size=2", f"data.path={prices_csv}"])
    client = MlflowClient()
    metrics = client.get_run(run.run_id).data.metrics
    assert run.epochs == metrics["member_0/epochs"] + metrics["member_1/epochs"]
    assert len(client.get_metric_history(run.run_id, "member_1/val_loss")) == metrics["member_1/epochs"]

    served = mlflow.pyfunc.load_model(run.model_uri).unwrap_python_model()
    members = ensemble_members(served.keras_model)
    assert len(members) == 2
    x = served.sample_inputs
    outputs = [member.predict(x, verbose=0) for member in members]
    assert not np.allclose(outputs[0], outputs[1])  # seeds 42 and 43: two different networks
    np.testing.assert_allclose(served.keras_model.predict(x, verbose=0), np.mean(outputs, axis=0), rtol=1e-5)
    newest_first = pd.read_csv(prices_csv).tail(20).iloc[::-1]
    with pytest.raises(DataError, match=r"request row 1, column 'date': .* does not come after row 0's") as info:
        served.predict(None, newest_first)
    # MLflow's scoring server answers an MlflowException with its own message and status, any other with a generic one.
    assert isinstance(info.value, MlflowException) and info.value.get_http_status_code() == 400
    assert "request row 1, column 'date'" in info.value.message


# Runs in a fresh interpreter where `pipelines` and `lstm_models` can only be imported from a
# `code` folder on sys.path (where MLflow puts a model's `code_paths`), as where the project is not installed.
_LOAD_WITHOUT_THE_PROJECT = textwrap.dedent("""
    import importlib.machinery, os, sys
    import pandas as pd

    class OnlyModelCode:
        def find_spec(self, name, path=None, target=None):
            if name not in ("pipelines", "lstm_models"):
                return None
            folders = [entry for entry in sys.path if os.path.basename(entry) == "code"]
            spec = importlib.machinery.PathFinder.find_spec(name, folders)
            if spec is None:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return spec

    sys.meta_path.insert(0, OnlyModelCode())
    import mlflow
    model = mlflow.pyfunc.load_model(sys.argv[1])
    import pipelines
    print(pipelines.__file__)
    print(model.predict(pd.read_csv(sys.argv[2])).to_json())
""")


@pytest.mark.slow
def test_a_logged_model_carries_the_project_code_and_serves_where_it_is_not_installed(prices_csv, tmp_path):
    run = workflows.train(
        "stock_forecasting", overrides=[*TINY, "model.variant=peephole_lstm", f"data.path={prices_csv}"]
    )
    rows = pd.read_csv(prices_csv).rename(columns=str.lower).tail(12)[["open", "high", "low", "close", "volume"]]
    rows.astype(float).to_csv(tmp_path / "request.csv", index=False)  # "1.0" in the file, read back as a float
    expected = mlflow.pyfunc.load_model(run.model_uri).predict(rows.astype(float))

    loaded = subprocess.run(
        [sys.executable, "-c", _LOAD_WITHOUT_THE_PROJECT, run.model_uri, str(tmp_path / "request.csv")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    imported_from, answer = loaded.stdout.strip().splitlines()[-2:]
    assert imported_from.endswith("/code/pipelines/__init__.py")
    # Logged from code: nothing in the model is unpickled when it loads.
    assert not list(Path(mlflow.artifacts.download_artifacts(run.model_uri)).rglob("*.pkl"))
    pd.testing.assert_frame_equal(pd.read_json(io.StringIO(answer)), expected, check_dtype=False)
