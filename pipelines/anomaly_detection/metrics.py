"""Point-wise and event-wise detection metrics, and the trivial baselines reported beside the model.

Point-wise precision, recall and F1 compare alerts and labels row by row, without point adjustment
(Kim et al. 2022: adjusting lets a random detector look excellent). Event-wise recall is the share
of labelled windows with at least one alert; event-wise precision the share of alert runs
(consecutive alerted rows) that touch a labelled window. The baselines make inflated metrics show:
an always-anomalous detector gets event-wise precision and recall 1 and a NAB score far below 0.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import precision_recall_fscore_support

from pipelines.anomaly_detection.data import runs_of_ones


def pointwise(labels: np.ndarray, alerts: np.ndarray) -> dict[str, float]:
    """Row-wise ``precision``, ``recall`` and ``f1`` of binary alerts (0 where undefined)."""
    precision, recall, f1, _ = precision_recall_fscore_support(
        np.asarray(labels, dtype=int), np.asarray(alerts, dtype=int), average="binary", zero_division=0
    )
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1)}


def event_counts(alerts: np.ndarray, windows: list[tuple[int, int]], start: int = 0) -> dict[str, int]:
    """Counts for event-wise metrics over rows ``>= start`` (pool them across series, then divide).

    Returns:
        ``windows`` (labelled windows reaching past ``start``), ``detected`` (those with an alert),
        ``runs`` (alert runs), ``true_runs`` (runs touching a window).
    """
    alerts = np.asarray(alerts, dtype=bool).copy()
    alerts[:start] = False
    labelled = np.zeros(len(alerts), dtype=bool)
    scored = [(max(first, start), last) for first, last in windows if last >= start]
    for first, last in scored:
        labelled[first : last + 1] = True
    runs = runs_of_ones(alerts)
    return {
        "windows": len(scored),
        "detected": sum(bool(alerts[first : last + 1].any()) for first, last in scored),
        "runs": len(runs),
        "true_runs": sum(bool(labelled[first : last + 1].any()) for first, last in runs),
    }


def eventwise(counts: dict[str, int]) -> dict[str, float]:
    """``event_recall`` and ``event_precision`` from pooled ``event_counts`` (0 where undefined)."""
    return {
        "event_recall": counts["detected"] / counts["windows"] if counts["windows"] else 0.0,
        "event_precision": counts["true_runs"] / counts["runs"] if counts["runs"] else 0.0,
    }


def random_alerts(rows: int, first: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """The random baseline: ``count`` alerts on rows drawn uniformly from ``first`` on (give it the
    model's number of alerts, so both have the same alarm rate)."""
    alerts = np.zeros(rows, dtype=bool)
    alerts[rng.choice(np.arange(first, rows), size=min(count, max(rows - first, 0)), replace=False)] = True
    return alerts


def always_alerts(rows: int) -> np.ndarray:
    """The always-anomalous baseline: an alert on every row."""
    return np.ones(rows, dtype=bool)
