"""What a task provides to the shared engine, and the registry of tasks by name."""

import dataclasses
import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.errors import ConfigError

if TYPE_CHECKING:  # Keras loads TensorFlow: the CLI imports this module to list the tasks
    import keras
    import mlflow.data

TASK_MODULES = {
    "stock_forecasting": "pipelines.stock_forecasting.task",
    "speech_commands": "pipelines.speech_commands.task",
    "anomaly_detection": "pipelines.anomaly_detection.task",
}
# The tasks whose `adapts` is true, named here so that the CLI offers `adapt` for them alone without
# importing them (a task module loads Keras); tests/test_task_contract.py checks the two agree.
ADAPTING_TASKS = ("speech_commands",)


@dataclasses.dataclass
class Evaluation:
    """What a task's evaluation returns: split-prefixed metrics, figures, tables and version tags."""

    metrics: dict[str, float]
    figures: dict[str, Any] = dataclasses.field(default_factory=dict)
    tables: dict[str, Any] = dataclasses.field(default_factory=dict)
    summary: str = ""
    headline: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class GateCheck:
    """One condition of a promotion gate, with MLflow `MetricThreshold` semantics.

    `value` must beat `threshold` (above it when `greater_is_better`, below it otherwise; equal is
    enough with `or_equal`); a check without a threshold (no champion yet) passes.
    """

    metric: str
    value: float
    threshold: float | None
    greater_is_better: bool
    against: str
    or_equal: bool = False

    @property
    def passed(self) -> bool:
        """Whether the value beats the threshold (`NaN` never does)."""
        if self.threshold is None:
            return True
        if self.or_equal and self.value == self.threshold:
            return True
        return self.value > self.threshold if self.greater_is_better else self.value < self.threshold

    def describe(self) -> str:
        """One line: `val_u2 = 1.004, needs < 1 (naive forecast): fails`."""
        if self.threshold is None:
            return f"{self.metric} = {self.value:.4g}: no {self.against} to compare with"
        sign = (">" if self.greater_is_better else "<") + ("=" if self.or_equal else "")
        verdict = "passes" if self.passed else "fails"
        return f"{self.metric} = {self.value:.4g}, needs {sign} {self.threshold:.4g} ({self.against}): {verdict}"


@dataclasses.dataclass
class GateDecision:
    """Whether a candidate may take the alias: every check must pass."""

    checks: list[GateCheck]

    @property
    def promote(self) -> bool:
        """True when every check passes."""
        return all(check.passed for check in self.checks)

    @property
    def reason(self) -> str:
        """The checks, `; `-joined (the failing ones first when it is refused)."""
        ordered = sorted(self.checks, key=lambda check: check.passed) if not self.promote else self.checks
        return "; ".join(check.describe() for check in ordered) or "no checks"


def metric_check(
    metrics: dict[str, float],
    metric: str,
    threshold: float | None,
    greater_is_better: bool,
    against: str,
    or_equal: bool = False,
) -> GateCheck:
    """A `GateCheck` of `metrics[metric]` (NaN when missing, which fails any threshold).

    Args:
        metrics: The candidate's metrics.
        metric: The metric's name.
        threshold: What it must beat; `None` passes (nothing to compare with).
        greater_is_better: Whether higher is better.
        against: What the threshold is, for the message.
        or_equal: Whether equal to the threshold passes. Default: `False`.

    Returns:
        The check.
    """
    value = float(metrics.get(metric, float("nan")))
    threshold = None if threshold is None else float(threshold)
    return GateCheck(metric, value, threshold, greater_is_better, against, or_equal)


@dataclasses.dataclass
class ServingBundle:
    """A pyfunc model with its preprocessing: `python_model`, local `artifacts` files, `signature`,
    and `input_example`: a real request (a few rows or clips of the task's data) that MLflow stores
    with the model and serves once at logging time to check it."""

    python_model: Any
    artifacts: dict[str, str]
    signature: Any
    input_example: Any = None


