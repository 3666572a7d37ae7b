"""Everything that talks to MLflow: runs, params, metrics, figures, models and the registry.

The tracking URI comes from `MLFLOW_TRACKING_URI` (default `sqlite:///mlflow.db` in the working
directory), so a tracking server is used by changing an environment variable, not code.
"""

import dataclasses
import errno
import json
import logging
import os
import re
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import keras
import matplotlib
import pandas as pd
from matplotlib.figure import Figure

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import mlflow  # noqa: E402
import yaml  # noqa: E402
from mlflow.data.pandas_dataset import PandasDataset  # noqa: E402
from mlflow.data.sources import LocalArtifactDatasetSource  # noqa: E402
from mlflow.entities.model_registry import ModelVersion  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from pipelines import model_card  # noqa: E402
from pipelines.config import flatten, to_dict  # noqa: E402
from pipelines.errors import PipelineError  # noqa: E402
from pipelines.tasks import GateDecision, ServingBundle  # noqa: E402

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
logger = logging.getLogger(__name__)


class TrackingUnavailable(PipelineError):
    """The MLflow tracking server cannot be reached."""


class ArtifactStoreFull(PipelineError):
    """No space is left on the device an MLflow artifact was being written to."""


_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def tracking_uri() -> str:
    """The tracking URI in force.

    Returns:
        `MLFLOW_TRACKING_URI`, or the local SQLite default `sqlite:///mlflow.db`.
    """
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def _server_problem(uri: str, timeout: float = 5.0) -> str | None:
    """Why the tracking server at `uri` does not answer its `/health` probe, or None when it does."""
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as response:
            if response.status == 200:
                return None
            return f"HTTP {response.status}"
    except (urllib.error.URLError, OSError) as error:
        return str(getattr(error, "reason", error))


def _check_server(uri: str, timeout: float = 5.0) -> None:
    problem = _server_problem(uri, timeout)
    if problem is not None:
        raise TrackingUnavailable(
            f"MLflow tracking server {uri} is unreachable ({problem}). Start it (mlflow server ...) or "
            "unset MLFLOW_TRACKING_URI to use the local sqlite:///mlflow.db."
        )


def _database_problem(uri: str, timeout: int = 5) -> str | None:
    """Why the tracking database at `uri` cannot be connected to, or None when it can."""
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(uri, connect_args={"connect_timeout": timeout})
        with engine.connect():
            pass
        engine.dispose()
    except Exception as error:
        return str(error).splitlines()[0]
    return None


def _check_database(uri: str, timeout: int = 5) -> None:
    problem = _database_problem(uri, timeout)
    if problem is not None:
        raise TrackingUnavailable(f"MLflow tracking database {redact(uri)} is unreachable: {problem}")


def redact(uri: str) -> str:
    """The URI without its password, for messages.

    Args:
        uri: A URI, e.g. `postgresql://user:secret@host/db`.

    Returns:
        The URI with the password replaced by `***`.
    """
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", uri)


def setup_uri_only() -> None:
    """Point MLflow at the tracking store (for loading models; no experiment needed).

    Raises:
        TrackingUnavailable: A tracking server or database that does not answer.
    """
    uri = tracking_uri()
    if uri.startswith(("http://", "https://")):
        _check_server(uri)
    elif uri.startswith(("postgresql", "mysql")):
        _check_database(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)


def check_store_exists() -> None:
    """Check that a SQLite tracking store exists before a model is loaded from it.

    Loading a model from a missing SQLite file would create an empty store and report only that
    the model is not there.

    Raises:
        TrackingUnavailable: The tracking URI is a SQLite file that does not exist.
    """
    uri = tracking_uri()
    path = uri.removeprefix("sqlite:///")
    if uri.startswith("sqlite:///") and path != ":memory:" and not Path(path).is_file():
        where = "MLFLOW_TRACKING_URI" if os.environ.get("MLFLOW_TRACKING_URI") else "the default tracking URI"
        raise TrackingUnavailable(
            f"no MLflow store at {path} ({where}, {uri}); run from the folder that holds it or set MLFLOW_TRACKING_URI"
        )


