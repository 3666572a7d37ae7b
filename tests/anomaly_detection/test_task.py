"""The task on the engine's interface: config checks, leak-free preparation, evaluation, serving."""

import dataclasses
import json
import logging
import warnings

import mlflow
import numpy as np
import pandas as pd
import pytest

from pipelines import training
from pipelines.anomaly_detection.data import AnomalySource, load_nab, prefix_rows
from pipelines.anomaly_detection.evaluation import LABEL_METRICS, report
from pipelines.anomaly_detection.nab_scoring import PROFILES, optimised_score, read_results_files
from pipelines.anomaly_detection.synthetic import KINDS
from pipelines.anomaly_detection.task import MOVED_KEYS, TASK
from pipelines.config import load_config
from pipelines.errors import ConfigError, DataError
from tests.anomaly_detection.conftest import TINY_DATA, sensor_frame

TINY_MODEL = ["model.units=4", "train.epochs=1", "train.verbose=0", "train.batch_size=32"]


def config_for(root, *overrides):
    return load_config(TASK.config_class, None, [f"data.path={root}", *TINY_DATA, *TINY_MODEL, *overrides])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.detector=isolation", r"model.detector: expected one of prediction, reconstruction"),
        ("model.prediction_steps=0", r"model.prediction_steps: expected a positive integer"),
        ("model.units=0", r"model.units: expected a positive integer"),
        ("data.format=xml", r"data.format: expected one of nab, csv"),
        ("data.separator=|", r"data.separator: expected one of"),
        ("features.window=1", r"features.window: expected an integer >= 2"),
        ("detection.threshold_quantile=0.2", r"detection.threshold_quantile: expected a value in \[0.5, 1\]"),
        ("detection.scoring=fancy", r"detection.scoring: expected one of likelihood, raw"),
        ("data.val_fraction=1.5", r"data.val_fraction: expected a fraction"),
        ("detection.cooldown=-1", r"detection.cooldown: expected an integer >= 0"),
        ("data.format=csv", r"data.path: format csv needs a CSV file or folder"),
        ("data.windw=3", r"data.windw: unknown key"),
    ],
)
def test_bad_config_names_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(TASK.config_class, None, [override])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.cooldown=5", r"^data.cooldown: moved to detection.cooldown \(given by --set 'data.cooldown=5'\)$"),
        ("data.window=8", r"^data.window: moved to features.window"),
        ("data.detector=prediction", r"^data.detector: moved to model.detector"),
        ("data.prediction_steps=2", r"^data.prediction_steps: moved to model.prediction_steps"),
        ("search.space={data.window: {type: int, low: 4, high: 8}}", r"^search.space.data.window: moved to features"),
    ],
)
def test_an_old_key_names_its_new_place(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(TASK.config_class, None, [override])


def test_every_old_data_key_is_mapped_to_a_key_of_the_config():
    config = load_config(TASK.config_class, None, [])
    old_data_keys = {"window", "detector", "prediction_steps", "scoring", "likelihood_history", "likelihood_average",
                     "likelihood_threshold", "record_history", "value_gaussian", "seasonal_days",
                     "threshold_quantile", "spatial_tolerance", "cooldown"}  # fmt: skip
    assert set(MOVED_KEYS) == {f"data.{key}" for key in old_data_keys}
    for new in MOVED_KEYS.values():
        group, key = new.split(".")
        assert hasattr(getattr(config, group), key), new
        assert not hasattr(config.data, key), new


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["search.space={model.prediction_steps: {type: int, low: 1, high: 3}}"],
            r"search.space.model.prediction_steps: trials that differ",
        ),
        (
            ["search.space={model.detector: {type: categorical, choices: [prediction]}}"],
            r"search.space.model.detector: trials that differ",
        ),
        (
            ["search.space={data.val_fraction: {type: float, low: 0.2, high: 0.4}}"],
            r"search.space.data.val_fraction: trials that differ .* searchable keys outside model and train: "
            r"features.window",
        ),
        (
            ["search.space={detection.cooldown: {type: int, low: 5, high: 50}}"],
            r"search.space.detection.cooldown: the detection settings do not change val_mse",
        ),
        (
            ["model.detector=reconstruction", "search.space={features.window: {type: categorical, choices: [8, 12]}}"],
            r"search.space.features.window: with the reconstruction detector",
        ),
    ],
)
def test_search_space_keeps_the_objective_comparable(nab_root, overrides, message):
    with pytest.raises(ConfigError, match=message):
        TASK.load_source(config_for(nab_root, *overrides))
    ok = config_for(nab_root, "search.space={features.window: {type: categorical, choices: [8, 12]}}")
    assert len(TASK.load_source(ok).series) == 5


