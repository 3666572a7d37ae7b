"""Everything that talks to Optuna: studies, storage, the search space, the objective.

A tune is one Optuna study and one MLflow parent run; each trial is a nested MLflow run. The parent
run id lives in the study's user attributes, so a resumed tune, or another worker on the same
storage (possibly on another machine), logs under the same parent.
"""

import contextlib
import dataclasses
import json
import logging
import math
import secrets
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import mlflow
import optuna
from mlflow import MlflowClient
from mlflow.entities import Run
from optuna.distributions import CategoricalDistribution, IntDistribution, check_distribution_compatibility
from optuna.storages import BaseStorage
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import FrozenTrial, TrialState
from optuna_integration import KerasPruningCallback

from pipelines import runner, tracking
from pipelines.config import SearchParam, flatten, search_distribution, to_dict, with_values
from pipelines.errors import ConfigError, DataError, PipelineError
from pipelines.tasks import Task
from pipelines.tracking import redact
from pipelines.training import TrainingDiverged

DEFAULT_STORAGE = "sqlite:///optuna.db"
PARENT_RUN_ATTR = "mlflow_parent_run_id"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
logger = logging.getLogger(__name__)


class StorageUnavailable(PipelineError):
    """The Optuna storage cannot be opened."""


@contextlib.contextmanager
def optuna_experimental() -> Iterator[None]:
    """Silence Optuna's `ExperimentalWarning` for the experimental features used on purpose.

    Heartbeats and their retry (experimental since Optuna 2.8) and the matplotlib plots (since 2.2)
    would warn on every tune.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


@dataclasses.dataclass
class TuneResult:
    """Outcome of a tune call."""

    study_name: str
    parent_run_id: str
    best_trial: FrozenTrial | None
    counts: dict[str, int]
    model_version: Any = None  # a `tracking.Registration` after `tune --register`


class FailLostTrial:
    """Called by Optuna for a trial whose worker stopped sending heartbeats (killed, machine lost).

    Marks the trial's MLflow run FAILED (it would stay RUNNING forever) and enqueues a retry with
    the same parameters (`RetryHeartbeatStaleTrialCallback`).

    Args:
        max_retry: Retries of a lost trial.
    """

    def __init__(self, max_retry: int) -> None:
        with optuna_experimental():
            self.retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        run_id = trial.user_attrs.get("mlflow_run_id")
        if run_id:
            try:
                tracking.mark_lost(run_id, "worker lost: no Optuna heartbeat within the grace period")
            except Exception as error:  # tracking down: the sweep at the end of the tune retries
                logger.warning("could not mark MLflow run %s of lost trial %d: %s", run_id, trial.number, error)
        logger.warning("trial %d lost its worker; marked failed and queued for retry", trial.number)
        self.retry(study, trial)


def open_storage(
    storage: str | None = None, heartbeat_interval: int = 10, grace_period: int = 30, max_retry: int = 2
) -> BaseStorage:
    """An Optuna storage from a URL or a journal file path.

    RDB storages (SQLite, PostgreSQL, MySQL) get heartbeats: a trial whose worker dies is marked
    failed after `grace_period` seconds and retried. Journal files have no heartbeat.

    Args:
        storage: A journal file path (its folder must exist), or any Optuna RDB URL
            (`sqlite:///...`, `postgresql://...`). Default: `None`, which means `sqlite:///optuna.db`.
        heartbeat_interval: Seconds between a running trial's heartbeats. Default: `10`.
        grace_period: Seconds without heartbeat after which a trial counts as lost. Default: `30`.
        max_retry: Retries of a lost trial. Default: `2`.

    Returns:
        An Optuna storage.

    Raises:
        StorageUnavailable: The journal file or the database cannot be opened.
    """
    storage = storage or DEFAULT_STORAGE
    if "://" not in storage:
        try:
            return JournalStorage(JournalFileBackend(storage))
        except OSError as error:
            # No folder is created: a mistyped path or an unmounted share would quietly start a
            # second study that the other workers never see.
            raise StorageUnavailable(f"cannot open Optuna journal file {storage}: {error.strerror or error}") from None
    for attempt in range(5):
        try:
            with optuna_experimental():
                return optuna.storages.RDBStorage(
                    storage,
                    heartbeat_interval=heartbeat_interval,
                    grace_period=grace_period,
                    heartbeat_stale_trial_callback=FailLostTrial(max_retry),
                    engine_kwargs=_engine_kwargs(storage),
                )
        except Exception as error:
            # Workers starting together on a new database race to create Optuna's tables; the
            # losers see "already exists" and find the tables on the next attempt.
            if "already exists" in str(error) and attempt < 4:
                time.sleep(1.0 + attempt)
                continue
            raise StorageUnavailable(f"cannot open Optuna storage {redact(storage)}: {error}") from None


def _engine_kwargs(url: str) -> dict[str, Any]:
    if url.startswith("postgresql"):
        return {"connect_args": {"connect_timeout": 5}, "pool_pre_ping": True}
    if url.startswith("sqlite"):  # several local workers: wait for the lock instead of failing
        return {"connect_args": {"timeout": 60}}
    return {}


def suggest(trial: optuna.Trial, space: dict[str, SearchParam]) -> dict[str, Any]:
    """Ask the trial for every parameter of the search space.

    Args:
        trial: An Optuna trial.
        space: `{dotted_key: SearchParam}` from the config.

    Returns:
        `{dotted_key: value}`.
    """
    values = {}
    for key, param in space.items():
        found = search_distribution(param)
        if isinstance(found, CategoricalDistribution):
            values[key] = trial.suggest_categorical(key, list(found.choices))
        elif isinstance(found, IntDistribution):
            values[key] = trial.suggest_int(key, found.low, found.high, step=found.step, log=found.log)
        else:
            values[key] = trial.suggest_float(key, found.low, found.high, step=found.step, log=found.log)
    return values


def load_or_create_study(name: str, storage: BaseStorage | str, direction: str, seed: int) -> tuple[optuna.Study, bool]:
    """Create the study, or load it to resume or to join other workers.

    The process that creates the study seeds TPE from `seed`, so a tune in one process is
    reproducible. A process that loads it (a resume, another worker) draws a fresh seed: any seed
    derived from the study alone would be the same in workers that join at the same moment, and
    they would propose the same parameters. Constant liar keeps TPE away from the parameters of
    trials still running in other workers.

    Args:
        name: The study name.
        storage: An opened storage or a storage URL.
        direction: `"minimize"` or `"maximize"`.
        seed: TPE's seed in the process that creates the study.

    Returns:
        `(study, created)`: `created` is true only in the one process that created the study.

    Raises:
        PipelineError: The study exists with another direction.
    """
    try:
        study = optuna.create_study(study_name=name, storage=storage, direction=direction)
        created = True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage)
        created = False
    if study.direction.name.lower() != direction:
        raise PipelineError(f"study {name!r} exists with direction {study.direction.name.lower()}, not {direction}")
    if not created:
        seed = secrets.randbits(32)
        logger.info("joined study %s with TPE seed %d", name, seed)
    study.sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=5, constant_liar=True)
    return study, created


def check_space_matches(study: optuna.Study, space: dict[str, SearchParam]) -> None:
    """Refuse a search space that contradicts the one a resumed study's trials were drawn from.

    Optuna refuses such a parameter in every new trial, so each would fail; bounds may change,
    the kind, `log` and categorical choices may not (`check_distribution_compatibility`).

    Args:
        study: The loaded study.
        space: `{dotted_key: SearchParam}` from the config.

    Raises:
        ConfigError: Naming `search.space.<key>` and both distributions.
    """
    recorded = {}
    for trial in study.get_trials(deepcopy=False):
        for key, distribution in trial.distributions.items():
            recorded.setdefault(key, distribution)
    for key, param in space.items():
        if key not in recorded:
            continue
        wanted = search_distribution(param)
        try:
            check_distribution_compatibility(recorded[key], wanted)
        except ValueError as error:
            raise ConfigError(
                f"search.space.{key}: study {study.study_name!r} drew its trials from {recorded[key]}, not {wanted} "
                f"({error}); resume it with its own search space, or tune under a new --study"
            ) from None


SETTINGS_ATTR = "settings"  # study user attribute: the config its trials share (`comparable_settings`)
_NOT_COMPARED = ("search.", "tracking.", "train.verbose", "train.strategy")
BUDGET_KEYS = ("train.epochs", "train.early_stopping_patience")  # may change on resume, with a warning


def comparable_settings(config: Any) -> dict[str, Any]:
    """The settings every trial of a study must share, as dotted keys.

    That is the config less `search.*`, `tracking.*`, how training reports and where it runs
    (`train.verbose`, `train.strategy`) and the keys the search space sets.

    Args:
        config: A task config.

    Returns:
        `{dotted_key: value}`, JSON-compatible.
    """
    flat = flatten(to_dict(config))
    kept = {key: value for key, value in flat.items() if not key.startswith(_NOT_COMPARED)}
    return json.loads(json.dumps({key: value for key, value in kept.items() if key not in config.search.space}))


def check_settings_match(study: optuna.Study, config: Any) -> None:
    """Record the study's settings when it has none, else refuse a config that changes them.

    Trials trained on other data or with another model are not comparable, and the best of them
    would be registered. A changed training budget (`BUDGET_KEYS`, e.g. fewer epochs to finish a
    study) is only warned about. Keys only one side has are search-space changes, which
    `check_space_matches` judges.

    Args:
        study: The created or loaded study.
        config: The config of the trials to come.

    Raises:
        ConfigError: Naming every setting this config changes.
    """
    settings = comparable_settings(config)
    recorded = study.user_attrs.get(SETTINGS_ATTR)
    if recorded is None:
        study.set_user_attr(SETTINGS_ATTR, settings)
        return
    changed = [key for key in sorted(set(recorded) & set(settings)) if recorded[key] != settings[key]]
    budget = [key for key in changed if key in BUDGET_KEYS]
    if budget:
        logger.warning(
            "study %s: the trials to come train with another budget than the earlier ones (%s)",
            study.study_name,
            "; ".join(f"{key}: {recorded[key]!r} before, {settings[key]!r} now" for key in budget),
        )
    changed = [key for key in changed if key not in BUDGET_KEYS]
    if changed:
        shown = "; ".join(f"{key}: {recorded[key]!r} in the study, {settings[key]!r} now" for key in changed[:5])
        more = f"; and {len(changed) - 5} more" if len(changed) > 5 else ""
        raise ConfigError(
            f"{changed[0]}: study {study.study_name!r} was tuned with other settings ({shown}{more}); resume it "
            "with its own settings, or tune under a new --study"
        )


def _check_parent_experiment(study: optuna.Study, parent_id: str, experiment: str) -> None:
    """`ConfigError` when the study's parent run is in another experiment than `experiment` (a
    changed `tracking.experiment`, or another task's study): MLflow cannot reopen it there."""
    logged_to = MlflowClient().get_experiment(MlflowClient().get_run(parent_id).info.experiment_id).name
    if logged_to != experiment:
        raise ConfigError(
            f"tracking.experiment: study {study.study_name!r} logs to experiment {logged_to!r} (parent run "
            f"{parent_id}), not {experiment!r}; resume it with tracking.experiment={logged_to}, or tune under "
            "a new --study"
        )


