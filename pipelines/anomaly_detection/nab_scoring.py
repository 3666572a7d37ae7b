"""The NAB score (Lavin & Ahmad 2015), written from NAB's definition in ``nab/sweeper.py`` (v1.1).

Per series of ``n`` rows with labelled windows (inclusive row ranges) and binary alerts:

- The first ``probation = min(floor(0.15 n), 0.15 * 5000)`` rows are not scored at all.
- Every row gets a weight from the scaled sigmoid ``sigma(y) = 2 / (1 + exp(5 y)) - 1`` (``-1`` when
  ``y >= 3``). Inside a window of width ``w`` whose last row is ``r``, row ``i`` sits at
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
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import expit


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
    """``2 * sigmoid(-5 y) - 1``, and ``-1`` for ``y >= 3`` (NAB's ``scaledSigmoid``).

    Args:
        position: relative positions ``y``.

    Returns:
        One weight per position, in ``[-1, 1]``.
    """
    position = np.asarray(position, dtype=np.float64)
    return np.where(position >= 3.0, -1.0, 2.0 * expit(-5.0 * np.minimum(position, 3.0)) - 1.0)


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
    position = np.full(rows, 3.0)  # before any window: a full false positive
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
