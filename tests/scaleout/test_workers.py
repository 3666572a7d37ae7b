"""Many workers on one study, lost workers, Ctrl-C, unreachable services."""

import signal
import time

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from pipelines import workflows
from pipelines.tracking import TrackingUnavailable
from pipelines.tuning import StorageUnavailable
from tests.scaleout.conftest import (
    SPACE,
    TINY,
    free_port,
    kill,
    start_worker,
    wait_for,
    worker_command,
    worker_env,
)


def _runs(tracking_uri, study):
    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name("stock_forecasting")
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.`optuna.study` = '{study}'")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return parents, children


def _running_trial(storage, study, training=False):
    """The first running trial with its MLflow run; with `training`, only once it has reported an epoch."""
    try:
        trials = optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)
    except KeyError:
        return None
    running = [
        t
        for t in trials
        if t.state == TrialState.RUNNING and "mlflow_run_id" in t.user_attrs and (t.intermediate_values or not training)
    ]
    return running[0] if running else None


@pytest.mark.slow
def test_three_workers_share_one_postgres_study(postgres_server, prices_csv, tmp_path):
    storage, tracking_uri = f"{postgres_server}/optuna", f"{postgres_server}/mlflow"
    MlflowClient(tracking_uri=tracking_uri).search_experiments()  # create MLflow's tables once
    env = worker_env(tracking_uri, tmp_path)
    command = worker_command("shared", storage, 6, prices_csv, extra=["train.epochs=2"])
    workers = [start_worker(command, env, tmp_path / f"worker{i}.log") for i in range(3)]
    codes = [worker.wait(timeout=600) for worker in workers]
    assert codes == [0, 0, 0], [(tmp_path / f"worker{i}.log").read_text()[-3000:] for i in range(3)]

    trials = optuna.load_study(study_name="shared", storage=storage).get_trials()
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) >= 6
    assert all(t.state != TrialState.RUNNING for t in trials)
    run_ids = [t.user_attrs["mlflow_run_id"] for t in trials]
    assert len(set(run_ids)) == len(trials), "every trial has its own MLflow run"

    parents, children = _runs(tracking_uri, "shared")
    assert len(parents) == 1, "all workers log under one parent run"
    assert sorted(r.info.run_id for r in children) == sorted(run_ids)
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    assert all(r.info.status != "RUNNING" for r in children + parents)


@pytest.mark.slow
def test_killed_worker_trial_fails_is_retried_and_nothing_is_lost(prices_csv, tmp_path):
    storage, tracking_uri = f"sqlite:///{tmp_path / 'optuna.db'}", f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = worker_env(tracking_uri, tmp_path)
    heartbeat = ["search.heartbeat_interval=1", "search.grace_period=3"]
    slow = worker_command(
        "kill", storage, 2, prices_csv, extra=[*heartbeat, "train.epochs=500", "train.early_stopping_patience=500"]
    )
    victim = start_worker(slow, env, tmp_path / "victim.log")
    lost = wait_for(lambda: _running_trial(storage, "kill"), 180, what="the first trial to start")
    time.sleep(2)
    assert kill(victim, signal.SIGKILL) == -signal.SIGKILL
    time.sleep(4)  # past the grace period: the trial's heartbeat is stale

    rescuer = start_worker(
        worker_command("kill", storage, 2, prices_csv, extra=[*heartbeat, "train.epochs=2"]),
        env,
        tmp_path / "rescuer.log",
    )
    assert rescuer.wait(timeout=600) == 0, (tmp_path / "rescuer.log").read_text()[-3000:]

    trials = {t.number: t for t in optuna.load_study(study_name="kill", storage=storage).get_trials()}
    assert trials[lost.number].state == TrialState.FAIL
    retries = [t for t in trials.values() if t.system_attrs.get("failed_trial") == lost.number]
    assert retries and retries[0].state == TrialState.COMPLETE
    assert retries[0].params == trials[lost.number].params
    assert sum(t.state == TrialState.COMPLETE for t in trials.values()) == 2

    client = MlflowClient(tracking_uri=tracking_uri)
    lost_run = client.get_run(lost.user_attrs["mlflow_run_id"])
    assert lost_run.info.status == "FAILED"
    assert "worker lost" in lost_run.data.tags["error"]
    parents, children = _runs(tracking_uri, "kill")
    assert len(parents) == 1 and len(children) == len(trials)
    assert all(r.info.status != "RUNNING" for r in children)


