"""One figure per series: values with labelled and detected anomalies, and the anomaly score."""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pipelines.anomaly_detection.data import Series


def series_figure(series: Series, anomaly_score: np.ndarray, alerts: np.ndarray, n_prefix: int, scored_from: int):
    """The series (first value column) and its anomaly score over time.

    Args:
        series: the series.
        anomaly_score: ``[0, 1]`` score per row (threshold 0.5).
        alerts: bool per row.
        n_prefix: rows of the training prefix (shaded grey).
        scored_from: first row scored by the test metrics.

    Returns:
        A matplotlib ``Figure``.
    """
    figure = Figure(figsize=(12, 5))
    FigureCanvasAgg(figure)
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    stamps = series.timestamps
    top.plot(stamps, series.values[:, 0], lw=0.7, color="tab:blue", label=series.value_columns[0])
    for k, (first, last) in enumerate(series.windows):
        for axis in (top, bottom):
            axis.axvspan(stamps[first], stamps[last], color="tab:orange", alpha=0.25, lw=0,
                         label="labelled window" if k == 0 and axis is top else None)  # fmt: skip
    for axis in (top, bottom):
        axis.axvspan(stamps[0], stamps[max(n_prefix - 1, 0)], color="grey", alpha=0.15, lw=0,
                     label="training prefix" if axis is top else None)  # fmt: skip
    hits = np.flatnonzero(alerts)
    top.scatter(stamps[hits], series.values[hits, 0], color="tab:red", s=18, zorder=3, label="alert")
    bottom.plot(stamps, anomaly_score, lw=0.7, color="black", label="anomaly score")
    bottom.axhline(0.5, color="tab:red", ls="--", lw=0.8, label="threshold")
    if scored_from < len(stamps):
        bottom.axvline(stamps[scored_from], color="grey", ls=":", lw=0.8, label="scored from")
    bottom.set_ylim(-0.02, 1.02)
    top.set_title(f"{series.name}: {len(hits)} alerts, {len(series.windows)} labelled windows")
    top.legend(loc="upper left", fontsize=7)
    bottom.legend(loc="upper left", fontsize=7)
    figure.tight_layout()
    return figure
