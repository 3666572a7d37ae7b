"""Store faults in the middle of a study: a full artifact disk, a tracking server that stops."""

import re
import subprocess

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from benchmarks.services import MlflowServer
from pipelines import workflows
from pipelines.tracking import ArtifactStoreFull
from tests.scaleout.conftest import SPACE, TINY, start_worker, wait_for, worker_command, worker_env


def _trial_in_training(storage, study):
    try:
        trials = optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)
    except KeyError:
        return None
    running = [t for t in trials if t.state == TrialState.RUNNING and t.intermediate_values]
    return running[0] if running else None


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs: room for one tiny trial's artifacts, not for three. Needs root (mount)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    command = ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)]
    mounted = subprocess.run(command, capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    yield disk
    subprocess.run(["umount", str(disk)], capture_output=True)


@pytest.mark.slow
def test_a_full_artifact_disk_stops_the_study_naming_the_path_and_the_rerun_resumes(
    small_disk, prices_csv, tmp_path, monkeypatch
):
    tracking_uri, storage = f"sqlite:///{tmp_path / 'mlflow.db'}", f"sqlite:///{tmp_path / 'optuna.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri)
    client.create_experiment("stock_forecasting", artifact_location=str(small_disk))
    overrides = [*TINY, SPACE, f"data.path={prices_csv}", "train.epochs=1"]

    with pytest.raises(ArtifactStoreFull, match=re.escape(str(small_disk))) as info:
        workflows.tune("stock_forecasting", 3, overrides=overrides, study="disk", storage=storage)
    assert "no space left on device" in str(info.value) and "rerun the same command" in str(info.value)
    trials = optuna.load_study(study_name="disk", storage=storage).get_trials()
    # The study stopped at the first full-disk failure instead of failing every trial left.
    assert [t.state for t in trials].count(TrialState.FAIL) == 1
    assert all(t.state in (TrialState.COMPLETE, TrialState.FAIL) for t in trials)
    failed = next(t for t in trials if t.state == TrialState.FAIL)
    run = client.get_run(failed.user_attrs["mlflow_run_id"])
    assert run.info.status == "FAILED" and str(small_disk) in run.data.tags["error"]
    complete_before = {t.number: t.user_attrs["mlflow_run_id"] for t in trials if t.state == TrialState.COMPLETE}

    subprocess.run(["mount", "-o", "remount,size=256m", str(small_disk)], check=True)
    result = workflows.tune("stock_forecasting", 3, overrides=overrides, study="disk", storage=storage)
    assert result.counts["complete"] == 3
    for run_id in complete_before.values():
        assert client.get_run(run_id).info.status == "FINISHED"
    experiment = client.get_experiment_by_name("stock_forecasting")
    assert client.search_runs([experiment.experiment_id], "attributes.status = 'RUNNING'") == []


@pytest.mark.slow
def test_a_tracking_server_stopped_mid_trial_fails_it_naming_the_server_and_the_rerun_resumes(prices_csv, tmp_path):
    server = MlflowServer(f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "artifacts", tmp_path / "server.log")
    server.start()
    try:
        storage = f"sqlite:///{tmp_path / 'optuna.db'}"
        env = worker_env(server.url, tmp_path)
        # MLflow retries a dead server for about two minutes by default (and a request caught by the
        # shutdown waits out its 120 s timeout): shortened here, measured at their defaults in
        # benchmarks/fault_harness.py.
        env.update(MLFLOW_HTTP_REQUEST_MAX_RETRIES="1", MLFLOW_HTTP_REQUEST_TIMEOUT="10")
        first = start_worker(
            worker_command("http", storage, 1, prices_csv, extra=["train.epochs=1"]), env, tmp_path / "first.log"
        )
        assert first.wait(timeout=600) == 0, (tmp_path / "first.log").read_text()[-3000:]
        slow = ["train.epochs=500", "train.early_stopping_patience=500"]
        worker = start_worker(worker_command("http", storage, 2, prices_csv, extra=slow), env, tmp_path / "worker.log")
        in_flight = wait_for(lambda: _trial_in_training(storage, "http"), 180, what="a trial's first epoch")
        server.stop()
        assert worker.wait(timeout=300) == 2, (tmp_path / "worker.log").read_text()[-3000:]
        assert f"error: MLflow tracking server {server.url} stopped answering" in (tmp_path / "worker.log").read_text()
        trials = optuna.load_study(study_name="http", storage=storage).get_trials()
        assert trials[in_flight.number].state == TrialState.FAIL
        assert all(t.state != TrialState.RUNNING for t in trials)

        server.start()
        rerun = start_worker(
            worker_command("http", storage, 2, prices_csv, extra=["train.epochs=1"]), env, tmp_path / "rerun.log"
        )
        assert rerun.wait(timeout=600) == 0, (tmp_path / "rerun.log").read_text()[-3000:]
        client = MlflowClient(tracking_uri=server.url)
        trials = optuna.load_study(study_name="http", storage=storage).get_trials()
        assert sum(t.state == TrialState.COMPLETE for t in trials) == 2
        assert client.get_run(trials[0].user_attrs["mlflow_run_id"]).info.status == "FINISHED", "logged before: kept"
        assert client.get_run(in_flight.user_attrs["mlflow_run_id"]).info.status == "FAILED"
        experiment = client.get_experiment_by_name("stock_forecasting")
        assert client.search_runs([experiment.experiment_id], "attributes.status = 'RUNNING'") == []
    finally:
        server.stop()