def _parent_run(
    study: optuna.Study,
    created: bool,
    task_name: str,
    experiment: str,
    on_new_parent: Callable[[], None] | None = None,
    wait_seconds: float = 60.0,
    settle_seconds: float = 2.0,
) -> Run:
    """Start the study's parent run (in the creating process) or reopen it (resumes, other workers).

    Only the process that created the study creates the parent run; the others wait up to
    `wait_seconds` for its id to appear in the study's user attributes. A parent run that was
    deleted, or that lives in another tracking store, is replaced by a new one, which the study
    then records; so is a missing one after the wait. Workers that replace it at the same moment
    settle on one after `settle_seconds`.
    """
    parent_id = study.user_attrs.get(PARENT_RUN_ATTR)
    deadline = time.monotonic() + wait_seconds
    while parent_id is None and not created and time.monotonic() < deadline:
        time.sleep(0.5)
        parent_id = study.user_attrs.get(PARENT_RUN_ATTR)
    if parent_id is not None:
        if tracking.run_is_live(parent_id):
            _check_parent_experiment(study, parent_id, experiment)
            return mlflow.start_run(run_id=parent_id)
        logger.warning(
            "parent run %s of study %s was not found in %s (deleted, or logged to another tracking store); "
            "starting a new parent run for the trials to come",
            parent_id,
            study.study_name,
            redact(tracking.tracking_uri()),
        )
    run = mlflow.start_run(run_name=f"tune-{study.study_name}", tags={"optuna.study": study.study_name})
    study.set_user_attr(PARENT_RUN_ATTR, run.info.run_id)
    if not created:
        # Workers that found no live parent at the same moment (a study made beforehand with
        # `optuna create-study`, or a resume whose parent is gone) each made one: the id written
        # last wins, and the others delete theirs and join it.
        time.sleep(settle_seconds)
        winner = study.user_attrs.get(PARENT_RUN_ATTR)
        if winner != run.info.run_id and tracking.run_is_live(winner):
            mlflow.end_run()
            MlflowClient().delete_run(run.info.run_id)
            return mlflow.start_run(run_id=winner)
    mlflow.set_tag("task", task_name)
    if on_new_parent is not None:
        on_new_parent()
    return run


