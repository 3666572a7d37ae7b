"""Score both decisions against the labels: row, range, event and NAB measures, beside trivial baselines.

Each run scores the two decisions of ``detection.py``: ``is_anomaly`` (the ``row`` metrics,
``test_row_*``) and ``alert`` (``test_alert_*``), each with the same measures, and the random and
always-anomalous baselines with the same measures (``test_random_row_*``, ``test_always_alert_*``, ...):

- ``precision``, ``recall``, ``f1``: row by row, without point adjustment (Kim et al. 2022:
  adjusting lets a random detector look excellent).
- ``range_precision``, ``range_recall``, ``range_f1``: range-based precision and recall of Tatbul
  et al. 2018 ("Precision and Recall for Time Series") with alpha 0, cardinality factor 1 and flat
  positional bias: a labelled range's recall is the share of its rows flagged, a flagged range's
  precision the share of its rows inside labelled ranges; each averages over its ranges.
- ``event_recall``: share of labelled windows with at least one flagged row; ``event_precision``:
  share of flagged runs (consecutive flagged rows) that touch a labelled window.
- ``nab_<profile>``: the NAB score, computed on the file's rows as NAB's own scorer computes it on
  the results files this module writes (``nab_results_frame``; duplicates of a timestamp, which the
  loader drops, are rows of the file there and carry no decision).

Every measure but NAB's is computed on the rows from ``scored_from = max(NAB probationary period,
training prefix)`` on, so no row the network or the threshold saw is scored; NAB's score skips NAB's
probationary period, as NAB does. Scores are pooled over series (NAB sums raw scores, row metrics
concatenate rows, range and event metrics pool their sums and counts).

A series without labels (a NAB file missing from the labels file, or a sensor CSV without a label
column) counts only in the flag rates (``row_rate``, ``alert_rate``): its flags are neither right
nor wrong. Without any labelled series the label-based metrics are NaN. Each series gets one figure.
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
from pipelines.anomaly_detection.nab_scoring import (
    PROFILES,
    Profile,
    SeriesScore,
    normalized_score,
    probationary_length,
    score_series,
)

MAX_PLOTS = 8
DECISIONS = ("row", "alert")  # is_anomaly, alert
MEASURES = (
    *(f"nab_{name}" for name in PROFILES),
    "precision", "recall", "f1", "range_precision", "range_recall", "range_f1", "event_recall", "event_precision",
)  # fmt: skip


@dataclass(eq=False)
class Report:
    """Test metrics (``test_*``), tables, figures and a summary line."""

    metrics: dict[str, float]
    tables: dict[str, pd.DataFrame]
    figures: dict
    summary: str


LABEL_METRICS = tuple(f"{decision}_{measure}" for decision in DECISIONS for measure in MEASURES)


def pointwise(labels: np.ndarray, flags: np.ndarray) -> dict[str, float]:
    """Row-wise precision, recall and F1 of binary flags.

    Args:
        labels: 0/1 per row.
        flags: 0/1 (or bool) per row.

    Returns:
        ``precision``, ``recall`` and ``f1`` (0 where undefined).
    """
    precision, recall, f1, _ = precision_recall_fscore_support(
        np.asarray(labels, dtype=int), np.asarray(flags, dtype=int), average="binary", zero_division=0
    )
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1)}


def range_counts(labels: np.ndarray, flags: np.ndarray) -> dict[str, float]:
    """Sums for range-based precision and recall (Tatbul et al. 2018; alpha 0, cardinality 1, flat bias).

    Args:
        labels: 0/1 per row.
        flags: 0/1 (or bool) per row.

    Returns:
        ``real_ranges`` and ``recall_sum`` (each labelled range's share of rows flagged, summed),
        ``flagged_ranges`` and ``precision_sum`` (each flagged range's share of rows labelled,
        summed). Pool them across series, then divide (``rangewise``).
    """
    labels = np.asarray(labels).astype(bool)
    flags = np.asarray(flags).astype(bool)
    real, flagged = runs_of_ones(labels), runs_of_ones(flags)
    return {
        "real_ranges": len(real),
        "recall_sum": float(sum(flags[a : b + 1].mean() for a, b in real)),
        "flagged_ranges": len(flagged),
        "precision_sum": float(sum(labels[a : b + 1].mean() for a, b in flagged)),
    }


def rangewise(counts: dict[str, float]) -> dict[str, float]:
    """Range-based precision, recall and F1 from pooled ``range_counts``.

    Args:
        counts: ``range_counts``, summed over series.

    Returns:
        ``range_precision``, ``range_recall`` and ``range_f1`` (0 where undefined).
    """
    precision = counts["precision_sum"] / counts["flagged_ranges"] if counts["flagged_ranges"] else 0.0
    recall = counts["recall_sum"] / counts["real_ranges"] if counts["real_ranges"] else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"range_precision": precision, "range_recall": recall, "range_f1": f1}


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


def file_flags(series: Series, flags: np.ndarray) -> np.ndarray:
    """Flags on the file's rows: a row the loader dropped as a repeated timestamp carries none.

    Args:
        series: the series.
        flags: bool per row of the series.

    Returns:
        bool per data row of the file.
    """
    if series.file_timestamps is None:
        return np.asarray(flags, dtype=bool)
    out = np.zeros(len(series.file_timestamps), dtype=bool)
    out[series.file_rows] = flags
    return out


def file_windows(series: Series) -> list[tuple[int, int]]:
    """The labelled windows as the file's rows (NAB's scorer counts the file's rows)."""
    rows = series.file_rows
    return [(int(rows[first]), int(rows[last])) for first, last in series.windows]


def nab_series_score(series: Series, flags: np.ndarray, profile: Profile) -> SeriesScore:
    """The NAB score of one series' flags, on the file's rows as NAB's scorer reads the results file.

    Args:
        series: the series (labelled).
        flags: bool per row of the series.
        profile: the application profile.

    Returns:
        A ``SeriesScore``.
    """
    on_file = file_flags(series, flags)
    return score_series(on_file, file_windows(series), profile, probationary_length(len(on_file)))


def decision_metrics(outcomes: list[SeriesOutcome], flags: list[np.ndarray], decision: str) -> dict[str, float]:
    """Every measure of one decision of one detector.

    Args:
        outcomes: the series, after the model's detection (for their labels and scored rows).
        flags: the decision, one bool array per outcome.
        decision: ``"row"`` or ``"alert"``, the metrics' prefix.

    Returns:
        ``<decision>_<measure>`` over the labelled series (NaN without any), and ``<decision>_rate``,
        the share of scored rows flagged, over all series.
    """
    pairs = list(zip(outcomes, flags, strict=True))
    scored = np.concatenate([f[o.scored_from :] for o, f in pairs])
    rate = float(scored.mean()) if len(scored) else 0.0
    labelled = [(o, f) for o, f in pairs if o.series.labelled]
    if not labelled:
        return {**{f"{decision}_{m}": float("nan") for m in MEASURES}, f"{decision}_rate": rate}
    windows = sum(len(o.series.windows) for o, _ in labelled)
    metrics = {}
    for name, profile in PROFILES.items():
        scores = [nab_series_score(o.series, f, profile) for o, f in labelled]
        metrics[f"nab_{name}"] = normalized_score(scores, windows, profile)
    labels = np.concatenate([o.series.labels[o.scored_from :] for o, _ in labelled])
    flat = np.concatenate([f[o.scored_from :] for o, f in labelled])
    metrics.update(pointwise(labels, flat))
    ranges = [range_counts(o.series.labels[o.scored_from :], f[o.scored_from :]) for o, f in labelled]
    metrics.update(rangewise({key: sum(c[key] for c in ranges) for key in ranges[0]}))
    counts = [event_counts(f, o.series.windows, o.scored_from) for o, f in labelled]
    metrics.update(eventwise({key: sum(c[key] for c in counts) for key in counts[0]}))
    return {**{f"{decision}_{key}": value for key, value in metrics.items()}, f"{decision}_rate": rate}


def detector_metrics(outcomes: list[SeriesOutcome], rows: list[np.ndarray], alerts: list[np.ndarray]) -> dict:
    """The measures of both decisions of one detector.

    Args:
        outcomes: the series, after the model's detection.
        rows: the row decisions (``is_anomaly``), one bool array per outcome.
        alerts: the alerts, one bool array per outcome.

    Returns:
        ``decision_metrics`` of both, merged.
    """
    return {**decision_metrics(outcomes, rows, "row"), **decision_metrics(outcomes, alerts, "alert")}


def report(
    outcomes: list[SeriesOutcome], rule: str, seed: int, detector_name: str, skipped: list[str] | tuple = ()
) -> Report:
    """Model and baseline metrics, per-series and NAB-format tables, and plots.

    Args:
        outcomes: the model's detections per series.
        rule: the decision rules in words, for the summary.
        seed: seed of the random baseline (as many flagged rows and alerts per series as the model,
            on random scored rows).
        detector_name: NAB detector name of the results tables (``lstmReconstruction``).
        skipped: series left out for a too short normal prefix, named in the summary. Default: none.

    Returns:
        A ``Report``.
    """
    rng = np.random.default_rng(seed)
    model_rows = [o.detection.is_anomaly for o in outcomes]
    model_alerts = [o.detection.alert for o in outcomes]

    def like(flags: list[np.ndarray]) -> list[np.ndarray]:
        return [
            random_alerts(len(o.series), o.scored_from, int(f[o.scored_from :].sum()), rng)
            for o, f in zip(outcomes, flags, strict=True)
        ]

    always = [always_alerts(len(o.series)) for o in outcomes]
    metrics = {f"test_{k}": v for k, v in detector_metrics(outcomes, model_rows, model_alerts).items()}
    for name, (rows, alerts) in (("random", (like(model_rows), like(model_alerts))), ("always", (always, always))):
        metrics.update({f"test_{name}_{k}": v for k, v in detector_metrics(outcomes, rows, alerts).items()})
    tables = {"per_series": per_series_table(outcomes)}
    for outcome in outcomes:
        tables[nab_table_name(outcome.series.name, detector_name)] = nab_results_frame(outcome)
    figures = {
        f"series_{i:02d}_{PurePosixPath(o.series.name).stem}": series_figure(
            o.series, o.detection.anomaly_score, o.detection.alert, o.n_prefix, o.scored_from, o.detection.is_anomaly
        )
        for i, o in enumerate(outcomes[:MAX_PLOTS])
    }
    m = metrics
    summary = (
        f"rows (is_anomaly): F1 {m['test_row_f1']:.3f} (random {m['test_random_row_f1']:.3f}, always "
        f"{m['test_always_row_f1']:.3f}), range F1 {m['test_row_range_f1']:.3f} (random "
        f"{m['test_random_row_range_f1']:.3f}, always {m['test_always_row_range_f1']:.3f}); "
        f"alerts: NAB standard {m['test_alert_nab_standard']:.1f} (random {m['test_random_alert_nab_standard']:.1f}, "
        f"always-anomalous {m['test_always_alert_nab_standard']:.1f}), event recall "
        f"{m['test_alert_event_recall']:.2f}, precision {m['test_alert_event_precision']:.2f}; "
        f"{len(outcomes)} series{_unlabelled_note(outcomes)}{_skipped_note(skipped)}; {rule}"
    )
    return Report(metrics, tables, figures, summary)


def _unlabelled_note(outcomes: list[SeriesOutcome]) -> str:
    unlabelled = sum(not o.series.labelled for o in outcomes)
    if not unlabelled:
        return ""
    return f" ({unlabelled} without labels: in the flag rates only)"


def _skipped_note(skipped: list[str] | tuple) -> str:
    if not skipped:
        return ""
    shown = ", ".join(skipped[:5]) + (", ..." if len(skipped) > 5 else "")
    return f"; {len(skipped)} skipped, their normal prefix too short: {shown}"


def per_series_table(outcomes: list[SeriesOutcome]) -> pd.DataFrame:
    """One row per series: split sizes, thresholds, flagged rows and alerts (and how many alerts the
    spatial check raised), row F1 and range F1 of ``is_anomaly``, NAB standard raw score of the
    alerts, repairs; the label-based columns are empty for a series without labels.

    Args:
        outcomes: the model's detections per series.

    Returns:
        The table.
    """
    rows = []
    for o in outcomes:
        scored = slice(o.scored_from, None)
        found = o.detection
        row = {
            "series": o.series.name,
            "rows": len(o.series),
            "train_rows": o.n_train,
            "prefix_rows": o.n_prefix,
            "scored_from": o.scored_from,
            "labelled": o.series.labelled,
            "windows": np.nan,
            "row_threshold": o.detector.state_threshold,
            "alert_threshold": o.detector.threshold,
            "flagged_rows": int(found.is_anomaly[scored].sum()),
            "alerts": int(found.alert[scored].sum()),
            "spatial_alerts": int((found.alert & found.spatial)[scored].sum()),
            "row_f1": np.nan,
            "row_range_f1": np.nan,
            "detected_windows": np.nan,
            "false_positives": np.nan,
            "nab_standard_raw": np.nan,
            "nab_standard_null": np.nan,
            "repairs": "; ".join(f"{k}: {v}" for k, v in o.series.repairs.items()),
        }
        if o.series.labelled:
            standard = nab_series_score(o.series, found.alert, PROFILES["standard"])
            labels = o.series.labels[scored]
            row.update(
                windows=len(o.series.windows),
                row_f1=pointwise(labels, found.is_anomaly[scored])["f1"],
                row_range_f1=rangewise(range_counts(labels, found.is_anomaly[scored]))["range_f1"],
                detected_windows=standard.detected_windows,
                false_positives=standard.false_positives,
                nab_standard_raw=standard.raw,
                nab_standard_null=standard.null,
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
    """NAB's results format, ``timestamp,value,anomaly_score,label``, one row per data row of the file.

    ``anomaly_score`` carries the alerts: 1.0 on a row with an alert, 0.0 elsewhere, so NAB's scorer
    at any threshold in (0, 1] (its threshold optimisation picks one) counts exactly the alerts.
    ``value`` is the first value column; a row the loader dropped as a repeated timestamp repeats the
    kept row's value and carries no alert.

    Args:
        outcome: one series after detection.

    Returns:
        The table.
    """
    series = outcome.series
    stamps = series.timestamps if series.file_timestamps is None else series.file_timestamps
    kept = series.timestamps.get_indexer(stamps)  # a dropped row's timestamp is a kept row's
    labels = np.zeros(len(stamps), dtype=np.int8)
    for first, last in file_windows(series):
        labels[first : last + 1] = 1
    return pd.DataFrame(
        {
            "timestamp": stamps.strftime("%Y-%m-%d %H:%M:%S"),
            "value": series.values[kept, 0],
            "anomaly_score": file_flags(series, outcome.detection.alert).astype(np.float64),
            "label": labels,
        }
    )


def series_figure(
    series: Series,
    anomaly_score: np.ndarray,
    alerts: np.ndarray,
    n_prefix: int,
    scored_from: int,
    flagged: np.ndarray | None = None,
) -> Figure:
    """The series (first value column) with its flagged rows and alerts, and its anomaly score over time.

    Args:
        series: the series.
        anomaly_score: ``[0, 1]`` score per row (``is_anomaly`` from 0.5).
        alerts: bool per row.
        n_prefix: rows of the training prefix (shaded grey).
        scored_from: first row scored by the test metrics.
        flagged: ``is_anomaly`` per row, drawn as small marks. Default: ``None``, not drawn.

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
    if flagged is not None and flagged.any():
        rows = np.flatnonzero(flagged)
        top.scatter(stamps[rows], series.values[rows, 0], color="tab:purple", s=3, zorder=2, label="is_anomaly")
    hits = np.flatnonzero(alerts)
    top.scatter(stamps[hits], series.values[hits, 0], color="tab:red", s=18, zorder=3, label="alert")
    bottom.plot(stamps, anomaly_score, lw=0.7, color="black", label="anomaly score")
    bottom.axhline(0.5, color="tab:red", ls="--", lw=0.8, label="is_anomaly from here")
    if scored_from < len(stamps):
        bottom.axvline(stamps[scored_from], color="grey", ls=":", lw=0.8, label="scored from")
    bottom.set_ylim(-0.02, 1.02)
    top.set_title(f"{series.name}: {len(hits)} alerts, {len(series.windows)} labelled windows")
    top.legend(loc="upper left", fontsize=7)
    bottom.legend(loc="upper left", fontsize=7)
    figure.tight_layout()
    return figure
