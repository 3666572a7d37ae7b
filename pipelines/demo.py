"""`make demo`: a short tune of every available task on its offline data, then a summary table."""

import logging
import time
from typing import Any

from pipelines import tracking, workflows
from pipelines.config import with_values
from pipelines.errors import ConfigError, PipelineError
from pipelines.tasks import TASK_MODULES, get_task

logger = logging.getLogger(__name__)

# Small enough for two CPU cores; each task keeps its config's search space.
DEMO_SETTINGS = {
    "stock_forecasting": {"trials": 4, "overrides": ["train.epochs=8", "train.verbose=0"]},
    "anomaly_detection": {"trials": 3, "overrides": ["train.epochs=5", "train.verbose=0"]},
    "speech_commands": {"trials": 3, "overrides": ["train.epochs=15", "train.verbose=0"]},
}


def available_tasks() -> list[str]:
    """The tasks that can be loaded.

    Returns:
        The names in `TASK_MODULES` whose module imports.
    """
    names = []
    for name in TASK_MODULES:
        try:
            get_task(name)
        except ConfigError:
            continue
        names.append(name)
    return names


def best_model(task_name: str, overrides: list[str], trial: Any) -> str:
    """The model of a study's best trial in a word: the zoo variant, or the task architecture.

    Args:
        task_name: The task.
        overrides: The demo's `--set` overrides of the task's shipped config.
        trial: The best Optuna trial, or `None`.

    Returns:
        E.g. `"gru"` or `"crnn"`; `"-"` without a trial.
    """
    if trial is None:
        return "-"
    config = with_values(workflows.load_task_config(get_task(task_name), None, overrides), trial.params)
    architecture = getattr(config.model, "architecture", "zoo")
    return config.model.variant if architecture == "zoo" else architecture


def main(trials: int | None = None) -> None:
    """Tune, register and summarise each available task.

    Args:
        trials: Trials per task. Default: `None`, which means each task's `DEMO_SETTINGS`.
    """
    rows = []
    for name in available_tasks():
        settings = DEMO_SETTINGS.get(name, {"trials": 3, "overrides": ["train.epochs=5"]})
        start = time.monotonic()
        try:
            result = workflows.tune(
                name, trials or settings["trials"], overrides=settings["overrides"], study=f"{name}-demo", register=True
            )
        except PipelineError as error:  # one task's problem (e.g. a missing extra) must not hide the others
            logger.error("%s: %s", name, error)
            rows.append(
                {
                    "task": name,
                    "best model": "failed",
                    "test metric": str(error)[:60],
                    "baseline": "-",
                    "gate": "-",
                    "model URI": "-",
                    "seconds": f"{time.monotonic() - start:.0f}",
                    "metrics": {},
                }
            )
            continue
        metrics = result.best_trial.user_attrs.get("metrics", {}) if result.best_trial else {}
        headline = result.best_trial.user_attrs.get("headline", {}) if result.best_trial else {}
        registration = result.model_version
        if registration is not None:
            print(f"\n{name}: {registration.message()}")
        rows.append(
            {
                "task": name,
                "best model": best_model(name, settings["overrides"], result.best_trial),
                "test metric": f"{headline.get('metric', '?')}={headline.get('value', float('nan')):.4f}",
                "baseline": headline.get("baseline", "-"),
                "gate": ("passed" if registration.promoted else "refused") if registration else "-",
                "model URI": registration.model_uri if registration else "-",
                "seconds": f"{time.monotonic() - start:.0f}",
                "metrics": metrics,
            }
        )
    columns = ["task", "best model", "test metric", "baseline", "gate", "model URI", "seconds"]
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    print()
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(str(row[c]).ljust(widths[c]) for c in columns))
    uri = tracking.tracking_uri()
    models = {row["task"]: row["model URI"] for row in rows if row["model URI"] != "-"}
    lines = [f"  mlflow ui --backend-store-uri {uri}"]
    inputs = {"stock_forecasting": ("prices.csv", "forecast.csv"), "anomaly_detection": ("series.csv", "scores.csv")}
    for task, (given, written) in inputs.items():
        if task in models:
            lines.append(f"  lstm-pipelines predict --model {models[task]} --input {given} --output {written}")
    if "stock_forecasting" in models:
        serve = f"mlflow models serve -m {models['stock_forecasting']} --env-manager local -p 5001"
        lines.append(f"  MLFLOW_TRACKING_URI={uri} {serve}")
    print("\nA version the gate refused keeps its version URI (models:/<task>/<n>); --force promotes it.")
    print("Look further:\n" + "\n".join(lines))