def _close_orphan_runs(study: optuna.Study, experiment_id: str) -> None:
    """Mark FAILED the MLflow runs of trials that ended without closing them (lost workers).

    Those are the runs the trials recorded, and the RUNNING runs tagged with the study whose trial
    has ended (a worker killed after creating the run, before recording it on the trial). A run that
    cannot be read or closed (deleted, purged, tracking down) is skipped with a warning: the sweep
    must not cost the tune its summary.
    """
    trials = study.get_trials(deepcopy=False)
    for trial in trials:
        run_id = trial.user_attrs.get("mlflow_run_id")
        if not run_id or trial.state == TrialState.RUNNING:
            continue
        try:
            if tracking.run_status(run_id) == "RUNNING":
                tracking.mark_lost(run_id, f"trial ended as {trial.state.name} without closing its run")
        except Exception as error:
            logger.warning("could not check MLflow run %s of trial %d: %s", run_id, trial.number, error)
    ended = {str(trial.number): trial for trial in trials if trial.state != TrialState.RUNNING}
    name = study.study_name.replace("'", "\\'")
    try:
        running = MlflowClient().search_runs(
            [experiment_id], f"tags.`optuna.study` = '{name}' and attributes.status = 'RUNNING'"
        )
        for run in running:
            trial = ended.get(run.data.tags.get("optuna.trial", ""))
            if trial is not None and trial.user_attrs.get("mlflow_run_id") != run.info.run_id:
                tracking.mark_lost(run.info.run_id, "worker lost before its trial recorded this run")
    except Exception as error:
        logger.warning("could not look for unrecorded runs of study %s: %s", study.study_name, error)