def test_prefix_is_nabs_probationary_period_cut_before_the_first_window():
    assert prefix_rows(4000, [], 0.15, 750) == 600
    assert prefix_rows(22000, [(9000, 9100)], 0.15, 750) == 750
    assert prefix_rows(4000, [(400, 500)], 0.15, 750) == 400


def test_later_rows_never_reach_training_or_the_scaler(nab_root):
    config = config_for(nab_root)
    source = TASK.load_source(config)
    data = TASK.prepare(config, source)
    assert data.input_shape == (8, 1) and data.output_dim == 3  # 3 prediction steps by default
    assert data.x_train.shape[1:] == (8, 1) and data.y_train.shape[1] == 3
    first = data.parts[0]
    assert first.n_train < first.n_prefix < len(first.series)
    # Rewrite everything from the validation rows on: training samples and the scaler stay the same.
    for part in source.series:
        n_train = next(p.n_train for p in data.parts if p.series is part)
        part.values[n_train:] = np.random.default_rng(0).uniform(-50, 50, part.values[n_train:].shape)
    again = TASK.prepare(config, source)
    np.testing.assert_array_equal(again.x_train, data.x_train)
    np.testing.assert_array_equal(again.y_train, data.y_train)
    np.testing.assert_array_equal(again.parts[0].scaler.mean_, first.scaler.mean_)
    assert not np.array_equal(again.x_val, data.x_val)


def test_too_short_prefix_names_the_series(nab_root):
    config = config_for(nab_root, "features.window=80")
    with pytest.raises(DataError, match=r"series synthetic/.*normal prefix has .* rows.*window=80"):
        TASK.prepare(config, TASK.load_source(config))


def _fit(config):
    source = TASK.load_source(config)
    data = TASK.prepare(config, source)
    model = TASK.build_model(config, data)
    training.fit(model, data, config)
    return source, data, model


@pytest.mark.parametrize("detector", ["prediction", "reconstruction"])
def test_evaluation_reports_nab_baselines_tables_and_plots(nab_root, detector):
    config = config_for(nab_root, f"model.detector={detector}", "model.prediction_steps=2", "detection.cooldown=10")
    source, data, model = _fit(config)
    evaluation = TASK.evaluate(model, data, config)
    metrics = evaluation.metrics
    for name in (*LABEL_METRICS, "row_rate", "alert_rate"):
        assert {f"test_{name}", f"test_random_{name}", f"test_always_{name}"} <= set(metrics), name
    assert set(metrics) >= {"val_mse", "val_alarm_rate"} and np.isfinite(metrics["val_mse"])
    assert metrics["test_always_row_recall"] == 1.0 and metrics["test_always_alert_nab_standard"] < -100
    assert metrics["test_always_row_range_recall"] == 1.0
    assert evaluation.headline["metric"] == "test_alert_nab_standard"
    assert "random: " in evaluation.headline["baseline"]
    assert len(evaluation.figures) == 5
    per_series = evaluation.tables["per_series"]
    assert len(per_series) == 5 and per_series[["row_threshold", "alert_threshold"]].notna().all().all()
    name = f"nab_results/synthetic/lstm{detector.capitalize()}_spikes"
    results = evaluation.tables[name]
    assert list(results.columns) == ["timestamp", "value", "anomaly_score", "label"]
    spikes = next(s for s in source.series if s.name.endswith("spikes.csv"))
    assert len(results) == len(spikes) and results["label"].sum() == spikes.labels.sum()
    outcome = next(o for o in data.outcomes if o.series is spikes)
    # The results file carries the alerts as 1.0 and nothing else, so any NAB threshold in (0, 1] counts them.
    assert set(results["anomaly_score"]) <= {0.0, 1.0}
    np.testing.assert_array_equal(results["anomaly_score"] == 1.0, outcome.detection.alert)
    flagged = np.concatenate([o.detection.is_anomaly[o.scored_from :] for o in data.outcomes])
    assert metrics["test_row_rate"] == pytest.approx(flagged.mean())