def setup(experiment_name: str) -> str:
    """Point MLflow at the tracking store, check it answers, and select the task's experiment.

    Args:
        experiment_name: Experiment to create or reuse (one per task).

    Returns:
        The experiment id.

    Raises:
        TrackingUnavailable: The tracking store cannot be reached or opened.
    """
    setup_uri_only()
    uri = tracking_uri()
    for attempt in range(3):
        try:
            return mlflow.set_experiment(experiment_name).experiment_id
        except mlflow.exceptions.MlflowException as error:
            # Several workers starting together race to create the experiment: the losers see
            # RESOURCE_ALREADY_EXISTS and find it on the next attempt.
            if "already exists" in str(error).lower() and attempt < 2:
                continue
            raise TrackingUnavailable(f"cannot open MLflow tracking store {uri}: {error}") from None
        except Exception as error:  # the store itself is broken or unreachable
            raise TrackingUnavailable(f"cannot open MLflow tracking store {uri}: {error}") from None


def metric_name(keras_name: str) -> str:
    """The split-prefixed metric name of a Keras log key.

    Args:
        keras_name: A key of Keras's epoch logs, e.g. `loss` or `val_mae`.

    Returns:
        The name with its split: `loss` -> `train_loss`; `val_mae` stays.
    """
    return keras_name if keras_name.startswith(("val_", "test_", "train_")) else f"train_{keras_name}"


class EpochMetricsLogger(keras.callbacks.Callback):
    """Log every epoch's Keras metrics to the active MLflow run, with the epoch as step.

    Args:
        prefix: Put before every metric name (`member_1/` for an ensemble's second member).
            Default: `""`.
    """

    def __init__(self, prefix: str = "") -> None:
        super().__init__()
        self.prefix = prefix

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        metrics = {self.prefix + metric_name(k): float(v) for k, v in (logs or {}).items() if k != "learning_rate"}
        mlflow.log_metrics(metrics, step=epoch)


def log_config(config: Any) -> None:
    """Log the full resolved config: flat params and `config.yaml` (with the search space).

    Args:
        config: A task config.
    """
    raw = to_dict(config)
    mlflow.log_params({key: "" if value is None else value for key, value in flatten(raw).items()})
    mlflow.log_text(yaml.safe_dump(raw, sort_keys=False), "config.yaml")


def log_figures(figures: dict[str, Figure], folder: str = "plots") -> None:
    """Log matplotlib figures as PNG artifacts and close them.

    Args:
        figures: `{name: figure}`; each is logged as `<folder>/<name>.png`.
        folder: Artifact folder. Default: `"plots"`.
    """
    for name, figure in figures.items():
        mlflow.log_figure(figure, f"{folder}/{name}.png")
        plt.close(figure)


def local_dataset(frame: pd.DataFrame, path: str | os.PathLike, name: str) -> PandasDataset:
    """An `mlflow.data` pandas dataset whose source is a local file or folder.

    Naming the source type avoids MLflow's warning that a plain path "can be interpreted in multiple ways"
    (mlflow/mlflow#9702), printed on every run otherwise.

    Args:
        frame: The rows to describe (MLflow logs their schema, profile and digest).
        path: Where they were read from, or a description of how they were made.
        name: The dataset's name in the MLflow UI.

    Returns:
        A `PandasDataset` for `mlflow.log_input`.
    """
    return mlflow.data.from_pandas(frame, source=LocalArtifactDatasetSource(str(path)), name=name)


def log_table(frame: pd.DataFrame, artifact_file: str) -> None:
    """Log a pandas DataFrame as a CSV artifact.

    Args:
        frame: The table.
        artifact_file: Artifact path, e.g. `tables/errors.csv`.
    """
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / Path(artifact_file).name
        frame.to_csv(path, index=False)
        mlflow.log_artifact(str(path), str(Path(artifact_file).parent) if "/" in artifact_file else None)


def pip_requirements() -> list[str]:
    """Pinned requirements written next to logged models.

    Returns:
        `name==version` of each package a served model needs, as installed here.
    """
    from importlib.metadata import version

    packages = ("tensorflow", "keras", "mlflow", "pandas", "numpy", "scikit-learn")
    return [f"{name}=={version(name)}" for name in packages]


def project_code_paths() -> list[str]:
    """The folders of this project's packages, which every logged model carries (MLflow `code_paths`).

    A served model unpickles classes from `pipelines` and its `.keras` file names layers from
    `lstm_models` and `pipelines`; with the code inside the model it loads wherever its pip
    requirements are installed, not only where lstm-pipelines is.

    Returns:
        The folders of `pipelines` and `lstm_models`.
    """
    import lstm_models
    import pipelines

    return [str(Path(package.__file__).parent) for package in (pipelines, lstm_models)]