def _fail_lost_trials(study: optuna.Study, storage: BaseStorage) -> None:
    """Before `tune` exits, fail the RUNNING trials that no live worker owns.

    Optuna fails a trial whose worker died only when some later worker starts a trial after the
    grace period; a `tune` rerun at once after a crash would finish and leave the dead trial and its
    MLflow run RUNNING. A trial whose heartbeat is older than 1.5 heartbeat intervals has most
    likely lost its worker: this waits for it (at most the grace period, saying so), then fails it
    as Optuna's own check does (`FailLostTrial`: the run marked lost, a retry queued). A trial whose
    heartbeat is fresh, or turns fresh again, belongs to a live worker and is left alone.
    """
    if not isinstance(storage, optuna.storages.RDBStorage) or storage.heartbeat_interval is None:
        return  # journal files have no heartbeat
    interval = storage.heartbeat_interval
    grace = storage.grace_period if storage.grace_period is not None else 2 * interval
    suspects = _stale_trial_ids(storage, study, 1.5 * interval)
    if not suspects:
        return
    numbers = sorted(storage.get_trial(trial_id).number for trial_id in suspects)
    logger.warning(
        "trial(s) %s sent no heartbeat for over %g s: waiting up to %d s (search.grace_period) for their "
        "workers before failing them",
        ", ".join(map(str, numbers)),
        1.5 * interval,
        grace,
    )
    deadline = time.monotonic() + grace + interval
    while suspects and time.monotonic() < deadline:
        time.sleep(min(1.0, interval))
        with optuna_experimental():
            optuna.storages.fail_stale_trials(study)
        stale = _stale_trial_ids(storage, study, 1.5 * interval)
        suspects = {i for i in suspects if i in stale and storage.get_trial(i).state == TrialState.RUNNING}