def test_series_without_labels_count_only_in_the_alarm_rate(nab_root):
    """A series missing from the labels file: its alerts are neither right nor wrong."""
    config = config_for(nab_root, "detection.cooldown=10")
    _, data, model = _fit(config)
    TASK.evaluate(model, data, config)
    outcomes = data.outcomes
    unlabelled = dataclasses.replace(outcomes[0].series, windows=[], labelled=False)
    mixed = [dataclasses.replace(outcomes[0], series=unlabelled), *outcomes[1:]]
    assert outcomes[0].detection.alert[outcomes[0].scored_from :].any()  # alerts that would count as false

    with_it, without_it = report(mixed, "rule", 0, "lstm"), report(outcomes[1:], "rule", 0, "lstm")
    for name in LABEL_METRICS:
        assert with_it.metrics[f"test_{name}"] == without_it.metrics[f"test_{name}"], name
    flags = np.concatenate([o.detection.alert[o.scored_from :] for o in outcomes])
    assert with_it.metrics["test_alert_rate"] == pytest.approx(flags.mean())
    row = with_it.tables["per_series"].iloc[0]
    assert not row["labelled"] and np.isnan(row["row_f1"]) and np.isnan(row["false_positives"]) and row["alerts"] > 0
    assert "(1 without labels: in the flag rates only)" in with_it.summary

    nothing = report([dataclasses.replace(o, series=unlabelled) for o in outcomes[:1]], "rule", 0, "lstm")
    assert all(np.isnan(nothing.metrics[f"test_{name}"]) for name in LABEL_METRICS)
    assert nothing.metrics["test_alert_rate"] > 0


def test_served_model_scores_a_series_like_the_evaluation(nab_root, tmp_path):
    config = config_for(nab_root, "data.series=[spikes]", "detection.cooldown=5")
    source, data, model = _fit(config)
    TASK.evaluate(model, data, config)
    bundle = TASK.serving_bundle(model, data, tmp_path)
    mlflow.pyfunc.save_model(
        tmp_path / "served", python_model=bundle.python_model, artifacts=bundle.artifacts,
        signature=bundle.signature, input_example=bundle.input_example,
    )  # fmt: skip
    served = mlflow.pyfunc.load_model(str(tmp_path / "served"))
    series = source.series[0]
    rows = pd.DataFrame({"timestamp": series.timestamps.strftime("%Y-%m-%d %H:%M:%S"), "value": series.values[:, 0]})
    out = served.predict(rows)
    first = data.outcomes[0].detector.first_row
    assert list(out.columns) == ["timestamp", "score", "anomaly_score", "is_anomaly", "alert", "calibration"]
    assert len(out) == len(rows) - first and out["timestamp"].iloc[0] == rows["timestamp"].iloc[first]
    detection = data.outcomes[0].detection
    np.testing.assert_allclose(out["score"], detection.score[first:], rtol=1e-5)
    np.testing.assert_array_equal(out["alert"], detection.alert[first:].astype(int))
    # The row decision compares with the prefix only: from the first test row on it is the evaluation's.
    n_prefix = data.outcomes[0].n_prefix
    np.testing.assert_array_equal(out["is_anomaly"][n_prefix - first :], detection.is_anomaly[n_prefix:].astype(int))
    assert set(out["calibration"]) == {"synthetic/spikes.csv"}
    # Integer values in a value column are accepted (MLflow's "double" refused int64).
    as_int = served.predict(rows.assign(value=np.round(rows["value"] * 1000).astype(np.int64)))
    assert len(as_int) == len(out) and np.isfinite(as_int["score"]).all()
    with pytest.raises(Exception, match="needs at least|scores from row"):
        served.predict(rows.head(first))