@pytest.mark.slow
def test_a_tune_rerun_at_once_after_a_kill_leaves_no_zombie_trial_or_run(prices_csv, tmp_path):
    # The worker is killed in its first trial and the same command is run again at once; it finishes
    # before the grace period has passed (so Optuna's own check never fails the dead trial), and
    # when it exits, the dead worker's trial and run must not stay RUNNING.
    storage, tracking_uri = f"sqlite:///{tmp_path / 'optuna.db'}", f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = worker_env(tracking_uri, tmp_path)
    heartbeat = ["search.heartbeat_interval=1", "search.grace_period=30"]
    slow = worker_command(
        "zombie", storage, 2, prices_csv, extra=[*heartbeat, "train.epochs=500", "train.early_stopping_patience=500"]
    )
    victim = start_worker(slow, env, tmp_path / "victim.log")
    lost = wait_for(lambda: _running_trial(storage, "zombie"), 180, what="the first trial to start")
    assert kill(victim, signal.SIGKILL) == -signal.SIGKILL

    rerun = start_worker(
        worker_command("zombie", storage, 1, prices_csv, extra=[*heartbeat, "train.epochs=1"]),
        env,
        tmp_path / "rerun.log",
    )
    assert rerun.wait(timeout=600) == 0, (tmp_path / "rerun.log").read_text()[-3000:]
    assert "sent no heartbeat" in (tmp_path / "rerun.log").read_text()

    trials = optuna.load_study(study_name="zombie", storage=storage).get_trials()
    assert [t.number for t in trials if t.state == TrialState.RUNNING] == []
    assert trials[lost.number].state == TrialState.FAIL
    client = MlflowClient(tracking_uri=tracking_uri)
    lost_run = client.get_run(lost.user_attrs["mlflow_run_id"])
    assert lost_run.info.status == "FAILED" and "worker lost" in lost_run.data.tags["error"]
    parents, children = _runs(tracking_uri, "zombie")
    assert all(run.info.status != "RUNNING" for run in parents + children)


@pytest.mark.slow
def test_ctrl_c_fails_the_trial_closes_runs_and_tune_resumes(prices_csv, tmp_path, monkeypatch):
    storage, tracking_uri = f"sqlite:///{tmp_path / 'optuna.db'}", f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = worker_env(tracking_uri, tmp_path)
    command = worker_command(
        "sigint", storage, 2, prices_csv, extra=["train.epochs=500", "train.early_stopping_patience=500"]
    )
    worker = start_worker(command, env, tmp_path / "worker.log")
    # Ctrl-C in the middle of training (after the first epoch's report), as a user would press it.
    interrupted = wait_for(lambda: _running_trial(storage, "sigint", training=True), 180, what="the first epoch")
    assert kill(worker, signal.SIGINT) == 130, (tmp_path / "worker.log").read_text()[-3000:]
    assert "rerun the same command to resume" in (tmp_path / "worker.log").read_text()

    trial = optuna.load_study(study_name="sigint", storage=storage).trials[interrupted.number]
    assert trial.state == TrialState.FAIL
    client = MlflowClient(tracking_uri=tracking_uri)
    assert client.get_run(trial.user_attrs["mlflow_run_id"]).info.status == "FAILED"
    parents, _ = _runs(tracking_uri, "sigint")
    assert [p.info.status for p in parents] == ["KILLED"]

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    result = workflows.tune(
        "stock_forecasting",
        1,
        overrides=[*TINY, SPACE, f"data.path={prices_csv}", "train.epochs=2"],
        study="sigint",
        storage=storage,
    )
    assert result.parent_run_id == parents[0].info.run_id
    assert result.counts["complete"] == 1 and result.counts["fail"] == 1
    assert client.get_run(result.parent_run_id).info.status == "FINISHED"


def test_unreachable_database_fails_within_seconds_before_training(prices_csv):
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/optuna"
    start = time.monotonic()
    with pytest.raises(StorageUnavailable, match="cannot open Optuna storage postgresql://postgres@127.0.0.1") as info:
        workflows.tune("stock_forecasting", 1, overrides=[f"data.path={prices_csv}"], storage=dead)
    assert "refused" in str(info.value)
    assert time.monotonic() - start < 15
    assert MlflowClient().get_experiment_by_name("stock_forecasting") is None, "nothing ran or was logged"


def test_unreachable_tracking_database_fails_within_seconds(prices_csv, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"postgresql://postgres:secret@127.0.0.1:{free_port()}/mlflow")
    start = time.monotonic()
    with pytest.raises(TrackingUnavailable, match=r"postgresql://postgres:\*\*\*@127.0.0.1.* is unreachable") as info:
        workflows.train("stock_forecasting", overrides=[f"data.path={prices_csv}"])
    assert "refused" in str(info.value) and "secret" not in str(info.value)
    assert time.monotonic() - start < 15
