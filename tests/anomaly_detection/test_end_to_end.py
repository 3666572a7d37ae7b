"""End to end on the anomaly task: tune -> register -> load @champion -> score a window; predict CLI."""

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from pipelines import workflows
from pipelines.cli import main as cli_main
from pipelines.training import ensemble_members
from tests.anomaly_detection.conftest import TINY_DATA
from tests.helpers import serve_logged_example

TINY = [
    *TINY_DATA,
    "data.series=[spikes]",
    "detection.cooldown=5",
    "model.prediction_steps=3",
    "train.epochs=2",
    "train.verbose=0",
    "model.units=4",
    "search.space={model.variant: {type: categorical, choices: [lstm, gru]}, "
    "features.window: {type: categorical, choices: [6, 8]}}",
]


@pytest.mark.slow
def test_tune_register_and_serve_the_champion(nab_root, tmp_path):
    overrides = [*TINY, f"data.path={nab_root}"]
    result = workflows.tune(
        "anomaly_detection", 2, overrides=overrides, study="ad", storage=str(tmp_path / "j.log"), register=True
    )
    assert result.counts["complete"] + result.counts["pruned"] == 2

    client = MlflowClient()
    experiment = client.get_experiment_by_name("anomaly_detection").experiment_id
    children = client.search_runs([experiment], filter_string=f"tags.mlflow.parentRunId = '{result.parent_run_id}'")
    child = next(run for run in children if run.info.status == "FINISHED")
    expected = {"val_mse", "test_alert_nab_standard", "test_random_alert_nab_standard", "test_row_f1"}
    assert expected <= set(child.data.metrics)
    artifacts = {a.path for a in client.list_artifacts(child.info.run_id, "tables/nab_results/synthetic")}
    assert any(path.endswith("_spikes.csv") for path in artifacts)
    assert client.list_artifacts(child.info.run_id, "plots")
    version = client.get_model_version_by_alias("anomaly_detection", "champion")
    assert version.tags["study"] == "ad" and "test_alert_nab_standard" in version.tags

    # The champion takes raw values of a window and answers scores and flags.
    model = mlflow.pyfunc.load_model("models:/anomaly_detection@champion")
    window = int(result.best_trial.params["features.window"])
    first = window + 3 - 1  # the first row with a score: three forecasts of it are needed
    rows = pd.read_csv(nab_root / "data" / "synthetic" / "spikes.csv").tail(first + 20)
    out = model.predict(rows)
    assert list(out.columns) == ["timestamp", "score", "anomaly_score", "is_anomaly", "alert", "calibration"]
    assert len(out) == 20 and out["timestamp"].iloc[-1] == rows["timestamp"].iloc[-1]
    assert np.isfinite(out["score"]).all() and out["anomaly_score"].between(0, 1).all()
    assert set(out["is_anomaly"]) <= {0, 1} and set(out["alert"]) <= {0, 1}
    assert model.metadata.signature.inputs.input_names() == ["timestamp", "series", "value"]
    # The model carries a real request: the series' last rows, enough for ten scored rows.
    request, answer = serve_logged_example("models:/anomaly_detection@champion")
    np.testing.assert_allclose(request["value"], rows["value"].tail(len(request)))
    assert len(answer) == 10 and answer["timestamp"].iloc[-1] == rows["timestamp"].iloc[-1]
    np.testing.assert_allclose(answer["score"], out["score"].tail(10), rtol=1e-6)
    # conf/anomaly_detection.yaml scores with a seed ensemble of three networks.
    assert len(ensemble_members(model.unwrap_python_model().keras_model)) == 3

    # predict CLI: a semicolon CSV with an extra column in, one row per scored row out.
    output = tmp_path / "scores.csv"
    source = tmp_path / "spikes.csv"
    pd.read_csv(nab_root / "data" / "synthetic" / "spikes.csv").assign(note="x").to_csv(source, sep=";", index=False)
    assert cli_main(["predict", "--model", "models:/anomaly_detection@champion", "--input", str(source),
                     "--output", str(output)]) == 0  # fmt: skip
    written = pd.read_csv(output)
    assert len(written) == 400 - first and set(written["calibration"]) == {"synthetic/spikes.csv"}
    # A folder as the user has it: one result file per input, same layout; a series the model never saw
    # warms up on its first rows (--warmup sets how many).
    outputs = tmp_path / "scores"
    argv = ["predict", "--model", "models:/anomaly_detection@champion", "--input", str(nab_root / "data")]
    assert cli_main([*argv, "--output", str(outputs), "--warmup", "100"]) == 0
    drift = pd.read_csv(outputs / "synthetic" / "drift.csv")
    assert len(drift) == 400 - first and set(drift["calibration"]) == {"warm-up: first 100 rows"}
    assert not drift["alert"].iloc[: 100 - first].any()
    assert set(pd.read_csv(outputs / "synthetic" / "spikes.csv")["calibration"]) == {"synthetic/spikes.csv"}