def _stale_trial_ids(storage: optuna.storages.RDBStorage, study: optuna.Study, seconds: float) -> set[int]:
    """Ids of the study's RUNNING trials whose last heartbeat is older than `seconds`.

    Optuna's own query, asked with `seconds` as its grace period (no public call takes one); the
    storage's setting is put back at once (the tune's trials have ended: no heartbeat thread reads it).
    """
    grace = storage.grace_period
    storage.grace_period = seconds
    try:
        return set(storage._get_stale_trial_ids(study._study_id))
    finally:
        storage.grace_period = grace


def _end_runs_above(run_id: str) -> None:
    """End (as FAILED) any active run nested below `run_id`, so the next trial nests under it."""
    while (active := mlflow.active_run()) is not None and active.info.run_id != run_id:
        logger.warning("run %s was still active when a trial started; ending it as FAILED", active.info.run_id)
        mlflow.end_run(status="FAILED")


def _objective(
    task: Task, config: Any, source: Any, study_name: str, parent_run_id: str, stopped_by: list[PipelineError]
) -> Callable[[optuna.Trial], float]:
    """The trial objective. An error every later trial would meet too goes into `stopped_by` and
    stops the study: a `DataError` before any trial of the study finished, a full artifact disk, a
    tracking server or database that stopped answering (`tracking.store_failure`)."""

    def objective(trial: optuna.Trial) -> float:
        trial_config = with_values(config, suggest(trial, config.search.space))
        _end_runs_above(parent_run_id)
        # The tags are written with the run: a worker killed before `set_user_attr` below leaves a
        # run that only they tie to its trial, and the sweep (`_close_orphan_runs`) finds it by them.
        tags = {"optuna.study": study_name, "optuna.trial": str(trial.number)}
        run = mlflow.start_run(run_name=f"trial-{trial.number}", parent_run_id=parent_run_id, nested=True, tags=tags)
        # Everything after start_run is inside the try: a trial's run must end whatever fails (a
        # storage error in set_user_attr too), or every later trial would nest under it and fail.
        try:
            trial.set_user_attr("mlflow_run_id", run.info.run_id)
            pruning = KerasPruningCallback(trial, "val_loss")
            result = runner.train_and_log(task, trial_config, source, callbacks=[pruning])
            value = result.evaluation.metrics[task.objective]
            if not math.isfinite(value):
                raise TrainingDiverged(f"{task.objective} is {value}")
            trial.set_user_attr("model_uri", result.model_uri)
            trial.set_user_attr("metrics", {k: float(v) for k, v in result.evaluation.metrics.items()})
            trial.set_user_attr("headline", result.evaluation.headline)
        except optuna.TrialPruned:
            mlflow.set_tag("optuna.state", "PRUNED")
            mlflow.end_run(status="KILLED")
            raise
        except BaseException as error:
            outage = tracking.store_failure(error) if isinstance(error, Exception) else None
            if isinstance(outage, tracking.TrackingUnavailable):
                tracking.stop_retrying()
            reason = str(outage) if outage is not None else f"{type(error).__name__}: {error}"
            try:
                mlflow.set_tags({"optuna.state": "FAIL", "error": reason[:5000]})
                mlflow.end_run(status="FAILED")
            except Exception as closing:
                if outage is None:
                    raise
                # The run stays RUNNING in the store; the next tune's sweep closes it.
                logger.warning("could not close MLflow run %s of trial %d: %s", run.info.run_id, trial.number, closing)
            if outage is None and isinstance(error, DataError):
                if not trial.study.get_trials(deepcopy=False, states=FINISHED):
                    outage = error
            if outage is not None:
                stopped_by.append(outage)
                trial.study.stop()
                if outage is not error:
                    raise outage from error
            raise
        mlflow.set_tag("optuna.state", "COMPLETE")
        mlflow.end_run(status="FINISHED")
        return value

    return objective


