"""Score detections against the labels: NAB, point-wise and event-wise, beside the trivial baselines.

Every test metric is computed on the rows from ``scored_from = max(NAB probationary period, training
prefix)`` on, so no row the network or the threshold saw is scored. With the default prefix (NAB's
probationary period) this is exactly NAB's scoring. Scores are pooled over series (NAB sums raw
scores, point-wise metrics concatenate rows, event-wise metrics pool counts).

A series without labels (a NAB file missing from the labels file, or a sensor CSV without a label
column) counts only in the alarm rate: its alerts are neither right nor wrong, so scoring them as
false positives would understate every label-based metric. Without any labelled series those
metrics are NaN.

Point-wise precision, recall and F1 compare alerts and labels row by row, without point adjustment
(Kim et al. 2022: adjusting lets a random detector look excellent). Event-wise recall is the share
of labelled windows with at least one alert; event-wise precision the share of alert runs
(consecutive alerted rows) that touch a labelled window. Each series gets one figure: its values
with labelled and detected anomalies, and its anomaly score.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_fscore_support

from pipelines.anomaly_detection.baselines import always_alerts, random_alerts
from pipelines.anomaly_detection.data import Series, runs_of_ones
from pipelines.anomaly_detection.detection import SeriesOutcome
from pipelines.anomaly_detection.nab_scoring import PROFILES, normalized_score, score_series

MAX_PLOTS = 8


@dataclass(eq=False)
class Report:
    """Test metrics (``test_*``), tables, figures and a summary line."""

    metrics: dict[str, float]
    tables: dict[str, pd.DataFrame]
    figures: dict
    summary: str


LABEL_METRICS = (*(f"nab_{name}" for name in PROFILES), "precision", "recall", "f1", "event_recall", "event_precision")


def pointwise(labels: np.ndarray, alerts: np.ndarray) -> dict[str, float]:
    """Row-wise precision, recall and F1 of binary alerts.

    Args:
        labels: 0/1 per row.
        alerts: 0/1 (or bool) per row.

    Returns:
        ``precision``, ``recall`` and ``f1`` (0 where undefined).
    """
    precision, recall, f1, _ = precision_recall_fscore_support(
        np.asarray(labels, dtype=int), np.asarray(alerts, dtype=int), average="binary", zero_division=0
    )
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1)}


def event_counts(alerts: np.ndarray, windows: list[tuple[int, int]], start: int = 0) -> dict[str, int]:
    """Counts for event-wise metrics over rows ``>= start`` (pool them across series, then divide).

    Args:
        alerts: bool per row.
        windows: inclusive ``(first, last)`` row ranges of the labelled anomalies.
        start: the first scored row. Default: 0.

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
    """Event-wise recall and precision from pooled counts.

    Args:
        counts: ``event_counts``, summed over series.

    Returns:
        ``event_recall`` and ``event_precision`` (0 where undefined).
    """
    return {
        "event_recall": counts["detected"] / counts["windows"] if counts["windows"] else 0.0,
        "event_precision": counts["true_runs"] / counts["runs"] if counts["runs"] else 0.0,
    }


def detector_metrics(outcomes: list[SeriesOutcome], alerts: list[np.ndarray]) -> dict[str, float]:
    """The test metrics of one detector's alerts.

    Args:
        outcomes: the series, after the model's detection (for their labels and scored rows).
        alerts: the detector's alerts, one bool array per outcome.

    Returns:
        NAB scores (three profiles), point-wise and event-wise metrics over the labelled series
        (NaN without any), and the alarm rate over all of them.
    """
    flags = np.concatenate([a[o.scored_from :] for o, a in zip(outcomes, alerts, strict=True)])
    alarm_rate = float(flags.mean()) if len(flags) else 0.0
    labelled = [(o, a) for o, a in zip(outcomes, alerts, strict=True) if o.series.labelled]
    if not labelled:
        return {**dict.fromkeys(LABEL_METRICS, float("nan")), "alarm_rate": alarm_rate}
    outcomes, alerts = [o for o, _ in labelled], [a for _, a in labelled]
    windows = sum(len(o.series.windows) for o in outcomes)
    metrics = {}
    for name, profile in PROFILES.items():
        scores = [
            score_series(a, o.series.windows, profile, o.scored_from) for o, a in zip(outcomes, alerts, strict=True)
        ]
        metrics[f"nab_{name}"] = normalized_score(scores, windows, profile)
    labels = np.concatenate([o.series.labels[o.scored_from :] for o in outcomes])
    flags = np.concatenate([a[o.scored_from :] for o, a in zip(outcomes, alerts, strict=True)])
    metrics.update(pointwise(labels, flags))
    counts = [event_counts(a, o.series.windows, o.scored_from) for o, a in zip(outcomes, alerts, strict=True)]
    metrics.update(eventwise({key: sum(c[key] for c in counts) for key in counts[0]}))
    metrics["alarm_rate"] = alarm_rate
    return metrics


