"""Scores and plots of a speech model: accuracy, macro-F1, per-class recall, confusion matrix, attention."""

from __future__ import annotations

from typing import TYPE_CHECKING

import keras
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support  # noqa: E402

from lstm_models import TemporalAttention, attention_weights  # noqa: E402
from pipelines.speech_commands import baselines  # noqa: E402
from pipelines.speech_commands.augment import evaluation_dataset  # noqa: E402
from pipelines.speech_commands.model import feature_model  # noqa: E402
from pipelines.tasks import Evaluation  # noqa: E402
from pipelines.training import ensemble_members  # noqa: E402

if TYPE_CHECKING:
    from pipelines.speech_commands.task import SpeechSplits


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str], prefix: str
) -> dict[str, float]:
    """Accuracy, error rate, macro-F1 and each class's recall.

    Args:
        y_true: True class indices `(n,)`.
        y_pred: Predicted class indices `(n,)`.
        class_names: Name of each class index.
        prefix: The split, e.g. `"test"`.

    Returns:
        `{prefix}_accuracy`, `{prefix}_error_rate`, `{prefix}_macro_f1` and `{prefix}_recall_{class}`.
    """
    labels = np.arange(len(class_names))
    accuracy = float(accuracy_score(y_true, y_pred))
    metrics = {
        f"{prefix}_accuracy": accuracy,
        f"{prefix}_error_rate": 1.0 - accuracy,
        f"{prefix}_macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
    }
    _, recall, _, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    metrics.update({f"{prefix}_recall_{name}": float(value) for name, value in zip(class_names, recall, strict=True)})
    return metrics


def per_class_table(y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str]) -> pd.DataFrame:
    """Precision, recall, F1 and support per class.

    Args:
        y_true: True class indices `(n,)`.
        y_pred: Predicted class indices `(n,)`.
        class_names: Name of each class index.

    Returns:
        A DataFrame `class, precision, recall, f1, support`, a row per class.
    """
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=np.arange(len(class_names)), zero_division=0
    )
    return pd.DataFrame({"class": class_names, "precision": precision, "recall": recall, "f1": f1, "support": support})