def test_served_model_of_several_series_knows_them_by_file_name_and_warms_up_on_others(nab_root, tmp_path):
    config = config_for(nab_root, "data.series=[spikes, drift]")
    source, data, model = _fit(config)
    TASK.evaluate(model, data, config)
    bundle = TASK.serving_bundle(model, data, tmp_path)
    served = bundle.python_model
    served.load_context(type("Context", (), {"artifacts": bundle.artifacts})())
    drift = next(s for s in source.series if s.name.endswith("drift.csv"))
    rows = pd.DataFrame({"value": drift.values[:, 0]})
    first = 8 + 3 - 1
    # A known series, by its name or its file name alone: the model's own calibration of it.
    for name in ("synthetic/drift.csv", "drift.csv"):
        out = served.predict(None, rows.assign(series=name))
        assert len(out) == 400 - first and set(out["calibration"]) == {"synthetic/drift.csv"}
        outcome = next(o for o in data.outcomes if o.series is drift)
        np.testing.assert_array_equal(
            out["is_anomaly"][outcome.n_prefix - first :], outcome.detection.is_anomaly[outcome.n_prefix :]
        )
    # A series it never saw (or no name, with several series): calibrated on its first rows.
    default = served.predict(None, rows)
    assert set(default["calibration"]) == {"warm-up: first 60 rows"}  # NAB's probationary 15% of 400
    assert not default["is_anomaly"].iloc[: 60 - first].any() and not default["alert"].iloc[: 60 - first].any()
    longer = served.predict(None, rows.assign(series="elsewhere/new.csv"), params={"warmup": 120})
    assert set(longer["calibration"]) == {"warm-up: first 120 rows"}
    assert not longer["alert"].iloc[: 120 - first].any()
    with pytest.raises(DataError, match=r"warm-up of new.csv: its normal prefix has 20 of 40 rows.*--warmup N"):
        served.predict(None, rows.head(40).assign(series="new.csv"), params={"warmup": 20})
    with pytest.raises(DataError, match="request row 3, column 'series': missing"):
        served.predict(None, rows.head(40).assign(series=["synthetic/drift.csv"] * 3 + [None] * 37))
    # With several series, the request logged with the model names its series.
    assert bundle.input_example["series"].unique().tolist() == [data.parts[0].series.name]
    assert len(served.predict(None, bundle.input_example)) == 10


def test_warm_up_scores_an_unseen_series_as_training_scores_a_series_of_its_own(nab_root, tmp_path):
    """The warm-up calibrates on the first rows exactly as evaluation calibrates on the normal prefix."""
    config = config_for(nab_root, "data.series=[spikes]", "data.train_max_rows=null")
    source, data, model = _fit(config)
    TASK.evaluate(model, data, config)
    bundle = TASK.serving_bundle(model, data, tmp_path)
    served = bundle.python_model
    served.load_context(type("Context", (), {"artifacts": bundle.artifacts})())
    series, outcome = source.series[0], data.outcomes[0]
    stamps = series.timestamps.strftime("%Y-%m-%d %H:%M:%S")
    request = pd.DataFrame({"timestamp": stamps, "series": "other.csv", "value": series.values[:, 0]})
    out = served.predict(None, request, params={"warmup": outcome.n_prefix})
    first = outcome.detector.first_row
    np.testing.assert_allclose(out["score"], outcome.detection.score[first:], rtol=1e-5)
    np.testing.assert_array_equal(out["alert"], outcome.detection.alert[first:].astype(int))
    np.testing.assert_array_equal(out["is_anomaly"], outcome.detection.is_anomaly[first:].astype(int))


