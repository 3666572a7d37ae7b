"""One contract for every registered task, run through the `Task` interface on tiny data.

Each task: its config builds and refuses an unknown key in every group; it prepares its data, builds
a model, trains one epoch, evaluates (the tuner's objective and the headline metric are finite
numbers), and its logged model answers the request MLflow stored with it. A new task in
`pipelines.tasks.TASK_MODULES` joins this suite by adding its tiny data to `TINY_DATA`.
"""

import dataclasses
import math

import mlflow
import numpy as np
import pytest

from pipelines import runner, training
from pipelines.config import GROUPS, load_config
from pipelines.errors import ConfigError
from pipelines.tasks import ADAPTING_TASKS, TASK_MODULES, GateDecision, Task, get_task
from tests.helpers import serve_logged_example

TINY_TRAINING = ["model.units=4", "train.epochs=1", "train.verbose=0", "train.batch_size=16", "train.ensemble_size=1"]


def _stock_data(root):
    from pipelines.stock_forecasting.synthetic import synthetic_ohlcv, write_csv

    root.mkdir(parents=True)
    path = write_csv(synthetic_ohlcv(300), root / "PRICES.csv")
    return [f"data.path={path}", "features.window=10", "forecast.horizon=3", "data.eval_folds=1"]


def _anomaly_data(root):
    from pipelines.anomaly_detection.synthetic import write_synthetic_nab

    path = write_synthetic_nab(root, rows=400)
    return [f"data.path={path}", "features.window=8", "data.train_fraction=0.3", "data.train_max_rows=null"]


def _speech_data(root):
    from tests.speech_commands.audio_trees import speech_commands_tree

    path = speech_commands_tree(root, speakers=4)
    return [f"data.path={path}", "features.num_mel_bins=16"]


TINY_DATA = {"stock_forecasting": _stock_data, "anomaly_detection": _anomaly_data, "speech_commands": _speech_data}


def test_every_registered_task_has_tiny_data_here():
    assert set(TINY_DATA) == set(TASK_MODULES)


def test_the_tasks_that_adapt_are_the_ones_the_cli_offers():
    assert tuple(name for name in TASK_MODULES if get_task(name).adapts) == ADAPTING_TASKS


@pytest.mark.parametrize("name", sorted(TASK_MODULES))
def test_the_config_refuses_an_unknown_key_in_every_group(name):
    task = get_task(name)
    groups = [field.name for field in dataclasses.fields(task.config_class) if field.name != "seed"]
    assert groups[: len(GROUPS)] == list(GROUPS)
    for group in groups:
        with pytest.raises(ConfigError, match=rf"^{group}\.no_such_key: unknown key"):
            load_config(task.config_class, None, [f"{group}.no_such_key=1"])


@pytest.mark.parametrize("name", sorted(TASK_MODULES))
def test_prepare_build_train_evaluate_and_serve(name, tmp_path):
    task = get_task(name)
    assert isinstance(task, Task) and task.name == name
    config = load_config(task.config_class, None, [*TINY_DATA[name](tmp_path / "data"), *TINY_TRAINING])
    source = task.load_source(config)
    data = task.prepare(config, source)
    for split in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        assert len(getattr(data, split)) > 0, split
    assert tuple(data.x_train.shape[1:]) == tuple(data.input_shape)

    model = task.build_model(config, data)
    history = training.fit(model, data, config)
    assert len(history.history["loss"]) == 1 and math.isfinite(history.history["loss"][0])

    mlflow.set_experiment(name)
    with mlflow.start_run():
        evaluation, model_uri = runner.evaluate_and_log_model(task, model, data, config)
    assert math.isfinite(evaluation.metrics[task.objective]), task.objective
    headline = evaluation.headline
    assert headline["metric"] in evaluation.metrics and math.isfinite(headline["value"]), headline
    # The promotion gate reads metrics the evaluation logged: every check has a number and a bar.
    decision = task.gate(evaluation.metrics, config, None)
    assert isinstance(decision, GateDecision) and decision.checks
    for check in decision.checks:
        assert check.metric in evaluation.metrics and math.isfinite(check.value), check
    assert any(check.threshold is not None for check in decision.checks), decision.reason

    request, answer = serve_logged_example(model_uri)
    assert len(answer) > 0
    assert np.isfinite(np.asarray(answer.select_dtypes("number"), dtype="float64")).all()
    again = mlflow.pyfunc.load_model(model_uri).predict(request)
    assert answer.equals(again), "the served model must answer the same request the same way"