def _log_study_summary(study: optuna.Study, task: Task) -> tuple[dict[str, int], FrozenTrial | None]:
    """Best params, metrics and model, and the Optuna plots, on the parent run."""
    counts = {state.name.lower(): 0 for state in TrialState}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name.lower()] += 1
    mlflow.log_metrics({f"trials_{state}": count for state, count in counts.items()})
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not completed:
        return counts, None
    best = study.best_trial
    # Tags and a JSON artifact, not params: MLflow params are immutable and a resumed study may
    # find a new best trial.
    mlflow.set_tags({f"best.{key}": value for key, value in best.params.items()})
    mlflow.log_dict({"trial": best.number, "value": best.value, "params": best.params}, "best_params.json")
    mlflow.log_metrics({f"best_{key}": value for key, value in best.user_attrs.get("metrics", {}).items()})
    mlflow.set_tags(
        {"best_trial": best.number, "best_model_uri": best.user_attrs.get("model_uri", ""), "best_value": best.value}
    )
    with optuna_experimental():
        figures = {"optimization_history": optuna.visualization.matplotlib.plot_optimization_history(study).figure}
        if len(completed) >= 2:
            try:
                figures["param_importances"] = optuna.visualization.matplotlib.plot_param_importances(study).figure
            except (RuntimeError, ValueError) as error:  # e.g. every trial had the same parameters
                logger.info("no parameter importance plot: %s", error)
    tracking.log_figures(figures, folder="optuna")
    model_uri = best.user_attrs.get("model_uri")
    if model_uri and not tracking.model_exists(model_uri):
        # A study kept in optuna.db outlives a deleted or switched MLflow store.
        logger.warning(
            "best model %s of trial %d is not in %s; the parent run gets no copy of it",
            model_uri,
            best.number,
            redact(tracking.tracking_uri()),
        )
    elif model_uri:
        with tempfile.TemporaryDirectory() as folder:
            local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=folder)
            mlflow.log_artifacts(local, "best_model")
    return counts, best


def check_direction(task: Task, config: Any) -> None:
    """Refuse a `search.direction` other than the task's.

    Every objective is minimised, like the `val_loss` the pruner watches.

    Args:
        task: A `Task`.
        config: The task's config.

    Raises:
        ConfigError: Naming `search.direction`.
    """
    if config.search.direction != task.direction:
        raise ConfigError(
            f"search.direction: {task.name} tunes {task.objective}, which is minimised (the pruner watches "
            f"val_loss); expected {task.direction}, got {config.search.direction!r}"
        )


