"""The tuning engine without training: studies, sampler seeds, parent runs, storage errors."""

import logging
import threading
import warnings
from types import SimpleNamespace

import mlflow
import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from pipelines import runner, tracking, tuning, workflows
from pipelines.config import with_values
from pipelines.errors import ConfigError, DataError, PipelineError
from pipelines.tasks import get_task
from pipelines.workflows import load_task_config

# The tests ask for trials directly; Optuna warns that heartbeats are meant for `optimize`.
pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")


@pytest.fixture
def config():
    return load_task_config(get_task("stock_forecasting"))


@pytest.fixture
def experiment_id():
    """The task's experiment in this test's tracking store, made the active one as a tune does."""
    return tracking.setup("stock_forecasting")


def _first_params(study, config):
    return tuning.suggest(study.ask(), config.search.space)


def test_workers_opening_a_new_study_together_propose_different_parameters(config, tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    # Both open the study before either asks for a trial, as workers started together do.
    opened = [tuning.load_or_create_study("shared", tuning.open_storage(url), "minimize", config.seed) for _ in "ab"]
    assert [created for _, created in opened] == [True, False]
    first, second = (_first_params(study, config) for study, _ in opened)
    assert first != second


def test_a_new_study_proposes_the_same_parameters_for_the_same_seed(config, tmp_path):
    proposals = []
    for name in ("one", "two"):
        storage = tuning.open_storage(f"sqlite:///{tmp_path / name}.db")
        study, created = tuning.load_or_create_study(name, storage, "minimize", config.seed)
        assert created
        proposals.append(_first_params(study, config))
    assert proposals[0] == proposals[1]


@pytest.fixture
def instant_training(monkeypatch):
    """Trials that 'train' at once: every objective value is 1.0 and no model is logged."""

    def train_and_log(task, config, source, callbacks=()):
        evaluation = SimpleNamespace(metrics={task.objective: 1.0}, headline="")
        return SimpleNamespace(model_uri="", evaluation=evaluation)

    monkeypatch.setattr(runner, "train_and_log", train_and_log)


def _tune(config, storage, trials=0, **kwargs):  # trials=0: just the parent run and the summary
    return tuning.tune(get_task("stock_forecasting"), config, None, trials, study_name="s", storage=storage, **kwargs)


def _parent_id_in_study(storage):
    return optuna.load_study(study_name="s", storage=tuning.open_storage(storage)).user_attrs[tuning.PARENT_RUN_ATTR]


def test_opening_an_rdb_storage_with_heartbeats_warns_nothing(tmp_path):
    # Optuna 5 deprecates RetryFailedTrialCallback (removed in 6) and calls heartbeats experimental;
    # a user's every tune printed both.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        storage = tuning.open_storage(f"sqlite:///{tmp_path / 'optuna.db'}", max_retry=1)
    assert [str(w.message) for w in caught if w.category is not DeprecationWarning] == []
    assert isinstance(storage.heartbeat_stale_trial_callback.retry, optuna.storages.RetryHeartbeatStaleTrialCallback)


def test_the_study_summary_plots_without_optuna_warnings(experiment_id):
    study = optuna.create_study()
    units = optuna.distributions.IntDistribution(8, 64)
    for value, chosen in ((0.5, 8), (0.3, 32), (0.4, 64)):
        study.add_trial(optuna.create_trial(params={"units": chosen}, distributions={"units": units}, value=value))
    task = get_task("stock_forecasting")
    with mlflow.start_run() as run, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        counts, best = tuning._log_study_summary(study, task)
    assert [str(w.message) for w in caught if w.category is not DeprecationWarning] == []
    assert best.params == {"units": 32} and counts["complete"] == 3
    logged = {item.path for item in MlflowClient().list_artifacts(run.info.run_id, "optuna")}
    assert logged == {"optuna/optimization_history.png", "optuna/param_importances.png"}


@pytest.mark.parametrize("gone", ["deleted", "in another store"])
def test_resuming_a_study_whose_parent_run_is_gone_starts_a_new_parent(
    gone, config, experiment_id, instant_training, tmp_path, caplog
):
    storage = str(tmp_path / "journal.log")
    old = _tune(config, storage).parent_run_id
    if gone == "deleted":
        MlflowClient().delete_run(old)
    else:
        old = "0" * 32
        optuna.load_study(study_name="s", storage=tuning.open_storage(storage)).set_user_attr(
            tuning.PARENT_RUN_ATTR, old
        )

    with caplog.at_level(logging.WARNING, logger="pipelines.tuning"):
        resumed = _tune(config, storage, trials=1)
    assert resumed.parent_run_id != old
    assert f"parent run {old} of study s was not found" in caplog.text
    assert _parent_id_in_study(storage) == resumed.parent_run_id
    (trial,) = optuna.load_study(study_name="s", storage=tuning.open_storage(storage)).trials
    trial_run = MlflowClient().get_run(trial.user_attrs["mlflow_run_id"])
    assert trial_run.data.tags["mlflow.parentRunId"] == resumed.parent_run_id
    assert MlflowClient().get_run(resumed.parent_run_id).info.status == "FINISHED"


def test_a_parent_run_whose_setup_fails_is_closed_as_failed(config, experiment_id, tmp_path):
    def log_dataset():
        raise RuntimeError("dataset upload failed")

    storage = str(tmp_path / "journal.log")
    with pytest.raises(RuntimeError, match="dataset upload failed"):
        _tune(config, storage, on_parent=log_dataset)
    assert mlflow.active_run() is None
    assert MlflowClient().get_run(_parent_id_in_study(storage)).info.status == "FAILED"


def test_a_trial_run_gone_from_tracking_neither_stops_the_sweep_nor_the_summary(
    config, experiment_id, tmp_path, caplog
):
    storage = str(tmp_path / "journal.log")
    _tune(config, storage)
    study = optuna.load_study(study_name="s", storage=tuning.open_storage(storage))
    client = MlflowClient()
    left_running = client.create_run(experiment_id).info.run_id
    for run_id in ("f" * 32, left_running):  # a purged run, then one whose worker died before closing it
        trial = study.ask()
        trial.set_user_attr("mlflow_run_id", run_id)
        study.tell(trial, state=TrialState.FAIL)

    with caplog.at_level(logging.WARNING, logger="pipelines.tuning"):
        result = _tune(config, storage)
    assert f"MLflow run {'f' * 32} of trial 0" in caplog.text
    assert client.get_run(left_running).info.status == "FAILED"
    assert result.counts["fail"] == 2
    assert client.get_run(result.parent_run_id).data.metrics["trials_fail"] == 2


def test_a_trial_run_its_killed_worker_never_recorded_is_closed_by_the_sweep(config, experiment_id, tmp_path):
    # What a worker killed between creating its trial's run and recording the run id on the trial
    # leaves: a RUNNING run that only its tags tie to the trial, and the trial failed by Optuna's
    # stale-heartbeat check.
    storage = str(tmp_path / "journal.log")
    parent = _tune(config, storage).parent_run_id
    study = optuna.load_study(study_name="s", storage=tuning.open_storage(storage))
    trial = study.ask()
    tags = {"optuna.study": "s", "optuna.trial": str(trial.number), "mlflow.parentRunId": parent}
    client = MlflowClient()
    unrecorded = client.create_run(experiment_id, tags=tags).info.run_id
    other_study = client.create_run(experiment_id, tags={**tags, "optuna.study": "another"}).info.run_id
    study.tell(trial, state=TrialState.FAIL)

    _tune(config, storage)
    run = client.get_run(unrecorded)
    assert run.info.status == "FAILED" and "worker lost" in run.data.tags["error"]
    assert client.get_run(other_study).info.status == "RUNNING", "another study's runs are left alone"


def test_a_best_model_gone_from_tracking_neither_stops_the_summary_nor_gets_registered(
    config, experiment_id, monkeypatch, tmp_path, caplog
):
    gone = "models:/m-" + "0" * 32  # e.g. optuna.db kept while mlflow.db was deleted or switched

    def train_and_log(task, config, source, callbacks=()):
        return SimpleNamespace(model_uri=gone, evaluation=SimpleNamespace(metrics={task.objective: 1.0}, headline=""))

    monkeypatch.setattr(runner, "train_and_log", train_and_log)
    storage = str(tmp_path / "journal.log")
    with caplog.at_level(logging.WARNING, logger="pipelines.tuning"):
        result = _tune(config, storage, trials=1)
    assert f"best model {gone} of trial 0 is not in" in caplog.text
    assert MlflowClient().get_run(result.parent_run_id).info.status == "FINISHED"
    with pytest.raises(PipelineError, match=rf"best trial 0 of study 's' logged its model {gone} to another"):
        workflows.register_best(get_task("stock_forecasting"), config, "s", storage)
    assert MlflowClient().search_registered_models() == []


def test_resuming_with_a_contradicting_search_space_is_refused_before_any_trial(
    config, experiment_id, instant_training, tmp_path
):
    storage = str(tmp_path / "journal.log")
    _tune(config, storage, trials=1)
    changed = with_values(config, {"search.space.model.variant": {"type": "categorical", "choices": ["rnn", "gru"]}})
    with pytest.raises(ConfigError, match=r"^search.space.model.variant: study 's' drew its trials from Categorical"):
        _tune(changed, storage, trials=2)
    assert len(optuna.load_study(study_name="s", storage=tuning.open_storage(storage)).trials) == 1
    assert mlflow.active_run() is None


def test_a_storage_error_after_training_fails_that_trial_alone(
    config, experiment_id, instant_training, monkeypatch, tmp_path
):
    original = optuna.trial.Trial.set_user_attr
    failures = []

    def flaky(self, key, value):  # the storage fails once, after the first trial trained
        if key == "model_uri" and not failures:
            failures.append(key)
            raise RuntimeError("database is locked")
        return original(self, key, value)

    monkeypatch.setattr(optuna.trial.Trial, "set_user_attr", flaky)
    result = _tune(config, str(tmp_path / "journal.log"), trials=3)
    assert result.counts["fail"] == 1 and result.counts["complete"] == 3
    client = MlflowClient()
    trials = client.search_runs(
        [experiment_id], filter_string=f"tags.mlflow.parentRunId = '{result.parent_run_id}'", order_by=["start_time"]
    )
    assert [run.info.status for run in trials] == ["FAILED", "FINISHED", "FINISHED", "FINISHED"]
    assert "database is locked" in trials[0].data.tags["error"]
    assert client.get_run(result.parent_run_id).data.tags["best_trial"] in {"1", "2", "3"}
    assert mlflow.active_run() is None


def test_a_data_error_in_the_first_trial_stops_the_tune_with_it(config, experiment_id, monkeypatch, tmp_path):
    calls = []

    def train_and_log(task, config, source, callbacks=()):
        calls.append(config)
        raise DataError("series s: its normal prefix has 9 of 40 rows")

    monkeypatch.setattr(runner, "train_and_log", train_and_log)
    storage = str(tmp_path / "journal.log")
    with pytest.raises(DataError, match="series s: its normal prefix"):
        _tune(config, storage, trials=3)
    assert len(calls) == 1, "one trial, not every trial to the same failure"
    study = optuna.load_study(study_name="s", storage=tuning.open_storage(storage))
    assert [trial.state for trial in study.trials] == [TrialState.FAIL]
    runs = MlflowClient().search_runs([experiment_id])
    assert {run.info.status for run in runs} == {"FAILED"} and len(runs) == 2  # the trial's and the parent's
    assert mlflow.active_run() is None


def test_a_data_error_after_a_finished_trial_fails_that_trial_alone(config, experiment_id, monkeypatch, tmp_path):
    def train_and_log(task, config, source, callbacks=()):
        if len(calls) == 1:
            calls.append("failed")
            raise DataError("features.window too long for one series")
        calls.append("ok")
        return SimpleNamespace(model_uri="", evaluation=SimpleNamespace(metrics={task.objective: 1.0}, headline=""))

    calls = []
    monkeypatch.setattr(runner, "train_and_log", train_and_log)
    result = _tune(config, str(tmp_path / "journal.log"), trials=2)
    assert calls == ["ok", "failed", "ok"] and result.counts["fail"] == 1 and result.counts["complete"] == 2


def test_resuming_into_another_experiment_is_refused_naming_the_study_s_own(
    config, experiment_id, instant_training, tmp_path
):
    storage = str(tmp_path / "journal.log")
    parent = _tune(config, storage, trials=1).parent_run_id
    elsewhere = with_values(config, {"tracking.experiment": "prices"})
    tracking.setup("prices")
    with pytest.raises(ConfigError, match=r"^tracking.experiment: study 's' logs to experiment 'stock_forecasting'"):
        _tune(elsewhere, storage, trials=2)
    assert len(optuna.load_study(study_name="s", storage=tuning.open_storage(storage)).trials) == 1
    assert MlflowClient().get_run(parent).info.status == "FINISHED"
    assert mlflow.active_run() is None


def test_ctrl_c_while_waiting_for_the_parent_run_leaves_no_stray_run(config, experiment_id, monkeypatch, tmp_path):
    storage = str(tmp_path / "journal.log")
    optuna.create_study(study_name="s", storage=tuning.open_storage(storage))  # another worker created it

    def interrupted(seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr(tuning.time, "sleep", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _tune(config, storage, trials=1)
    assert MlflowClient().search_runs([experiment_id]) == []
    assert mlflow.active_run() is None


def test_resuming_with_other_data_or_training_settings_is_refused_before_any_trial(
    config, experiment_id, instant_training, tmp_path, caplog
):
    storage = str(tmp_path / "journal.log")
    _tune(with_values(config, {"data.path": "msft.csv"}), storage, trials=1)
    changed = with_values(config, {"data.path": "aapl.csv", "train.clipnorm": 0.5})
    refused = r"^data.path: study 's' was tuned with other settings \(data.path: 'msft.csv'.*train.clipnorm: 1.0 in"
    with pytest.raises(ConfigError, match=refused):
        _tune(changed, storage, trials=2)
    assert len(optuna.load_study(study_name="s", storage=tuning.open_storage(storage)).trials) == 1
    # What the search space sets, how training reports, the trial count and (with a warning) the budget may change.
    again = with_values(config, {"data.path": "msft.csv", "train.verbose": 0, "search.trials": 7, "train.epochs": 3})
    with caplog.at_level(logging.WARNING, logger="pipelines.tuning"):
        assert _tune(again, storage, trials=2).counts["complete"] == 2
    assert "another budget than the earlier ones (train.epochs: 30 before, 3 now)" in caplog.text


def test_workers_on_a_study_made_beforehand_settle_on_one_parent_run(experiment_id, tmp_path):
    storage = tuning.open_storage(str(tmp_path / "journal.log"))
    optuna.create_study(study_name="s", storage=storage)  # `optuna create-study`: nobody owns the parent run
    parents, errors = [], []

    def worker():
        try:
            study = optuna.load_study(study_name="s", storage=storage)
            run = tuning._parent_run(study, False, "stock_forecasting", "stock_forecasting", wait_seconds=0.5)
            parents.append(run.info.run_id)
            mlflow.end_run()
        except Exception as error:  # reported below: a thread's exception would be lost
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(parents)) == 1
    live = MlflowClient().search_runs([experiment_id], filter_string="tags.`optuna.study` = 's'")
    assert [run.info.run_id for run in live] == parents[:1]
