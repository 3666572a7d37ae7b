"""The trivial detectors reported beside the model, so that inflated metrics show.

The random detector raises as many alerts as the model, on random scored rows (the same alarm rate);
the always-anomalous detector alerts on every row: it gets event-wise precision and recall 1 and a
NAB score far below 0. ``evaluation.report`` scores both as it scores the model.
"""

from __future__ import annotations

import numpy as np


def random_alerts(rows: int, first: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """The random baseline: ``count`` alerts on rows drawn uniformly from ``first`` on.

    Args:
        rows: rows of the series.
        first: the first scored row.
        count: alerts to raise (give it the model's number of alerts); at most one per scored row.
        rng: random generator.

    Returns:
        bool per row.
    """
    alerts = np.zeros(rows, dtype=bool)
    alerts[rng.choice(np.arange(first, rows), size=min(count, max(rows - first, 0)), replace=False)] = True
    return alerts


def always_alerts(rows: int) -> np.ndarray:
    """The always-anomalous baseline: an alert on every row.

    Args:
        rows: rows of the series.

    Returns:
        bool per row, all true.
    """
    return np.ones(rows, dtype=bool)