def report(outcomes: list[SeriesOutcome], rule: str, seed: int, detector_name: str) -> Report:
    """Model and baseline metrics, per-series and NAB-format tables, and plots.

    Args:
        outcomes: the model's detections per series.
        rule: the alarm rule in words, for the summary.
        seed: seed of the random baseline (as many alerts per series as the model, at random rows).
        detector_name: NAB detector name of the results tables (``lstmPrediction``).

    Returns:
        A ``Report``.
    """
    rng = np.random.default_rng(seed)
    model_alerts = [o.detection.alert for o in outcomes]
    random = [
        random_alerts(len(o.series), o.scored_from, int(o.detection.alert[o.scored_from :].sum()), rng)
        for o in outcomes
    ]
    always = [always_alerts(len(o.series)) for o in outcomes]
    metrics = {f"test_{k}": v for k, v in detector_metrics(outcomes, model_alerts).items()}
    for name, alerts in (("random", random), ("always", always)):
        metrics.update({f"test_{name}_{k}": v for k, v in detector_metrics(outcomes, alerts).items()})
    tables = {"per_series": per_series_table(outcomes)}
    for outcome in outcomes:
        tables[nab_table_name(outcome.series.name, detector_name)] = nab_results_frame(outcome)
    figures = {
        f"series_{i:02d}_{PurePosixPath(o.series.name).stem}": series_figure(
            o.series, o.detection.anomaly_score, o.detection.alert, o.n_prefix, o.scored_from
        )
        for i, o in enumerate(outcomes[:MAX_PLOTS])
    }
    summary = (
        f"NAB standard {metrics['test_nab_standard']:.1f} (random {metrics['test_random_nab_standard']:.1f}, "
        f"always-anomalous {metrics['test_always_nab_standard']:.1f}); point-wise F1 {metrics['test_f1']:.3f} "
        f"(random {metrics['test_random_f1']:.3f}, always {metrics['test_always_f1']:.3f}); event recall "
        f"{metrics['test_event_recall']:.2f}, precision {metrics['test_event_precision']:.2f}; "
        f"{len(outcomes)} series{_unlabelled_note(outcomes)}; {rule}"
    )
    return Report(metrics, tables, figures, summary)


def _unlabelled_note(outcomes: list[SeriesOutcome]) -> str:
    unlabelled = sum(not o.series.labelled for o in outcomes)
    if not unlabelled:
        return ""
    return f" ({unlabelled} without labels: in the alarm rate only)"


def per_series_table(outcomes: list[SeriesOutcome]) -> pd.DataFrame:
    """One row per series: split sizes, threshold, alerts (and how many the spatial check raised), NAB
    standard raw score, F1, repairs; the label-based columns are empty for a series without labels.

    Args:
        outcomes: the model's detections per series.

    Returns:
        The table.
    """
    rows = []
    for o in outcomes:
        scored = slice(o.scored_from, None)
        row = {
            "series": o.series.name,
            "rows": len(o.series),
            "train_rows": o.n_train,
            "prefix_rows": o.n_prefix,
            "scored_from": o.scored_from,
            "labelled": o.series.labelled,
            "windows": np.nan,
            "threshold": o.detector.threshold,
            "alerts": int(o.detection.alert[scored].sum()),
            "spatial_alerts": int((o.detection.alert & o.detection.spatial)[scored].sum()),
            "detected_windows": np.nan,
            "false_positives": np.nan,
            "nab_standard_raw": np.nan,
            "nab_standard_null": np.nan,
            "f1": np.nan,
            "repairs": "; ".join(f"{k}: {v}" for k, v in o.series.repairs.items()),
        }
        if o.series.labelled:
            standard = score_series(o.detection.alert, o.series.windows, PROFILES["standard"], o.scored_from)
            row.update(
                windows=len(o.series.windows),
                detected_windows=standard.detected_windows,
                false_positives=standard.false_positives,
                nab_standard_raw=standard.raw,
                nab_standard_null=standard.null,
                f1=pointwise(o.series.labels[scored], o.detection.alert[scored])["f1"],
            )
        rows.append(row)
    return pd.DataFrame(rows)


def nab_table_name(series_name: str, detector_name: str) -> str:
    """``nab_results/<category>/<detector>_<file stem>``: NAB's ``results/<detector>/`` layout.

    Args:
        series_name: ``"<category>/<file>.csv"`` (or a file name).
        detector_name: NAB detector name, e.g. ``lstmReconstruction``.

    Returns:
        The table's name.
    """
    path = PurePosixPath(series_name)
    return str(PurePosixPath("nab_results") / path.parent / f"{detector_name}_{path.stem}")


def nab_results_frame(outcome: SeriesOutcome) -> pd.DataFrame:
    """NAB's results format, ``timestamp,value,anomaly_score,label``; ``value`` is the first column.

    Args:
        outcome: one series after detection.

    Returns:
        One row per row of the series.
    """
    series = outcome.series
    return pd.DataFrame(
        {
            "timestamp": series.timestamps.strftime("%Y-%m-%d %H:%M:%S"),
            "value": series.values[:, 0],
            "anomaly_score": outcome.detection.anomaly_score,
            "label": series.labels,
        }
    )


def series_figure(
    series: Series, anomaly_score: np.ndarray, alerts: np.ndarray, n_prefix: int, scored_from: int
) -> Figure:
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
