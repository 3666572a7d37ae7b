"""A real MLflow tracking server over HTTP, a real scoring server, and multi-device training."""

import json
import os
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from pipelines import workflows
from tests.scaleout.conftest import SPACE, TINY, free_port, wait_for

BIN = str(Path(sys.executable).parent)


def _healthy(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _server(command, tmp_path, name):
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    log = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115 (closed when the process ends)
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)


def _post(url, payload):
    request = urllib.request.Request(url, json.dumps(payload).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.slow
def test_tune_and_register_against_a_tracking_server(prices_csv, tmp_path, monkeypatch):
    port = free_port()
    server = _server(
        [
            f"{BIN}/mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination",
            str(tmp_path / "server-artifacts"),
        ],
        tmp_path,
        "tracking-server",
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _healthy(f"{url}/health"), 120, what="the tracking server")
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        result = workflows.tune(
            "stock_forecasting",
            2,
            overrides=[*TINY, SPACE, f"data.path={prices_csv}", "train.epochs=2"],
            study="http",
            storage=str(tmp_path / "j.log"),
            register=True,
            force=True,  # two epochs on a random walk need not pass the promotion gate
        )
        client = MlflowClient(tracking_uri=url)
        version = client.get_model_version_by_alias("stock_forecasting", "champion")
        assert version.tags["study"] == "http"
        children = client.search_runs(
            [client.get_experiment_by_name("stock_forecasting").experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{result.parent_run_id}'",
        )
        assert len(children) == 2
        assert any((tmp_path / "server-artifacts").rglob("model.keras")), "artifacts went through the server"
        model = mlflow.pyfunc.load_model("models:/stock_forecasting@champion")
        rows = pd.read_csv(prices_csv).rename(columns=str.lower).tail(11)[["open", "high", "low", "close", "volume"]]
        # Three steps, each a forecast and its 80 % and 95 % bounds.
        assert model.predict(rows.astype(float)).shape == (1, 15)
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_scoring_server_answers_bad_requests_with_4xx_and_keeps_serving(prices_csv, tmp_path):
    result = workflows.train("stock_forecasting", overrides=[*TINY, f"data.path={prices_csv}", "train.epochs=1"])
    port = free_port()
    server = _server(
        [
            f"{BIN}/mlflow",
            "models",
            "serve",
            "-m",
            result.model_uri,
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        tmp_path,
        "scoring-server",
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _healthy(f"{url}/ping"), 180, what="the scoring server")
        rows = pd.read_csv(prices_csv).rename(columns=str.lower).tail(12)[["open", "high", "low", "close", "volume"]]
        good = {"dataframe_split": rows.astype(float).to_dict(orient="split", index=False)}
        bad_requests = [
            {"dataframe_split": {"columns": ["open"], "data": [[1.0]]}},  # missing columns
            {"dataframe_split": {"columns": list(rows.columns), "data": [[1, 1, 1, 1, 1]]}},  # too few rows
            {"dataframe_split": {"columns": list(rows.columns), "data": [["a", "b", "c", "d", "e"]] * 12}},
            {"no_such_format": []},
        ]
        for payload in bad_requests:
            status, body = _post(f"{url}/invocations", payload)
            assert 400 <= status < 500, (payload, status, body)
            assert body.get("message"), body
        dates = pd.read_csv(prices_csv).rename(columns=str.lower)["date"].tail(12)
        newest_first = rows.astype(float).assign(date=dates).iloc[::-1].to_dict(orient="split", index=False)
        status, body = _post(f"{url}/invocations", {"dataframe_split": newest_first})
        assert status == 400 and "request row 1, column 'date'" in body["message"], body.get("message")
        status, body = _post(f"{url}/invocations", good)
        assert status == 200 and len(body["predictions"]) == 2
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_mirrored_strategy_trains_on_two_logical_cpus(tmp_path):
    script = textwrap.dedent(
        """
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import numpy as np
        from pipelines.config import ModelConfig, TrainConfig
        from pipelines.training import build_and_compile, distribution_scope

        class Config:
            model = ModelConfig(variant="peephole_lstm", units=8)
            train = TrainConfig(strategy="mirrored", learning_rate=0.01)

        with distribution_scope(Config):
            model = build_and_compile(Config, (6, 2), "regression", 1, "mse")
        strategy = model.distribute_strategy
        x = np.random.default_rng(0).normal(size=(256, 6, 2)).astype("float32")
        y = x[:, :, :1].mean(axis=1)
        history = model.fit(x, y, batch_size=32, epochs=4, verbose=0)
        print("REPLICAS", strategy.num_replicas_in_sync)
        print("LOSS", history.history["loss"][0], history.history["loss"][-1])
        """
    )
    completed = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in completed.stdout.splitlines() if line.startswith(("REPLICAS", "LOSS")))
    assert lines["REPLICAS"] == "2"
    first, last = map(float, lines["LOSS"].split())
    assert last < first
