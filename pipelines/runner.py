"""One training run of any task, logged to the active MLflow run.

The unit that `train` and every tuning trial share.
"""

import dataclasses
import logging
import tempfile
from collections.abc import Sequence
from typing import Any

import keras
import mlflow

from pipelines import tracking, training
from pipelines.tasks import Evaluation, Task

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class RunResult:
    """What a finished run produced."""

    run_id: str
    model_uri: str
    evaluation: Evaluation
    epochs: int  # summed over the members of an ensemble (`train.ensemble_size`)


@dataclasses.dataclass
class _Member:
    model: keras.Model
    data: Any
    epochs: int


def _train_member(
    task: Task, config: Any, source: Any, index: int, callbacks: Sequence[keras.callbacks.Callback]
) -> _Member:
    """Train member `index` of the run's ensemble (the only one by default) with seed `seed + index`.

    The first member logs its epoch curves under the plain metric names, which pruning and the
    MLflow UI follow, and alone gets `callbacks`; member `i > 0` logs under `member_<i>/`.
    """
    member_config = dataclasses.replace(config, seed=config.seed + index)
    keras.utils.set_random_seed(member_config.seed)
    data = task.prepare(member_config, source)
    with training.distribution_scope(config):
        model = task.build_model(member_config, data)
    epoch_logger = tracking.EpochMetricsLogger(prefix=f"member_{index}/" if index else "")
    history = training.fit(model, data, member_config, callbacks=[epoch_logger, *(callbacks if index == 0 else ())])
    if config.train.ensemble_size > 1:
        mlflow.log_metric(f"member_{index}/epochs", len(history.epoch))
    return _Member(model, data, len(history.epoch))


def train_and_log(
    task: Task, config: Any, source: Any, callbacks: Sequence[keras.callbacks.Callback] = ()
) -> RunResult:
    """Prepare data, train, evaluate and log metrics, plots and the serving model.

    With `train.ensemble_size` > 1 the members train one after another and the evaluated, logged
    model averages their outputs (`training.average_ensemble`).

    Args:
        task: A `Task`.
        config: The resolved config of this run.
        source: Raw data from `task.load_source`.
        callbacks: Extra Keras callbacks (e.g. Optuna pruning). Default: `()`.

    Returns:
        A `RunResult`.
    """
    keras.backend.clear_session()
    tracking.log_config(config)
    trained = [_train_member(task, config, source, index, callbacks) for index in range(config.train.ensemble_size)]
    data = trained[0].data
    epochs = [member.epochs for member in trained]
    model = training.average_ensemble([member.model for member in trained])
    # One step after the last epoch: a name shared with an epoch metric (`val_accuracy`) then shows
    # the evaluated model's value (best weights restored) as its latest, not the last epoch's.
    evaluation, model_uri = evaluate_and_log_model(task, model, data, config, step=epochs[0])
    return RunResult(mlflow.active_run().info.run_id, model_uri, evaluation, sum(epochs))


def evaluate_and_log_model(
    task: Task, model: keras.Model, data: Any, config: Any, step: int = 0
) -> tuple[Evaluation, str]:
    """Evaluate a trained model and log its metrics, plots, tables and serving model to the active run.

    Args:
        task: A `Task`.
        model: The trained (or adapted) Keras model.
        data: The prepared splits it is evaluated on.
        config: The run's config.
        step: The MLflow step of the evaluation metrics. Default: `0`.

    Returns:
        `(Evaluation, model URI)`.
    """
    evaluation = task.evaluate(model, data, config)
    mlflow.log_metrics(evaluation.metrics, step=step)
    tracking.log_figures(evaluation.figures)
    for name, frame in evaluation.tables.items():
        tracking.log_table(frame, f"tables/{name}.csv")
    if evaluation.summary:
        mlflow.set_tag("summary", evaluation.summary)
        logger.info(evaluation.summary)
    with tempfile.TemporaryDirectory() as workdir:
        bundle = task.serving_bundle(model, data, workdir)
        model_uri = tracking.log_serving_model(bundle, task.name)
    mlflow.set_tag("model_uri", model_uri)
    return evaluation, model_uri
