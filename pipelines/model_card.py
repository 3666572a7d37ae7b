"""The model card logged beside every registered version: `model_card.md`, from plain inputs.

`tracking.register` gathers what the card shows from the tracking store (the run's config, metrics,
dataset and tables, the plots, the gate's decision) and logs the card with the model; this module
only writes the Markdown, so its contents are tested without MLflow.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pandas as pd

CARD_FILE = "model_card.md"


@dataclasses.dataclass
class CardInputs:
    """What a model card shows.

    Attributes:
        name: Registered model name.
        version: The version number.
        task: The task name.
        model_uri: The logged model's URI.
        run_id: The run that trained it.
        tracking_uri: The tracking store, for the commands.
        gate: One line: the gate's decision and reason.
        metrics: The run's metrics.
        config_yaml: The run's `config.yaml`.
        dataset: `{"name", "digest", "source", "rows"}` of the run's training dataset (any may be missing).
        tables: Small tables to show under "Data" and "Intervals" (`data_summary`, `intervals`).
        plots: Paths of the plots beside the card, relative to it (`plots/<name>.png`).
        summary: The run's one-line summary.
    """

    name: str
    version: str
    task: str
    model_uri: str
    run_id: str
    tracking_uri: str
    gate: str
    metrics: dict[str, float]
    config_yaml: str = ""
    dataset: dict[str, Any] = dataclasses.field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = dataclasses.field(default_factory=dict)
    plots: list[str] = dataclasses.field(default_factory=list)
    summary: str = ""


def metrics_beside_baselines(metrics: dict[str, float], split: str = "test") -> tuple[pd.DataFrame, dict[str, float]]:
    """The split's metrics as a table: a row per measure, the model and each baseline in columns.

    A baseline's metric is named `<split>_<baseline>_<measure>` beside the model's `<split>_<measure>`
    (`test_naive_rmse` beside `test_rmse`, `test_majority_accuracy` beside `test_accuracy`).

    Args:
        metrics: Flat metric names to values.
        split: The split prefix. Default: `"test"`.

    Returns:
        `(table, others)`: the table (`measure`, `model`, then a column per baseline) and the split's
        metrics that fit no row.
    """
    prefix = f"{split}_"
    own = {key[len(prefix) :]: value for key, value in metrics.items() if key.startswith(prefix)}
    rows: dict[str, dict[str, float]] = {}
    used = set()
    for key, value in own.items():
        # The longest other measure the name ends with: `naive_coverage_80` is naive's `coverage_80`.
        matches = [measure for measure in own if measure != key and key.endswith("_" + measure)]
        if matches:
            measure = max(matches, key=len)
            rows.setdefault(measure, {"model": own[measure]})[key[: -len(measure) - 1]] = value
            used.update({key, measure})
    table = pd.DataFrame([{"measure": measure, **values} for measure, values in sorted(rows.items())])
    others = {f"{prefix}{key}": value for key, value in sorted(own.items()) if key not in used}
    return table, others


def _number(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def markdown_table(frame: pd.DataFrame) -> str:
    """A pipe table of a DataFrame (numbers to 4 significant digits, NaN blank).

    Args:
        frame: The table.

    Returns:
        GitHub-flavoured Markdown.
    """
    if frame.empty:
        return "(empty)"
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    body = ["| " + " | ".join(_number(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def commands(name: str, version: str, tracking_uri: str, task: str) -> list[str]:
    """The commands that serve, query and export this version.

    Args:
        name: Registered model name.
        version: The version number.
        tracking_uri: The tracking store.
        task: The task name (what `predict` reads).

    Returns:
        Shell command lines.
    """
    uri = f"models:/{name}/{version}"
    example = {"stock_forecasting": "prices.csv", "anomaly_detection": "series.csv", "speech_commands": "clips/"}
    return [
        f"export MLFLOW_TRACKING_URI={tracking_uri}",
        f"lstm-pipelines predict --model {uri} --input {example.get(task, 'input')} --output predictions.csv",
        f"mlflow models serve -m {uri} --env-manager local -p 5001",
        f"lstm-pipelines export --model {uri} --format onnx --output exported/",
    ]


def render(card: CardInputs) -> str:
    """The model card as Markdown.

    Args:
        card: What it shows.

    Returns:
        The text of `model_card.md`.
    """
    parts = [
        f"# {card.name} version {card.version}",
        "",
        f"Task `{card.task}`; model `{card.model_uri}`, trained in run `{card.run_id}`.",
        "",
        "## Promotion gate",
        "",
        card.gate,
        "",
        "## Data",
        "",
    ]
    dataset = card.dataset
    if dataset:
        facts = [f"{key}: `{dataset[key]}`" for key in ("name", "digest", "source", "rows") if key in dataset]
        parts += ["Dataset " + "; ".join(facts) + ".", ""]
    if "data_summary" in card.tables:
        parts += [markdown_table(card.tables["data_summary"]), ""]
    parts += ["## Test metrics beside the baselines", ""]
    if card.summary:
        parts += [card.summary, ""]
    table, others = metrics_beside_baselines(card.metrics)
    parts += [markdown_table(table), ""]
    if others:
        parts += [markdown_table(pd.DataFrame({"metric": list(others), "value": list(others.values())})), ""]
    validation = {key: value for key, value in card.metrics.items() if key.startswith("val_")}
    if validation:
        parts += ["Validation (what the gate reads):", ""]
        parts += [markdown_table(pd.DataFrame({"metric": list(validation), "value": list(validation.values())})), ""]
    if "intervals" in card.tables:
        parts += ["## Forecast intervals (test coverage per step)", "", markdown_table(card.tables["intervals"]), ""]
    if card.plots:
        parts += ["## Plots", ""]
        parts += [f"![{plot.rsplit('/', 1)[-1].removesuffix('.png')}]({plot})" for plot in card.plots]
        parts += [""]
    parts += ["## Config", "", "```yaml", card.config_yaml.rstrip(), "```", ""]
    parts += ["## Serve and export", "", "```bash", *commands(card.name, card.version, card.tracking_uri, card.task)]
    parts += ["```", ""]
    return "\n".join(parts)
