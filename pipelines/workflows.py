"""The user-facing commands (train, tune, register, predict, export, stream, adapt), independent of the CLI."""

import dataclasses
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import mlflow
import yaml

from pipelines import tracking, tuning
from pipelines.config import CONF_DIR, load_config, to_dict, with_values
from pipelines.errors import PipelineError
from pipelines.runner import RunResult, evaluate_and_log_model, train_and_log
from pipelines.tasks import Task, get_task

logger = logging.getLogger(__name__)


def load_task_config(task: Task, config_path: str | Path | None = None, overrides: Iterable[str] = ()) -> Any:
    """The task's config: `--config` file, else `conf/<task>.yaml` if present, plus overrides.

    Args:
        task: The task.
        config_path: `--config`. Default: `conf/<task>.yaml`, or the built-in defaults when it is missing.
        overrides: `--set KEY=VALUE` strings.

    Returns:
        The validated config.
    """
    if config_path is None and (CONF_DIR / f"{task.name}.yaml").is_file():
        config_path = CONF_DIR / f"{task.name}.yaml"
    elif config_path is None:
        # conf/ sits beside the packages in the source tree; a non-editable install leaves it behind.
        logger.warning(
            "no %s: using the built-in defaults of %s, which differ from the shipped config; "
            "pass --config, or install from the source tree with `pip install -e .`",
            CONF_DIR / f"{task.name}.yaml",
            task.config_class.__name__,
        )
    return load_config(task.config_class, config_path, overrides)


def _experiment(task: Task, config: Any) -> str:
    return tracking.setup(config.tracking.experiment or task.name)


def train(task_name: str, config_path: str | Path | None = None, overrides: Iterable[str] = ()) -> RunResult:
    """One training run, logged to MLflow.

    Args:
        task_name: A registered task.
        config_path: `--config`. Default: `conf/<task>.yaml`.
        overrides: `--set KEY=VALUE` strings.

    Returns:
        A `RunResult` (run id, model URI, evaluation).
    """
    task = get_task(task_name)
    config = load_task_config(task, config_path, overrides)
    _experiment(task, config)
    source = task.load_source(config)
    with mlflow.start_run(run_name=f"train-{config.model.variant}", tags={"task": task.name}):
        mlflow.log_input(task.dataset_for_logging(config, source), context="training")
        return train_and_log(task, config, source)


def _open_storage(config: Any, storage: str | None) -> Any:
    search = config.search
    return tuning.open_storage(storage, search.heartbeat_interval, search.grace_period, search.max_retry)


def tune(
    task_name: str,
    trials: int | None = None,
    config_path: str | Path | None = None,
    overrides: Iterable[str] = (),
    timeout: float | None = None,
    study: str | None = None,
    storage: str | None = None,
    register: bool = False,
    force: bool = False,
) -> tuning.TuneResult:
    """Run or resume an Optuna study; optionally register the best model.

    The storage and the tracking server are opened first, so an unreachable one fails within seconds,
    before any data is read or model trained.

    Args:
        task_name: A registered task.
        trials: Finished trials the study should hold. Default: `search.trials`.
        config_path: `--config`. Default: `conf/<task>.yaml`.
        overrides: `--set KEY=VALUE` strings.
        timeout: Seconds after which no new trial starts. Default: `search.timeout`.
        study: Study name. Default: the task name.
        storage: Optuna storage URL or journal file. Default: `sqlite:///optuna.db`.
        register: Register the best model; `tracking.alias` moves to it when it passes the task's gate.
            Default: `False`.
        force: With `register`, move the alias even when the gate refuses. Default: `False`.

    Returns:
        A `TuneResult` (`model_version` is a `tracking.Registration` when registered).
    """
    task = get_task(task_name)
    config = load_task_config(task, config_path, overrides)
    given = {"search.trials": trials, "search.timeout": timeout}
    config = with_values(config, {key: value for key, value in given.items() if value is not None})  # validated
    tuning.check_direction(task, config)
    storage_handle = _open_storage(config, storage)
    _experiment(task, config)
    source = task.load_source(config)
    result = tuning.tune(
        task,
        config,
        source,
        config.search.trials,
        config.search.timeout,
        study,
        storage_handle,
        on_parent=_log_input(task, config, source),
    )
    if register:
        result.model_version = register_best(task, config, result.study_name, storage_handle, force)
    return result