def log_serving_model(bundle: ServingBundle, task_name: str) -> str:
    """Log a pyfunc model (Keras model + preprocessing) to the active run.

    The model is logged from code (`served_model.py` names the bundle's serving class), not as a
    pickle, so loading it runs only this project's code, which the model carries.

    Args:
        bundle: A `ServingBundle` from the task.
        task_name: Stored in the model metadata so `predict` knows how to read inputs.

    Returns:
        The logged model's URI (`models:/m-...`).

    Raises:
        TypeError: The serving class is defined outside `pipelines` and `lstm_models`.
    """
    serving_class = type(bundle.python_model)
    if serving_class.__module__.split(".")[0] not in ("pipelines", "lstm_models"):
        raise TypeError(
            f"served model class {serving_class.__module__}.{serving_class.__qualname__}: it must be defined in "
            "pipelines or lstm_models, the code a logged model carries, or the model will not load elsewhere"
        )
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=str(Path(__file__).with_name("served_model.py")),
        model_config={"serving_class": f"{serving_class.__module__}:{serving_class.__qualname__}"},
        artifacts=bundle.artifacts,
        signature=bundle.signature,
        input_example=bundle.input_example,
        metadata={"task": task_name},
        pip_requirements=pip_requirements(),
        code_paths=project_code_paths(),
    )
    return info.model_uri


def register(model_uri: str, name: str, alias: str, tags: dict[str, Any]) -> ModelVersion:
    """Register a logged model, point `alias` at the new version and tag it.

    Args:
        model_uri: URI of a logged model.
        name: Registered model name (the task name by default).
        alias: Alias to move to this version (`champion`).
        tags: Version tags (study, trial, test metrics, baselines).

    Returns:
        The new `ModelVersion`.
    """
    version = mlflow.register_model(model_uri, name, tags={k: str(v) for k, v in tags.items()})
    MlflowClient().set_registered_model_alias(name, alias, version.version)
    logger.info("registered %s version %s as %s@%s", model_uri, version.version, name, alias)
    return version


@dataclasses.dataclass
class Registration:
    """A registered version and what the promotion gate made of it.

    Attributes:
        version: The new `ModelVersion`.
        alias: The alias the gate guards.
        promoted: Whether the alias now points at this version.
        forced: Whether `--force` promoted a version the gate refused.
        reason: The gate's checks, one line.
        card: The model card's artifact URI.
    """

    version: ModelVersion
    alias: str
    promoted: bool
    forced: bool
    reason: str
    card: str = ""

    @property
    def model_uri(self) -> str:
        """`models:/<name>@<alias>` when promoted, else the version's own `models:/<name>/<version>`."""
        name, number = self.version.name, self.version.version
        return f"models:/{name}@{self.alias}" if self.promoted else f"models:/{name}/{number}"

    def message(self) -> str:
        """What the command prints: the version, the gate's decision and its reason."""
        name, number = self.version.name, self.version.version
        if self.forced:
            verdict = f"promoted to {name}@{self.alias} by --force although the gate refused it"
        elif self.promoted:
            verdict = f"passed the gate: {name}@{self.alias} now points at it"
        else:
            verdict = f"did not pass the gate: registered without @{self.alias} (--force promotes it)"
        return f"registered {name} version {number}; {verdict}\n  gate: {self.reason}\n  use: {self.model_uri}"


def alias_metrics(name: str, alias: str) -> dict[str, float] | None:
    """The metrics of the run behind the version that holds `alias`, or None when no version does.

    Args:
        name: Registered model name.
        alias: The alias (`champion`).

    Returns:
        The run's metrics, or None.
    """
    client = MlflowClient()
    try:
        version = client.get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise
    run_id = _run_of(version)
    return dict(client.get_run(run_id).data.metrics) if run_id else None


def _run_of(version: ModelVersion) -> str | None:
    if version.run_id:
        return version.run_id
    model_id = getattr(version, "model_id", None)
    return mlflow.get_logged_model(model_id).source_run_id if model_id else None