def test_sensor_csv_end_to_end_without_mlflow(tmp_path):
    path = tmp_path / "plant.csv"
    sensor_frame(400).to_csv(path, index=False, sep=";")
    config = load_config(
        TASK.config_class, None,
        [f"data.path={path}", "data.format=csv", "data.separator=;", "data.timestamp_column=time",
         "data.label_column=anomaly", *TINY_DATA, *TINY_MODEL],
    )  # fmt: skip
    source, data, model = _fit(config)
    assert data.input_shape == (8, 2) and data.value_columns == ("temp", "pressure")
    evaluation = TASK.evaluate(model, data, config)
    assert "nab_results/lstmPrediction_plant" in evaluation.tables
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        logged = TASK.dataset_for_logging(config, source)
        assert logged.schema.input_names() == ["series", "timestamp", "temp", "pressure", "label"]
    assert not [str(warning.message) for warning in caught if "integer column" in str(warning.message)]
    bundle = TASK.serving_bundle(model, data, tmp_path)
    served = bundle.python_model
    served.load_context(type("Context", (), {"artifacts": bundle.artifacts})())
    # The request logged with the model: the series' last rows, ten of them scored.
    assert list(bundle.input_example.columns) == ["time", "temp", "pressure"]
    request = bundle.input_example
    np.testing.assert_array_equal(request["temp"], source.series[0].values[-len(request) :, 0])
    assert len(served.predict(None, request)) == 10
    inputs = TASK.read_inputs(path, served)
    assert list(inputs.columns) == ["time", "series", "temp", "pressure"] and set(inputs["series"]) == {"plant.csv"}
    assert inputs["temp"].dtype == np.float64 and len(inputs) == 400
    detector = next(iter(served.detectors.values()))
    assert len(served.predict(None, inputs)) == 400 - detector.first_row
    with pytest.raises(DataError, match=r"request row 3, column 'time': .* does not come after row 2's"):
        served.predict(None, inputs.iloc[[0, 1, 2, 2, 3]])
    with pytest.raises(DataError, match=r"request row 1, column 'time': cannot parse 'soon' as a time"):
        served.predict(None, inputs.iloc[:3].assign(time=["2024-01-01 00:00", "soon", "2024-01-01 02:00"]))

    # predict's input is checked as training data is, naming the file and line
    lines = path.read_text().splitlines()
    bad = tmp_path / "bad.csv"
    for body, message in (
        ([lines[0], lines[1], lines[3], lines[2], *lines[4:9]], r"bad.csv, line 4, column 'time': .* comes before"),
        ([lines[0], *lines[1:4], lines[4].replace(lines[4].split(";")[1], "n/a?"), *lines[5:9]], r"line 5"),
        ([lines[0].replace("temp", "tmp"), *lines[1:9]], r"bad.csv, line 1: missing column\(s\) \['temp'\]"),
    ):
        bad.write_text("\n".join(body) + "\n")
        with pytest.raises(DataError, match=message):
            TASK.read_inputs(bad, served)
    bad.write_bytes(("\n".join(lines[:9]) + "\n").encode() + b"2024-13-01 00:00;\xff;1\n")
    with pytest.raises(DataError, match=r"bad.csv: cannot be read as CSV: 'utf-8' codec can't decode"):
        TASK.read_inputs(bad, served)
    repeated = "\n".join([lines[0], *lines[1:31], lines[30], *lines[31:60]]) + "\n"
    bad.write_text(repeated)
    assert len(TASK.read_inputs(bad, served)) == 59  # the repeated timestamp dropped, as in training


def test_default_data_is_the_synthetic_set(tmp_path):
    config = load_config(TASK.config_class, None, [])
    source = TASK.load_source(config)
    assert "SYNTHETIC" in source.origin and len(source.series) == 5
    assert [s.name for s in source.series] == [s.name for s in load_nab(source.origin.split(", ", 1)[1])]
    assert isinstance(source, AnomalySource)