def _log_input(task: Task, config: Any, source: Any) -> Callable[[], None]:
    def log() -> None:
        mlflow.log_input(task.dataset_for_logging(config, source), context="training")

    return log


def register_best(task: Task, config: Any, study_name: str, storage: Any, force: bool = False) -> Any:
    """Register the study's best model as `<task>`; move the alias (`champion`) to it when it passes the gate.

    The gate is the task's (`Task.gate`: beats its baseline on validation, and for some tasks the
    current champion); a refused version is registered without the alias and tagged with the reason.

    Args:
        task: The task.
        config: The config (its `tracking` group).
        study_name: The study.
        storage: An opened Optuna storage.
        force: Move the alias even when the gate refuses. Default: `False`.

    Returns:
        A `tracking.Registration`.
    """
    best = tuning.best_trial(study_name, storage)
    model_uri = best.user_attrs.get("model_uri")
    if not model_uri:
        raise PipelineError(f"best trial {best.number} of study {study_name!r} has no logged model")
    if not tracking.model_exists(model_uri):
        raise PipelineError(
            f"best trial {best.number} of study {study_name!r} logged its model {model_uri} to another MLflow "
            f"tracking store than {tracking.redact(tracking.tracking_uri())} (or it was deleted); set "
            "MLFLOW_TRACKING_URI to that store, or tune under a new --study"
        )
    tags = {"study": study_name, "trial": best.number, "objective": f"{task.objective}={best.value:.6g}"}
    tags.update({k: f"{v:.6g}" for k, v in best.user_attrs.get("metrics", {}).items() if k.startswith("test_")})
    name = config.tracking.registered_model or task.name
    champion = tracking.alias_metrics(name, config.tracking.alias)
    decision = task.gate(best.user_attrs.get("metrics", {}), config, champion)
    return tracking.register_gated(model_uri, name, config.tracking.alias, tags, decision, task.name, force)


def register(
    task_name: str,
    study: str | None = None,
    storage: str | None = None,
    config_path: str | Path | None = None,
    overrides: Iterable[str] = (),
    force: bool = False,
) -> Any:
    """CLI `register`: register the best model of an existing study.

    Args:
        task_name: A registered task.
        study: Study name. Default: the task name.
        storage: Optuna storage URL or journal file. Default: `sqlite:///optuna.db`.
        config_path: `--config`. Default: `conf/<task>.yaml`.
        overrides: `--set KEY=VALUE` strings.
        force: Move the alias even when the gate refuses. Default: `False`.

    Returns:
        A `tracking.Registration`.
    """
    task = get_task(task_name)
    config = load_task_config(task, config_path, overrides)
    _experiment(task, config)
    return register_best(task, config, study or task.name, _open_storage(config, storage), force)


def _load_served_model(model_uri: str) -> mlflow.pyfunc.PyFuncModel:
    if model_uri.startswith(("models:/", "runs:/")):  # resolved through the tracking store
        tracking.check_store_exists()
    tracking.setup_uri_only()
    try:
        return mlflow.pyfunc.load_model(model_uri)
    except Exception as error:
        store = tracking.redact(tracking.tracking_uri())
        raise PipelineError(f"cannot load model {model_uri} (tracking store {store}): {error}") from None


def _task_of(model: mlflow.pyfunc.PyFuncModel, model_uri: str) -> str:
    """The task name a model logged by lstm-pipelines carries; a PipelineError for any other model."""
    task_name = (model.metadata.metadata or {}).get("task")
    if task_name is None:
        raise PipelineError(f"model {model_uri} was not logged by lstm-pipelines (no 'task' in its metadata)")
    return task_name


