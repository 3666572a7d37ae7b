"""Scores and plots of a speech model: accuracy, macro-F1, per-class recall, confusion matrix, attention."""

import keras
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support  # noqa: E402

from lstm_models import TemporalAttention, attention_weights  # noqa: E402
from pipelines.speech_commands.model import feature_model  # noqa: E402


def classification_metrics(y_true, y_pred, class_names, prefix):
    """`{prefix}_accuracy`, `{prefix}_error_rate`, `{prefix}_macro_f1` and `{prefix}_recall_{class}`."""
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


def per_class_table(y_true, y_pred, class_names):
    """Precision, recall, F1 and support per class."""
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=np.arange(len(class_names)), zero_division=0
    )
    return pd.DataFrame({"class": class_names, "precision": precision, "recall": recall, "f1": f1, "support": support})


def confusion_figure(y_true, y_pred, class_names, title="test confusion matrix"):
    """Row-normalised confusion matrix, counts written in the cells."""
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


def attention_over_time(model, x):
    """`(batch, frames)` attention weights of a speech model, or `None` without attention."""
    found = _attention_layer_owner(model)
    if found is None:
        return None
    owner, features = found
    inputs = x if features is None else features.predict(x, verbose=0)
    return attention_weights(owner, inputs)


def attention_figure(model, x, y, class_names, hop_seconds=0.010):
    """One test clip's log-mel features and attention, over the mean attention per class."""
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