def test_nab_results_files_score_with_nabs_procedure_as_the_pipeline_scores(nab_root, tmp_path):
    """NAB-file/pipeline agreement: the written files, scored as NAB's run.py scores them (threshold
    optimisation included), give the pipeline's NAB scores, on a corpus with a repeated timestamp."""
    frame = pd.read_csv(nab_root / "data" / "synthetic" / "spikes.csv")
    repeated = pd.concat([frame.iloc[:200], frame.iloc[[199]], frame.iloc[200:]], ignore_index=True)
    repeated.to_csv(nab_root / "data" / "synthetic" / "spikes.csv", index=False)  # one row twice, as in NAB
    config = config_for(nab_root, "detection.cooldown=10", "detection.likelihood_threshold=2")
    source, data, model = _fit(config)
    evaluation = TASK.evaluate(model, data, config)
    spikes = next(o for o in data.outcomes if o.series.name.endswith("spikes.csv"))
    assert spikes.series.repairs == {"duplicate timestamps dropped": 1} and spikes.detection.alert.any()
    results = tmp_path / "results" / "lstmPrediction"
    for name, table in evaluation.tables.items():
        if name.startswith("nab_results/"):
            path = results / f"{name.removeprefix('nab_results/')}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            table.to_csv(path, index=False)
    files = read_results_files(results, nab_root, "lstmPrediction")
    assert len(files) == 5 and len(next(f for f in files if f.name.endswith("spikes.csv")).anomaly_score) == 401
    for profile_name, profile in PROFILES.items():
        score, threshold = optimised_score(files, profile)
        assert score == pytest.approx(evaluation.metrics[f"test_alert_nab_{profile_name}"], abs=1e-9)
        assert 0 < threshold <= 1


def test_a_series_whose_normal_prefix_is_too_short_is_skipped_and_counted(nab_root, caplog):
    frame = pd.read_csv(nab_root / "data" / "synthetic" / "spikes.csv")
    early = frame.assign(value=frame["value"])
    early.to_csv(nab_root / "data" / "synthetic" / "early.csv", index=False)
    labels_path = nab_root / "labels" / "combined_windows.json"
    labels = json.loads(labels_path.read_text())
    labels["synthetic/early.csv"] = [[frame["timestamp"][20], frame["timestamp"][30]]]  # an anomaly at row 20
    labels_path.write_text(json.dumps(labels))
    config = config_for(nab_root, "detection.cooldown=10")
    with caplog.at_level(logging.WARNING, logger="pipelines.anomaly_detection.task"):
        source, data, model = _fit(config)
    assert len(source.series) == 6 and len(data.parts) == 5 and data.skipped == ["synthetic/early.csv"]
    assert "skipped: series synthetic/early.csv: its normal prefix has 20 of 400 rows" in caplog.text
    evaluation = TASK.evaluate(model, data, config)
    assert "5 series; 1 skipped, their normal prefix too short: synthetic/early.csv" in evaluation.summary
    # A data error common to every series stops the run, naming the first.
    only = config_for(nab_root, "data.series=[early]")
    with pytest.raises(DataError, match=r"every series is too short .* synthetic/early.csv: its normal prefix"):
        TASK.prepare(only, TASK.load_source(only))


def test_predict_reads_a_folder_as_one_request_per_file_named_by_its_path(nab_root, tmp_path):
    config = config_for(nab_root, "data.series=[spikes]")
    _, data, model = _fit(config)
    (tmp_path / "model").mkdir()
    bundle = TASK.serving_bundle(model, data, tmp_path / "model")
    served = bundle.python_model
    served.load_context(type("Context", (), {"artifacts": bundle.artifacts})())
    requests = TASK.read_inputs(nab_root / "data", served)
    assert sorted(requests) == [f"synthetic/{kind}.csv" for kind in sorted(KINDS)]
    assert set(requests["synthetic/drift.csv"]["series"]) == {"synthetic/drift.csv"}
    assert set(served.predict(None, requests["synthetic/spikes.csv"])["calibration"]) == {"synthetic/spikes.csv"}
    assert served.predict(None, requests["synthetic/drift.csv"])["calibration"].iloc[0].startswith("warm-up")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: folder has no .csv files"):
        TASK.read_inputs(tmp_path / "empty", served)
    with pytest.raises(DataError, match="missing.csv: no such file or folder"):
        TASK.read_inputs(tmp_path / "missing.csv", served)