class Task:
    """Base class of a task. Subclasses set the class attributes and implement the methods.

    Attributes:
        name: Task name, also the MLflow experiment and registered model name.
        config_class: The task's config dataclass (`pipelines.config.make_config_class`).
        head: The `lstm_models` head the task uses.
        loss: Keras loss name.
        objective: Metric the tuner minimises (a key of `Evaluation.metrics`, e.g. `val_mase`).
            Always a loss or an error rate: the pruner watches the per-epoch `val_loss`, which only
            agrees with a minimised objective.
        adapts: Whether `adapt` can adapt the task's models to a user's unlabelled inputs
            (`check_adaptable` and `adapt` are implemented). Default: False.
    """

    name: str
    config_class: type
    head: str
    loss: str
    objective: str
    keras_metrics: tuple = ()
    direction = "minimize"
    adapts = False

    def load_source(self, config: Any) -> Any:
        """Read the raw data once (files, default data); returns anything `prepare` takes."""
        raise NotImplementedError

    def prepare(self, config: Any, source: Any) -> Any:
        """Turn the raw data into model-ready splits for this config (window length may vary).

        Returns:
            An object with `x_train, y_train, x_val, y_val, x_test, y_test`, `input_shape`,
            `output_dim`.
        """
        raise NotImplementedError

    def build_model(self, config: Any, data: Any) -> "keras.Model":
        """A compiled model for this config; by default the zoo model with the task's head and loss.

        Tasks override this to wrap the zoo model (e.g. a feature front end inside the model).
        """
        from pipelines.training import build_and_compile

        return build_and_compile(config, data.input_shape, self.head, data.output_dim, self.loss, self.keras_metrics)

    def dataset_for_logging(self, config: Any, source: Any) -> "mlflow.data.Dataset":
        """An `mlflow.data` dataset describing the input, for `mlflow.log_input`."""
        raise NotImplementedError

    def evaluate(self, model: "keras.Model", data: Any, config: Any) -> Evaluation:
        """Evaluate a trained model on validation and test; returns an `Evaluation`."""
        raise NotImplementedError

    def serving_bundle(self, model: "keras.Model", data: Any, workdir: str | Path) -> ServingBundle:
        """A pyfunc model taking raw inputs (preprocessing inside); returns a `ServingBundle`."""
        raise NotImplementedError

    def read_inputs(self, path: str | Path, served: Any) -> Any:
        """Read a user's input file for `predict`.

        Args:
            path: The file (or folder) given to `predict --input`.
            served: The served model's Python object (`unwrap_python_model()`), which knows what
                the model was trained on (columns, sample rate, ...).

        Returns:
            What the served model takes.
        """
        raise NotImplementedError

    def gate(self, metrics: dict[str, float], config: Any, champion: dict[str, float] | None) -> GateDecision:
        """What "beats its baseline on validation" means for this task: the promotion gate of
        `register` and `tune --register`.

        Args:
            metrics: The candidate's metrics (`Evaluation.metrics`).
            config: The task config (its `tracking.gate` group).
            champion: The metrics of the version that holds the alias now, or `None`.

        Returns:
            A `GateDecision`; the alias moves only when it promotes (or with `--force`).
        """
        raise NotImplementedError

    def check_adaptable(self, served: Any, inputs: Any, data: Any, config: Any, settings: Any) -> None:
        """Raise a `PipelineError` unless `adapt` can adapt the served model to `inputs` with the
        config's data and these settings (called before the adaptation's run starts; only for a
        task whose `adapts` is true)."""
        raise NotImplementedError

    def adapt(self, served: Any, inputs: Any, data: Any, config: Any, settings: Any) -> tuple[dict[str, float], Any]:
        """Adapt a served model's Keras model in place to a user's unlabelled inputs.

        Args:
            served: The served model's Python object (`unwrap_python_model()`).
            inputs: What `read_inputs` returned for the user's input.
            data: The prepared splits of the config (their training split is replayed).
            config: The task config.
            settings: The task's adaptation settings.

        Returns:
            `(metrics, table)`: a dict of `adapt_*` metrics and a DataFrame with a row per input.
        """
        raise NotImplementedError


def get_task(name: str) -> Task:
    """The task object registered under `name`.

    Args:
        name: One of `TASK_MODULES`.

    Returns:
        A `Task` instance.
    """
    if name not in TASK_MODULES:
        raise ConfigError(f"unknown task {name!r}; available: {', '.join(TASK_MODULES)}")
    try:
        module = importlib.import_module(TASK_MODULES[name])
    except ModuleNotFoundError as error:
        if error.name == TASK_MODULES[name]:
            raise ConfigError(f"task {name!r} is not implemented yet") from None
        raise
    return module.TASK
