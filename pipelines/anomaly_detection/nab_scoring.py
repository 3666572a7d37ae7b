"""The NAB score (Lavin & Ahmad 2015), written from NAB's definition in ``nab/sweeper.py`` (v1.1).

Per series of ``n`` rows with labelled windows (inclusive row ranges) and binary alerts:

- The first ``probation = min(floor(0.15 n), 0.15 * 5000)`` rows are not scored at all.
- Every row gets a weight from the scaled sigmoid ``sigma(y) = 2 / (1 + exp(5 y)) - 1`` (``-1`` when
  ``y > 3``). Inside a window of width ``w`` whose last row is ``r``, row ``i`` sits at
  ``y = -(r - i + 1) / w`` (``-1`` on the first row) and weighs ``A_TP * sigma(y) / sigma(-1)``, so
  an alert on a window's first row earns exactly ``A_TP``. Outside windows, a row after a window
  (width ``w``, last row ``r``) sits at ``y = |i - r| / (w - 1)`` and weighs ``A_FP * sigma(y)``
  (negative, approaching ``-A_FP``); a row before any window weighs ``-A_FP``.
- A window scores the weight of its earliest alert (its highest), or ``-A_FN`` without one; every
  alert outside windows adds its (negative) weight. The raw score is the sum.
- Over a corpus the raw scores are summed and normalised between the null detector (no alerts) and
  the perfect one (``A_TP`` per window): ``100 * (raw - null) / (perfect - null)``, so no alerts
  scores 0 and a first-row alert in every window 100.

The application profiles (``A_TP, A_FP, A_FN``) are NAB's ``config/profiles.json``. One deviation:
NAB divides by zero for a false positive after a one-row window; here that row weighs ``-A_FP``.

``read_results_files`` and ``optimised_score`` score NAB-format results files the way NAB's own
``run.py --optimize --score --normalize`` does (``nab/sweeper.py``): the timestamps and windows of
the data set, the results files' ``anomaly_score`` row by row, and one corpus-wide threshold per
profile, the one whose raw score is highest. The pipeline's results files carry its alerts as 1.0
(0.0 elsewhere), so every threshold in (0, 1] counts exactly the alerts.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import expit

from pipelines.errors import DataError


@dataclass(frozen=True)
class Profile:
    """NAB application profile: the weights of a true positive, a false positive, a false negative."""

    tp: float
    fp: float
    fn: float


PROFILES = {
    "standard": Profile(tp=1.0, fp=0.11, fn=1.0),
    "reward_low_fp_rate": Profile(tp=1.0, fp=0.22, fn=1.0),
    "reward_low_fn_rate": Profile(tp=1.0, fp=0.11, fn=2.0),
}
PROBATION_PERCENT = 0.15


def probationary_length(rows: int, percent: float = PROBATION_PERCENT) -> int:
    """NAB's probationary period: ``min(floor(percent * rows), percent * 5000)`` rows.

    Args:
        rows: series length.
        percent: NAB's probationary share. Default: ``PROBATION_PERCENT``.

    Returns:
        Rows at the start that are not scored.
    """
    return int(min(math.floor(percent * rows), percent * 5000))


def scaled_sigmoid(position: np.ndarray) -> np.ndarray:
    """``2 * sigmoid(-5 y) - 1``, and ``-1`` for ``y > 3`` (NAB's ``scaledSigmoid``).

    Args:
        position: relative positions ``y``.

    Returns:
        One weight per position, in ``[-1, 1]``.
    """
    position = np.asarray(position, dtype=np.float64)
    return np.where(position > 3.0, -1.0, 2.0 * expit(-5.0 * np.minimum(position, 3.0)) - 1.0)


def row_weights(rows: int, windows: list[tuple[int, int]], profile: Profile) -> tuple[np.ndarray, np.ndarray]:
    """Weight of an alert on each row, and each row's window index (-1 outside windows).

    Args:
        rows: series length.
        windows: inclusive ``(first, last)`` row ranges, in order, not overlapping.
        profile: the application profile.

    Returns:
        ``(weights, window_of_row)``, both of length ``rows``.
    """
    index = np.arange(rows)
    window_of_row = np.full(rows, -1)
    position = np.full(rows, np.inf)  # before any window: a full false positive
    previous = np.full(rows, -1)
    for k, (first, last) in enumerate(windows):
        width = last - first + 1
        inside = slice(first, last + 1)
        window_of_row[inside] = k
        position[inside] = -(last - index[inside] + 1) / width
        previous[last + 1 :] = k
    after = (window_of_row < 0) & (previous >= 0)
    if after.any():
        ends = np.array([last for _, last in windows])[previous[after]]
        widths = np.array([last - first + 1 for first, last in windows])[previous[after]]
        with np.errstate(divide="ignore"):
            position[after] = np.abs(index[after] - ends) / (widths - 1.0)
    unweighted = scaled_sigmoid(position)
    max_tp = float(scaled_sigmoid(-1.0))
    weights = np.where(window_of_row >= 0, unweighted * profile.tp / max_tp, unweighted * profile.fp)
    return weights, window_of_row


@dataclass(frozen=True)
class SeriesScore:
    """Raw NAB score of one series and its parts."""

    raw: float
    null: float
    detected_windows: int
    scored_windows: int
    false_positives: int


def score_series(alerts: np.ndarray, windows: list[tuple[int, int]], profile: Profile, probation: int) -> SeriesScore:
    """The raw NAB score of one series.

    Args:
        alerts: bool per row.
        windows: inclusive ``(first, last)`` row ranges of the labelled anomalies.
        profile: the application profile.
        probation: rows at the start that are not scored (see ``probationary_length``).

    Returns:
        A ``SeriesScore``; ``null`` is the raw score of the null detector on this series.
    """
    alerts = np.asarray(alerts, dtype=bool)
    weights, window_of_row = row_weights(len(alerts), windows, profile)
    scored = np.arange(len(alerts)) >= probation
    hits = alerts & scored
    raw, null, detected, scored_windows = 0.0, 0.0, 0, 0
    for k in range(len(windows)):
        in_window = (window_of_row == k) & scored
        if not in_window.any():
            continue  # a window entirely in the probationary period is not scored (as in NAB)
        scored_windows += 1
        null -= profile.fn
        caught = in_window & hits
        if caught.any():
            detected += 1
            raw += float(weights[caught].max())
        else:
            raw -= profile.fn
    false_positives = hits & (window_of_row < 0)
    raw += float(weights[false_positives].sum())
    return SeriesScore(raw, null, detected, scored_windows, int(false_positives.sum()))


def normalized_score(scores: list[SeriesScore], windows: int, profile: Profile) -> float:
    """NAB's normalised corpus score: ``100 * (raw - null) / (perfect - null)``; NaN without windows.

    Args:
        scores: per-series ``SeriesScore`` of one detector and profile.
        windows: labelled windows in the corpus (the perfect detector earns ``A_TP`` for each).
        profile: the application profile.

    Returns:
        The score; NaN when the corpus has no windows.
    """
    raw = sum(score.raw for score in scores)
    null = sum(score.null for score in scores)
    perfect = windows * profile.tp
    return float("nan") if perfect == null else 100.0 * (raw - null) / (perfect - null)


@dataclass(frozen=True)
class ResultsFile:
    """One NAB results file as NAB's scorer reads it: its anomaly scores and the labelled windows, in
    the data file's rows (duplicated timestamps included)."""

    name: str
    anomaly_score: np.ndarray
    windows: list[tuple[int, int]]


def threshold_sweep(files: list[ResultsFile], profile: Profile) -> list[tuple[float, float]]:
    """The corpus' raw NAB score at every threshold, as NAB's ``Sweeper.calcScoreByThreshold`` lists them.

    A row is a detection at threshold ``T`` when its anomaly score is ``>= T``; rows of the
    probationary period are not scored; a window scores the weight of its earliest detection or
    ``-A_FN``; every detection outside windows adds its (negative) weight.

    Args:
        files: the results files of one detector.
        profile: the application profile.

    Returns:
        ``(threshold, raw score)`` pairs from the highest threshold (``inf``: no detection) down.
    """
    scores, weights, window_ids, windows_scored = [], [], [], 0
    for item in files:
        rows = len(item.anomaly_score)
        row_weight, window_of_row = row_weights(rows, item.windows, profile)
        scored = np.arange(rows) >= probationary_length(rows)
        ids = np.where(window_of_row >= 0, window_of_row + windows_scored, -1)
        windows_scored += len(item.windows)
        scores.append(np.asarray(item.anomaly_score, dtype=np.float64)[scored])
        weights.append(row_weight[scored])
        window_ids.append(ids[scored])
    scores, weights, window_ids = (np.concatenate(parts) for parts in (scores, weights, window_ids))
    reachable = set(np.unique(window_ids[window_ids >= 0]).tolist())  # windows with a scored row
    best: dict[int, float] = {}
    total = -profile.fn * len(reachable)
    sweep = [(float("inf"), total)]
    for i in np.argsort(-scores, kind="stable"):
        score, weight, window = float(scores[i]), float(weights[i]), int(window_ids[i])
        if score != sweep[-1][0]:
            sweep.append((score, sweep[-1][1]))
        if window < 0:
            total += weight
        elif window not in best:
            best[window] = weight
            total += profile.fn + weight
        elif weight > best[window]:
            total += weight - best[window]
            best[window] = weight
        sweep[-1] = (score, total)
    return sweep


def optimised_score(files: list[ResultsFile], profile: Profile) -> tuple[float, float]:
    """NAB's ``run.py --optimize --score --normalize``: the corpus-wide threshold that maximises the
    raw score, and the normalised score at it.

    Args:
        files: the results files of one detector.
        profile: the application profile.

    Returns:
        ``(normalised score, threshold)``; the null detector and the perfect one are scored on the
        same files (``normalized_score``).
    """
    sweep = threshold_sweep(files, profile)
    threshold, raw = max(sweep, key=lambda pair: pair[1])  # the first (highest) threshold of the best
    null = sweep[0][1]
    windows = sum(len(item.windows) for item in files)
    perfect = windows * profile.tp
    return (float("nan") if perfect == null else 100.0 * (raw - null) / (perfect - null)), threshold


def read_results_files(results_dir: str | Path, data_root: str | Path, detector: str) -> list[ResultsFile]:
    """Read NAB-format results files (``<category>/<detector>_<name>.csv``) against a NAB-layout data set.

    As NAB's scorer, the timestamps and windows come from the data set (``data/``,
    ``labels/combined_windows.json``) and only the ``anomaly_score`` column from each results file,
    row by row; a window starts at the first row whose timestamp is its start and ends at the first
    row whose timestamp is its end.

    Args:
        results_dir: the detector's folder (NAB's ``results/<detector>/``).
        data_root: the NAB-layout folder the results were made from.
        detector: the detector's name, the results files' prefix.

    Returns:
        One ``ResultsFile`` per results file found, sorted by series.
    """
    results_dir, data_root = Path(results_dir), Path(data_root)
    labels_path = data_root / "labels" / "combined_windows.json"
    labels = json.loads(labels_path.read_text(encoding="utf-8")) if labels_path.is_file() else {}
    found = sorted(results_dir.rglob(f"{detector}_*.csv"))
    if not found:
        raise DataError(f"{results_dir}: no results files named {detector}_*.csv")
    files = []
    for path in found:
        relative = path.relative_to(results_dir)
        key = (relative.parent / relative.name[len(detector) + 1 :]).as_posix()
        data_path = data_root / "data" / key
        if not data_path.is_file():
            raise DataError(f"{path}: no data file {data_path} for it")
        stamps = pd.to_datetime(pd.read_csv(data_path)["timestamp"])
        scores = pd.read_csv(path)["anomaly_score"].to_numpy(dtype=np.float64)
        if len(scores) != len(stamps):
            raise DataError(f"{path}: {len(scores)} rows, but {data_path} has {len(stamps)}; NAB pairs them row by row")
        windows = []
        for start, end in labels.get(key, []):
            rows = [np.flatnonzero(stamps.to_numpy() == np.datetime64(pd.Timestamp(limit))) for limit in (start, end)]
            if not (len(rows[0]) and len(rows[1])):
                raise DataError(f"{labels_path}: window [{start}, {end}] of {key} is not on rows of {data_path}")
            windows.append((int(rows[0][0]), int(rows[1][0])))
        files.append(ResultsFile(key, scores, windows))
    return files