def predict(model_uri: str, input_path: str | Path, output_path: str | Path, warmup: int | None = None) -> Any:
    """Run a registered or logged model on a user's input file (or folder) and write a CSV (or a folder of them).

    Args:
        model_uri: A model URI (`models:/<name>@champion`, `runs:/...`, `models:/m-...`).
        input_path: The input file or folder.
        output_path: The CSV to write; a folder when the task reads a folder as one request per file
            (`read_inputs` returns `{relative path: request}`), written in the same layout.
        warmup: Rows an anomaly model calibrates a series it never saw on (the model's `warmup`
            parameter). Default: `None`, the model's default.

    Returns:
        The predictions as a DataFrame (for a folder, `{relative path: DataFrame}`).
    """
    if Path(output_path).is_dir() and not Path(input_path).is_dir():  # checked before the model runs
        raise PipelineError(f"cannot write predictions to {output_path}: it is a folder, not a file")
    model = _load_served_model(model_uri)
    task_name = _task_of(model, model_uri)
    extra = {}  # MLflow's `params`, only for a model that takes them
    if warmup is not None:
        signature = model.metadata.signature
        names = [] if signature is None or signature.params is None else [p.name for p in signature.params.params]
        if "warmup" not in names:
            raise PipelineError(f"--warmup: model {model_uri} ({task_name}) takes no warm-up")
        extra = {"params": {"warmup": warmup}}
    inputs = get_task(task_name).read_inputs(input_path, model.unwrap_python_model())
    if not isinstance(inputs, dict):
        predictions = model.predict(inputs, **extra)
        _write_csv(predictions, Path(output_path))
        return predictions
    if Path(output_path).is_file():
        raise PipelineError(f"cannot write predictions of folder {input_path} to {output_path}: it is a file")
    written = {}
    for relative, request in inputs.items():
        written[relative] = model.predict(request, **extra)
        _write_csv(written[relative], Path(output_path) / relative)
    return written