def tune(
    task: Task,
    config: Any,
    source: Any,
    trials: int,
    timeout: float | None = None,
    study_name: str | None = None,
    storage: BaseStorage | str | None = None,
    on_parent: Callable[[], None] | None = None,
) -> TuneResult:
    """Run (or resume) a study until it holds `trials` finished trials or `timeout` passes.

    Args:
        task: A `Task`.
        config: Validated config; `config.search.space` is the search space.
        source: Raw data from `task.load_source`.
        trials: Target number of finished (complete or pruned) trials in the study; failed
            trials are retried up to as many again.
        timeout: Seconds for this call, or `None` for no limit. Default: `None`.
        study_name: Study name. Default: `None`, which means the task name.
        storage: An opened storage (`open_storage`) or a URL / journal path. Default: `None`,
            which means `sqlite:///optuna.db`.
        on_parent: Called once inside a newly created parent run (e.g. to log the dataset).
            Default: `None`.

    Returns:
        A `TuneResult`.

    Raises:
        DataError: A trial failed on the data before any trial of the study finished: such an error
            is most likely common to every trial, so the study stops there instead of running every
            trial to the same failure (the trial is recorded as failed, the parent run as FAILED).
        ArtifactStoreFull: No space was left for a trial's artifacts (the study stops the same way).
        TrackingUnavailable: The tracking server or database stopped answering (the study stops;
            runs it could not close are closed by the next tune).
    """
    check_direction(task, config)
    study_name = study_name or task.name
    if storage is None or isinstance(storage, str):
        storage = open_storage(storage)
    study, created = load_or_create_study(study_name, storage, config.search.direction, config.seed)
    check_space_matches(study, config.search.space)
    check_settings_match(study, config)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=config.search.pruner_warmup_epochs)
    study.pruner = pruner
    finished = len(study.get_trials(deepcopy=False, states=FINISHED))
    remaining = trials - finished
    try:
        parent = _parent_run(study, created, task.name, config.tracking.experiment or task.name, on_parent)
        if remaining > 0:
            logger.info("study %s: %d finished trials, running up to %d more", study_name, finished, remaining)
            start = time.monotonic()
            stopped_by: list[PipelineError] = []
            study.optimize(
                _objective(task, config, source, study_name, parent.info.run_id, stopped_by),
                # Failed trials do not count towards `trials`; the bound stops a study whose
                # every trial fails.
                n_trials=2 * remaining,
                timeout=timeout,
                catch=(Exception,),
                callbacks=[optuna.study.MaxTrialsCallback(trials, states=FINISHED)],
                show_progress_bar=True,
            )
            if stopped_by:
                raise stopped_by[0]
            mlflow.log_metric("tune_seconds", time.monotonic() - start)
        else:
            logger.info("study %s already has %d finished trials (asked for %d)", study_name, finished, trials)
        _fail_lost_trials(study, storage)
        _close_orphan_runs(study, parent.info.experiment_id)
        counts, best = _log_study_summary(study, task)
    except KeyboardInterrupt:
        if mlflow.active_run() is not None:  # set_tag would start a stray run before the parent exists
            mlflow.set_tag("interrupted", "true")
            mlflow.end_run(status="KILLED")
        raise
    except BaseException as error:
        outage = tracking.store_failure(error) if isinstance(error, Exception) else None
        if isinstance(outage, tracking.TrackingUnavailable):
            tracking.stop_retrying()
        try:
            mlflow.end_run(status="FAILED")
        except Exception as closing:
            if outage is None:
                raise
            logger.warning("could not close the parent run: %s", closing)
        if outage is not None and outage is not error:
            raise outage from error
        raise
    mlflow.end_run(status="FINISHED")
    return TuneResult(study_name, parent.info.run_id, best, counts)


def best_trial(study_name: str, storage: BaseStorage | str | None = None) -> FrozenTrial:
    """The best completed trial of an existing study.

    Args:
        study_name: The study name.
        storage: An opened storage, a URL or a journal path. Default: `None`, which means
            `sqlite:///optuna.db`.

    Returns:
        The best completed trial.

    Raises:
        PipelineError: No such study, or none of its trials completed.
    """
    if storage is None or isinstance(storage, str):
        storage = open_storage(storage)
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        raise PipelineError(f"no study named {study_name!r} in this Optuna storage") from None
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise PipelineError(f"study {study_name!r} has no completed trial yet")
    return study.best_trial
