"""One training run of any task, logged to the active MLflow run: the unit `train` and every
tuning trial share."""

import dataclasses
import logging
import tempfile

import keras
import mlflow

from pipelines import tracking, training

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class RunResult:
    """What a finished run produced."""

    run_id: str
    model_uri: str
    evaluation: object
    epochs: int


def train_and_log(task, config, source, callbacks=()):
    """Prepare data, train, evaluate and log metrics, plots and the serving model.

    Args:
        task: A `Task`.
        config: The resolved config of this run.
        source: Raw data from `task.load_source`.
        callbacks: Extra Keras callbacks (e.g. Optuna pruning).

    Returns:
        A `RunResult`.
    """
    keras.backend.clear_session()
    keras.utils.set_random_seed(config.seed)
    tracking.log_config(config)
    data = task.prepare(config, source)
    with training.distribution_scope(config):
        model = task.build_model(config, data)
    history = training.fit(model, data, config, callbacks=[tracking.EpochMetricsLogger(), *callbacks])
    evaluation = task.evaluate(model, data, config)
    # One step after the last epoch: a name shared with an epoch metric (`val_accuracy`) then shows
    # the evaluated model's value (best weights restored) as its latest, not the last epoch's.
    mlflow.log_metrics(evaluation.metrics, step=len(history.epoch))
    tracking.log_figures(evaluation.figures)
    for name, frame in evaluation.tables.items():
        tracking.log_table(frame, f"tables/{name}.csv")
    if evaluation.summary:
        mlflow.set_tag("summary", evaluation.summary)
        logger.info(evaluation.summary)
    with tempfile.TemporaryDirectory() as workdir:
        bundle = task.serving_bundle(model, data, workdir)
        model_uri = tracking.log_serving_model(bundle, task.name)
    run_id = mlflow.active_run().info.run_id
    mlflow.set_tag("model_uri", model_uri)
    return RunResult(run_id, model_uri, evaluation, len(history.epoch))