def _write_csv(predictions: Any, path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        predictions.to_csv(path, index=False)
    except OSError as error:
        raise PipelineError(f"cannot write predictions to {path}: {error.strerror or error}") from None


@dataclasses.dataclass
class StreamResult:
    """What `stream` produced: the detections (None without an input), how the model ran over the
    recordings (`"streaming"` or `"sliding window"`), and the streaming export (None without one)."""

    detections: Any
    mode: str
    export: Any = None


def stream(
    model_uri: str,
    input_path: str | Path | None = None,
    output_path: str | Path | None = None,
    config_path: str | Path | None = None,
    overrides: Iterable[str] = (),
    export_dir: str | Path | None = None,
) -> StreamResult:
    """Spot speech commands in long recordings with a logged or registered speech model; optionally export its
    streaming form.

    The config is read (and a bad override refused) before the model is loaded; only its `spotting`
    group is used (`speech_commands.spotting` describes the detection rule).

    Args:
        model_uri: A speech_commands model URI, e.g. `models:/speech_commands@champion`.
        input_path: A WAV file of any length, or a folder of them (searched recursively). Default: no spotting.
        output_path: The detections CSV to write (`file, word, start, end, confidence`); required with
            `input_path`.
        config_path: `--config`. Default: `conf/speech_commands.yaml`.
        overrides: `--set KEY=VALUE` strings, e.g. `spotting.threshold=0.7`.
        export_dir: Write the streaming model (SavedModel, TFLite) here, checked against Keras. Default: not.

    Returns:
        A `StreamResult`.

    Raises:
        PipelineError: The model is not a speech_commands model, `input_path` comes without
            `output_path`, or the CSV cannot be written; `DataError` / `ConfigError` as `spotting.spot`
            and `streaming_model.build_streaming_model` raise them.
    """
    import numpy as np

    from pipelines.speech_commands import spotting, streaming_model

    if (input_path is None) != (output_path is None):
        raise PipelineError("stream: an input needs an output CSV, and an output CSV an input")
    task = get_task("speech_commands")
    config = load_task_config(task, config_path, overrides)
    model = _load_served_model(model_uri)
    if _task_of(model, model_uri) != task.name:
        raise PipelineError(f"model {model_uri} is a {_task_of(model, model_uri)} model, not {task.name}")
    served = model.unwrap_python_model()
    keras_model, settings = served.keras_model, config.spotting
    mode = "streaming" if streaming_model.can_stream(keras_model) else "sliding window"
    exported = None
    if export_dir is not None:
        streaming = streaming_model.build_streaming_model(keras_model, settings.hop_seconds)
        sample = np.concatenate(list(served.sample_inputs[:2]))
        exported = streaming_model.export_streaming(streaming, export_dir, sample, served.class_names)
    if input_path is None:
        return StreamResult(None, mode, exported)
    detections = spotting.spot(keras_model, served.class_names, served.sample_rate, input_path, settings)
    try:
        Path(output_path).parent.mkdir(parents=True, exist_ok=True)
        detections.to_csv(output_path, index=False)
    except OSError as error:
        raise PipelineError(f"cannot write detections to {output_path}: {error.strerror or error}") from None
    return StreamResult(detections, mode, exported)


@dataclasses.dataclass
class AdaptResult:
    """What `adapt` produced: the new run, its model, the adaptation's metrics and table, the
    evaluation on the config's test split, and the registered version (or None)."""

    run_id: str
    model_uri: str
    metrics: dict
    table: object
    evaluation: object
    model_version: object = None


def adapt(
    task_name: str,
    model_uri: str,
    input_path: str | Path,
    settings: Any,
    config_path: str | Path | None = None,
    overrides: Iterable[str] = (),
    register_as: str | None = None,
) -> AdaptResult:
    """Adapt a logged or registered model to a user's unlabelled inputs and log the result as a new run.

    The config names the labelled data the model keeps rehearsing (its training split) and is
    evaluated on (its test split), so it should be the one the model was trained with.

    Args:
        task_name: The model's task (only `speech_commands` adapts).
        model_uri: The model to adapt, e.g. `models:/speech_commands@champion`.
        input_path: A file or folder of the new, unlabelled inputs.
        settings: The task's adaptation settings (`speech_commands.adaptation.AdaptationSettings`).
        config_path: `--config`. Default: `conf/<task>.yaml`.
        overrides: `--set KEY=VALUE` overrides.
        register_as: Register the adapted model under this name with `tracking.alias`. Default: not.

    Returns:
        An `AdaptResult`.
    """
    task = get_task(task_name)
    if not task.adapts:
        raise PipelineError(f"task {task.name!r} has no adaptation; only speech_commands has")
    config = load_task_config(task, config_path, overrides)
    if register_as is not None:  # the name is checked before anything runs
        config = with_values(config, {"tracking.registered_model": register_as})
    model = _load_served_model(model_uri)
    if _task_of(model, model_uri) != task.name:
        raise PipelineError(f"model {model_uri} is a {_task_of(model, model_uri)} model, not {task.name}")
    served = model.unwrap_python_model()
    inputs = task.read_inputs(input_path, served)
    _experiment(task, config)
    source = task.load_source(config)
    data = task.prepare(config, source)
    task.check_adaptable(served, inputs, data, config, settings)
    with mlflow.start_run(run_name="adapt", tags={"task": task.name, "adapted_from": model_uri}):
        mlflow.log_params({"adapt.model": model_uri, "adapt.input": str(input_path)})
        mlflow.log_params({f"adapt.{key}": value for key, value in dataclasses.asdict(settings).items()})
        mlflow.log_text(yaml.safe_dump(to_dict(config), sort_keys=False), "config.yaml")
        mlflow.log_input(task.dataset_for_logging(config, source), context="training")
        metrics, table = task.adapt(served, inputs, data, config, settings)
        mlflow.log_metrics(metrics)
        tracking.log_table(table, "tables/adaptation.csv")
        evaluation, adapted_uri = evaluate_and_log_model(task, served.keras_model, data, config)
        run_id = mlflow.active_run().info.run_id
    version = None
    if register_as is not None:
        tags = {"adapted_from": model_uri, "input": str(input_path), "run": run_id}
        tags.update({k: f"{v:.6g}" for k, v in evaluation.metrics.items() if k.startswith("test_")})
        version = tracking.register(adapted_uri, config.tracking.registered_model, config.tracking.alias, tags)
    return AdaptResult(run_id, adapted_uri, metrics, table, evaluation, version)


def export(model_uri: str, fmt: str, output_dir: str | Path, int8: bool = False) -> Any:
    """Export the Keras model inside a served model and check it against the original.

    Args:
        model_uri: A model URI.
        fmt: `keras`, `savedmodel`, `tflite` or `onnx`.
        output_dir: The folder to write.
        int8: TFLite dynamic-range int8 quantisation. Default: `False`.

    Returns:
        An `ExportResult` (path, max abs difference, size).
    """
    from pipelines.export import export_model

    model = _load_served_model(model_uri)
    _task_of(model, model_uri)  # any other pyfunc holds no keras_model and sample_inputs
    served = model.unwrap_python_model()
    return export_model(served.keras_model, fmt, output_dir, served.sample_inputs, int8=int8)