def confusion_figure(
    y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str], title: str = "test confusion matrix"
) -> plt.Figure:
    """Row-normalised confusion matrix, counts written in the cells (up to 20 classes).

    Args:
        y_true: True class indices `(n,)`.
        y_pred: Predicted class indices `(n,)`.
        class_names: Name of each class index.
        title: The figure's title. Default: `"test confusion matrix"`.

    Returns:
        A matplotlib `Figure`.
    """
    counts = confusion_matrix(y_true, y_pred, labels=np.arange(len(class_names)))
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.45 * len(class_names) + 2)
    figure, axis = plt.subplots(figsize=(size + 1, size))
    image = axis.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    axis.set_xticks(range(len(class_names)), class_names, rotation=90)
    axis.set_yticks(range(len(class_names)), class_names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(title)
    if len(class_names) <= 20:
        for (row, column), count in np.ndenumerate(counts):
            if count:
                color = "white" if rates[row, column] > 0.5 else "black"
                axis.text(column, row, str(count), ha="center", va="center", fontsize=7, color=color)
    figure.colorbar(image, ax=axis, fraction=0.046, label="share of the true class")
    figure.tight_layout()
    return figure


def _attention_layer_owner(model):
    """The model that holds a `TemporalAttention` directly and how to feed it, or `None`."""
    if any(isinstance(layer, TemporalAttention) for layer in model.layers):
        return model, None
    for layer in model.layers:
        if isinstance(layer, keras.Model) and any(isinstance(inner, TemporalAttention) for inner in layer.layers):
            return layer, feature_model(model)
    return None


def attention_over_time(model: keras.Model, x: np.ndarray) -> np.ndarray | None:
    """The attention weights over time of a speech model.

    Args:
        model: A model from `model.build_speech_model`.
        x: Waveforms `(batch, samples)`.

    Returns:
        `(batch, frames)` weights, or `None` for a model without attention.
    """
    found = _attention_layer_owner(model)
    if found is None:
        return None
    owner, features = found
    inputs = x if features is None else features.predict(x, verbose=0)
    return attention_weights(owner, inputs)


def attention_figure(
    model: keras.Model, x: np.ndarray, y: np.ndarray, class_names: list[str], hop_seconds: float = 0.010
) -> plt.Figure | None:
    """One test clip's log-mel features and attention, over the mean attention per class.

    Args:
        model: A model from `model.build_speech_model`.
        x: Test waveforms `(batch, samples)`.
        y: Their class indices `(batch,)`.
        class_names: Name of each class index.
        hop_seconds: Seconds between frames. Default: `0.010`.

    Returns:
        A matplotlib `Figure`, or `None` for a model without attention.
    """
    weights = attention_over_time(model, x)
    if weights is None:
        return None
    features = feature_model(model).predict(x[:1], verbose=0)[0]
    seconds = np.arange(weights.shape[1]) * hop_seconds
    figure, (top, middle, bottom) = plt.subplots(3, 1, figsize=(8, 8), sharex=True)
    top.imshow(features.T, origin="lower", aspect="auto", extent=(0, seconds[-1], 0, features.shape[1]))
    top.set_ylabel("mel bin")
    top.set_title(f"test clip 0 (true: {class_names[y[0]]}): normalised log-mel features")
    middle.plot(seconds, weights[0])
    middle.set_ylabel("attention")
    middle.set_title("its attention over time")
    for label in np.unique(y)[:12]:
        bottom.plot(seconds, weights[y == label].mean(axis=0), label=class_names[label], linewidth=1)
    bottom.set_ylabel("mean attention")
    bottom.set_xlabel("time (s)")
    bottom.set_title("mean attention per true class (test)")
    bottom.legend(fontsize=7, ncol=4)
    figure.tight_layout()
    return figure


def evaluate(model: keras.Model, data: SpeechSplits) -> Evaluation:
    """Score a trained model on the validation and test splits, against the majority class.

    Args:
        model: A model from `model.build_speech_model`, or an ensemble of them.
        data: The splits it was trained on (`task.SpeechSplits`).

    Returns:
        An `Evaluation`: `val_*` and `test_*` metrics (`test_recall_<class>` too) with
        `test_majority_accuracy`, the confusion matrix (and attention over time) figures, the
        per-class table and every test clip's prediction.
    """
    names = data.class_names
    # Through the batched datasets: a streamed split is read from its clip file a batch at a time.
    val_pred = model.predict(evaluation_dataset(data.x_val, data.y_val, 256), verbose=0).argmax(axis=1)
    test_probabilities = model.predict(evaluation_dataset(data.x_test, data.y_test, 256), verbose=0)
    test_pred = test_probabilities.argmax(axis=1)
    metrics = {
        key: value
        for key, value in classification_metrics(data.y_val, val_pred, names, "val").items()
        if "_recall_" not in key
    }
    metrics.update(classification_metrics(data.y_test, test_pred, names, "test"))
    majority = baselines.majority_class(data.y_train, len(names))
    metrics["test_majority_accuracy"] = baselines.majority_accuracy(data.y_train, data.y_test, len(names))
    figures = {"confusion_matrix": confusion_figure(data.y_test, test_pred, names)}
    # An ensemble's figure shows its first member's attention.
    first = ensemble_members(model)[0]
    attention = attention_figure(first, data.x_test[:256], data.y_test[:256], names)
    if attention is not None:
        figures["attention_over_time"] = attention
    predictions = pd.DataFrame(
        {
            "file": data.files_test,
            "true": [names[i] for i in data.y_test],
            "predicted": [names[i] for i in test_pred],
            "probability": test_probabilities.max(axis=1),
        }
    )
    baseline = f"majority class ({names[majority]}): {metrics['test_majority_accuracy']:.4f}"
    summary = (
        f"test accuracy {metrics['test_accuracy']:.4f}, macro-F1 {metrics['test_macro_f1']:.4f} on "
        f"{len(data.y_test)} clips, {len(names)} classes; {baseline}"
    )
    return Evaluation(
        metrics=metrics,
        figures=figures,
        tables={
            "per_class": per_class_table(data.y_test, test_pred, names),
            "test_predictions": predictions,
        },
        summary=summary,
        headline={"metric": "test_accuracy", "value": metrics["test_accuracy"], "baseline": baseline},
    )