def register_gated(
    model_uri: str,
    name: str,
    alias: str,
    tags: dict[str, Any],
    decision: GateDecision,
    task_name: str,
    force: bool = False,
) -> Registration:
    """Register a logged model; move `alias` to it only when the gate promotes it (or `force`); log its card.

    The version carries the tags `gate` (`passed`, `refused` or `forced`) and `gate_reason`; the model
    card (`model_card.md`, with the run's plots) is logged beside the model.

    Args:
        model_uri: URI of a logged model.
        name: Registered model name.
        alias: The alias the gate guards.
        tags: Version tags (study, trial, test metrics).
        decision: The task's `GateDecision`.
        task_name: The task, for the card's commands.
        force: Move the alias even when the gate refuses. Default: `False`.

    Returns:
        A `Registration`.
    """
    status = "passed" if decision.promote else ("forced" if force else "refused")
    all_tags = {**{k: str(v) for k, v in tags.items()}, "gate": status, "gate_reason": decision.reason[:4000]}
    version = mlflow.register_model(model_uri, name, tags=all_tags)
    promoted = decision.promote or force
    if promoted:
        MlflowClient().set_registered_model_alias(name, alias, version.version)
    registration = Registration(version, alias, promoted, force and not decision.promote, decision.reason)
    logger.info("registered %s version %s (gate %s)", name, version.version, status)
    registration.card = log_model_card(registration, model_uri, task_name)
    return registration


def log_model_card(registration: Registration, model_uri: str, task_name: str) -> str:
    """Write `model_card.md` (and the run's plots beside it) into the logged model's artifacts.

    Args:
        registration: The registered version and the gate's decision.
        model_uri: The logged model's URI (`models:/m-...`).
        task_name: The task.

    Returns:
        The card's artifact URI.
    """
    client = MlflowClient()
    version = registration.version
    run_id = _run_of(version) or ""
    run = client.get_run(run_id) if run_id else None
    metrics = {k: v for k, v in (run.data.metrics if run else {}).items() if k.startswith(("val_", "test_"))}
    gate_line = registration.message().split("\n")[0].split("; ", 1)[-1] + f". Checks: {registration.reason}."
    card = model_card.CardInputs(
        name=version.name,
        version=str(version.version),
        task=task_name,
        model_uri=model_uri,
        run_id=run_id,
        tracking_uri=redact(tracking_uri()),
        gate=gate_line,
        metrics=metrics,
        summary=(run.data.tags.get("summary", "") if run else ""),
    )
    with tempfile.TemporaryDirectory() as folder, tempfile.TemporaryDirectory() as scratch:
        if run is not None:
            card.dataset = _dataset_facts(run)
            artifacts = {item.path for item in client.list_artifacts(run_id)}
            if "config.yaml" in artifacts:
                card.config_yaml = mlflow.artifacts.load_text(f"runs:/{run_id}/config.yaml")
            if "tables" in artifacts:
                tables = {item.path for item in client.list_artifacts(run_id, "tables")}
                for table in ("data_summary", "intervals"):
                    path = f"tables/{table}.csv"
                    if path in tables:
                        card.tables[table] = pd.read_csv(client.download_artifacts(run_id, path, scratch))
            if "plots" in artifacts:
                client.download_artifacts(run_id, "plots", folder)
                card.plots = sorted(f"plots/{p.name}" for p in (Path(folder) / "plots").glob("*.png"))
        (Path(folder) / model_card.CARD_FILE).write_text(model_card.render(card), encoding="utf-8")
        model_id = model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None
        if model_id:
            client.log_model_artifacts(model_id, folder)
            where = f"{client.get_logged_model(model_id).artifact_location}/{model_card.CARD_FILE}"
        else:
            client.log_artifacts(run_id, folder, "model")
            where = f"runs:/{run_id}/model/{model_card.CARD_FILE}"
    client.update_model_version(version.name, version.version, description=f"{gate_line}\n\nModel card: {where}")
    return where


def _dataset_facts(run: Any) -> dict[str, Any]:
    """Name, digest, source and rows of the run's first logged dataset (a tuning trial: its parent's)."""
    inputs = run.inputs.dataset_inputs if run.inputs else []
    if not inputs and run.data.tags.get("mlflow.parentRunId"):
        parent = MlflowClient().get_run(run.data.tags["mlflow.parentRunId"])
        inputs = parent.inputs.dataset_inputs if parent.inputs else []
    if not inputs:
        return {}
    dataset = inputs[0].dataset
    facts = {"name": dataset.name, "digest": dataset.digest}
    try:
        facts["source"] = json.loads(dataset.source).get("uri", dataset.source)
    except (TypeError, ValueError):
        facts["source"] = dataset.source
    try:
        facts["rows"] = json.loads(dataset.profile or "{}").get("num_rows")
    except ValueError:
        pass
    return {key: value for key, value in facts.items() if value is not None}


def run_is_live(run_id: str) -> bool:
    """Whether the tracking store holds a run that is not deleted.

    Args:
        run_id: The MLflow run id.

    Returns:
        True when the run exists and is not deleted.
    """
    try:
        run = MlflowClient().get_run(run_id)
    except mlflow.exceptions.MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return False
        raise
    return run.info.lifecycle_stage != "deleted"


def model_exists(model_uri: str) -> bool:
    """Whether the tracking store holds a logged model (a study may outlive its store).

    Args:
        model_uri: The logged model's URI.

    Returns:
        True when the model is in the store.
    """
    try:
        mlflow.models.get_model_info(model_uri)
    except mlflow.exceptions.MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return False
        raise
    return True


def run_status(run_id: str) -> str:
    """The status of a run.

    Args:
        run_id: The MLflow run id.

    Returns:
        `RUNNING`, `FINISHED`, `FAILED` or `KILLED`.
    """
    return MlflowClient().get_run(run_id).info.status


def mark_lost(run_id: str, reason: str) -> None:
    """Close the run of a trial whose worker died: FAILED, with the reason as a tag.

    Args:
        run_id: The trial's MLflow run id.
        reason: Logged as the run's `error` tag.
    """
    client = MlflowClient()
    client.set_tag(run_id, "optuna.state", "FAIL")
    client.set_tag(run_id, "error", reason)
    client.set_terminated(run_id, status="FAILED")


def _causes(error: BaseException) -> list[BaseException]:
    chain, seen = [], set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        chain.append(error)
        error = error.__cause__ or error.__context__
    return chain


def store_failure(error: BaseException) -> PipelineError | None:
    """A clear error for a failure of the tracking store that every later run would meet too.

    A full disk under the artifacts (`ENOSPC`, `EDQUOT` anywhere in the error's causes), or a
    tracking server or database that no longer answers (checked with the same 5 s probe as at
    start-up, only for an MLflow or OS error against a remote store). Any other error is the run's own.

    Args:
        error: An error raised while logging or training.

    Returns:
        An `ArtifactStoreFull` naming the path and where the run's artifacts go, a
        `TrackingUnavailable` naming the server or database, or None.
    """
    if isinstance(error, (TrackingUnavailable, ArtifactStoreFull)):
        return error
    full = next((e for e in _causes(error) if isinstance(e, OSError) and e.errno in _NO_SPACE), None)
    if full is not None:
        path = full.filename2 or full.filename  # a copy's second name is the file it was writing
        what = f"writing {path}" if path else "writing MLflow artifacts"
        active = mlflow.active_run()
        where = f"the run's artifacts go to {active.info.artifact_uri}; " if active is not None else ""
        return ArtifactStoreFull(
            f"no space left on device {what} ({where}temporary files to {tempfile.gettempdir()}): free space there "
            "or give the experiment another artifact location, then rerun the same command to resume"
        )
    if not isinstance(error, (mlflow.exceptions.MlflowException, OSError)):
        return None
    uri = tracking_uri()
    if uri.startswith(("http://", "https://")):
        problem, what = _server_problem(uri), f"MLflow tracking server {uri}"
    elif uri.startswith(("postgresql", "mysql")):
        problem, what = _database_problem(uri), f"MLflow tracking database {redact(uri)}"
    else:
        return None
    if problem is None:
        return None
    return TrackingUnavailable(
        f"{what} stopped answering ({problem}); what was logged before stays in it: start it again, then rerun "
        "the same command to resume"
    )


def stop_retrying() -> None:
    """Make this process's later MLflow HTTP requests fail at once.

    MLflow retries a request to a server that does not answer for about two minutes (its
    `MLFLOW_HTTP_REQUEST_MAX_RETRIES` and backoff); once the server is known to be down, closing
    runs on the way out would wait that long for every request.
    """
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = "5"
