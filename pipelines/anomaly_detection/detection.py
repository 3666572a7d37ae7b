"""From a trained network to per-row anomaly scores and decisions, using only data up to each row.

Every scored row gets three outputs, each from one rule:

- ``is_anomaly`` (**this row is anomalous**, for segment labels and dashboards): the mean raw score
  of the last ``likelihood_average`` rows is above the ``threshold_quantile`` quantile of the same
  means over the validation rows of the normal prefix. The reference is fixed at calibration, so a
  long anomalous stretch (a closed valve, a stuck sensor) stays flagged for as long as it lasts.
- ``anomaly_score`` (0..1): ``sigmoid((mean - threshold) / spread)`` of that same mean, ``spread``
  being the threshold minus the validation means' median; it is 0.5 or more exactly on the rows
  ``is_anomaly`` flags.
- ``alert`` (**an incident starts here**, for paging): a row whose alarm level (below) is above
  its threshold, or whose value leaves the range seen so far (the spatial check), raises an alert
  unless an alert was raised in the ``cooldown`` rows before it. The levels follow the series'
  own recent history, so an alert marks a change, not a state.

The settings are the config's ``detection`` group; ``detect_all`` calibrates and scores every series
of a prepared task and ``calibrate_part`` one series (also the served model's warm-up).

Prediction detector (Malhotra et al. 2015, "Long Short Term Memory Networks for Anomaly Detection in
Time Series"): row ``t`` is forecast ``steps`` times, from the windows ending at rows
``t - 1, ..., t - steps``. Its error vector ``e(t)`` (``steps * features`` values) is scored by its
negative log-likelihood under a multivariate Gaussian fitted on the validation rows' errors.

Reconstruction detector (Malhotra et al. 2016, "LSTM-based Encoder-Decoder for Multi-sensor Anomaly
Detection"): the score of row ``t`` is the mean squared reconstruction error of the window ending at
``t``.

Either way the score of row ``t`` depends on rows ``<= t`` only. For the alert, the score is turned
into the ``level`` that the alarm threshold is applied to, in one of two ways (no labels are used by
either):

- ``likelihood`` (the anomaly likelihood of Ahmad et al. 2017, "Unsupervised real-time anomaly
  detection for streaming data", the post-processing of NAB's HTM detector): the level of row ``t``
  is the z-score of the mean of the last ``average`` scores against the mean and standard deviation
  of the ``history`` scores before them, starting from the validation rows' scores. It follows a
  series whose errors drift, so a detector trained on a short prefix keeps a steady alarm rate.
  The threshold is a fixed z (``likelihood_threshold``). With ``record`` rows (``record_history``),
  a row above the threshold alerts only when its recent mean is also higher than every recent
  mean in the ``record`` rows before it: a burst no larger than one the series has already shown
  is not news, however unlikely the history's Gaussian makes it.
- ``raw``: the level is the score; the threshold is the ``threshold_quantile`` of the validation
  rows' scores.

With ``likelihood`` scoring the values themselves can be checked too (``value_gaussian``): each
row's distance from the mean of the ``history`` values before it, in their standard deviations
(largest over the features; a windowed Gaussian), goes through its own likelihood and record rule
with the same threshold, starting from the validation rows' distances. It catches level shifts and
spikes whose windows the network reconstructs well. Seasonal checks (``seasonal_periods``, rows)
do the same for each row's change from the row one period before it (the same time a day or a
week earlier), which catches a day that departs from the days before it without leaving their range.

A row is also an alert candidate when one of its values leaves the range of the values seen before
it (the training prefix included) by more than ``spatial_tolerance`` times that range's width: the
"spatial anomaly" of NAB's HTM detector (tolerance 0.05 there), which accounts for the labelling
bias towards values larger or smaller than any seen so far. ``spatial_tolerance=None`` turns it off.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy.special import expit
from scipy.stats import multivariate_normal
from sklearn.preprocessing import StandardScaler

from pipelines.anomaly_detection.data import Series
from pipelines.anomaly_detection.features import (
    SeriesPart,
    first_scored_row,
    scale,
    scaler_from_state,
    sliding_windows,
)
from pipelines.anomaly_detection.nab_scoring import probationary_length

if TYPE_CHECKING:
    import keras

    from pipelines.anomaly_detection.task import AnomalySplits, DetectionConfig

Predict = Callable[[np.ndarray], np.ndarray]

JUST_BELOW_HALF = float(np.nextafter(0.5, 0.0))
SCORINGS = ("likelihood", "raw")
# The likelihood's standard deviation never drops below this share of (1 + |mean|): a flat stretch of
# near-identical scores would otherwise turn the smallest change into an enormous z.
STD_FLOOR = 1e-3
MIN_HISTORY = 10


@dataclass(frozen=True)
class Likelihood:
    """Settings of the anomaly likelihood: rows of history, rows averaged, the validation scores the
    history starts from, and the rows of the record rule (0: off)."""

    history: int
    average: int
    seed: np.ndarray
    record: int = 0

    def levels(self, scores: np.ndarray) -> np.ndarray:
        """z-score of each row's recent mean score against the history before it; NaN where the score is.

        Args:
            scores: raw scores of consecutive rows, oldest first (NaN where undefined).

        Returns:
            One level per row; row ``t`` depends on ``seed`` and ``scores[: t + 1]`` only.
        """
        scores = np.asarray(scores, dtype=np.float64)
        stream = pd.Series(np.concatenate([self.seed, scores]))
        past = stream.rolling(self.history, min_periods=min(MIN_HISTORY, max(2, len(self.seed)))).agg(["mean", "std"])
        past = past.shift(1)
        recent = stream.rolling(self.average, min_periods=1).mean()
        std = np.maximum(past["std"], STD_FLOOR * (1.0 + past["mean"].abs()))
        levels = ((recent - past["mean"]) / std).to_numpy(copy=True)[len(self.seed) :]
        levels[np.isnan(scores)] = np.nan
        return levels

    def records(self, scores: np.ndarray) -> np.ndarray:
        """Whether each row's recent mean score beats every recent mean in the ``record`` rows before it.

        Args:
            scores: raw scores of consecutive rows, oldest first.

        Returns:
            One bool per row, all true when ``record`` is 0; row ``t`` depends on ``seed`` and
            ``scores[: t + 1]`` only. A row with nothing before it counts as a record.
        """
        scores = np.asarray(scores, dtype=np.float64)
        if self.record == 0:
            return np.ones(len(scores), dtype=bool)
        recent = pd.Series(np.concatenate([self.seed, scores])).rolling(self.average, min_periods=1).mean()
        before = recent.rolling(self.record, min_periods=1).max().shift(1)
        return (before.isna() | (recent > before)).to_numpy()[len(self.seed) :]


def value_distances(values: np.ndarray, history: int, past: np.ndarray | None = None) -> np.ndarray:
    """Each row's ``|value - mean| / std`` over the ``history`` values before it, largest over the features.

    Args:
        values: raw values ``(rows, features)``, oldest first.
        history: rows of past values the mean and standard deviation are taken over.
        past: raw values ``(rows, features)`` just before ``values``; ``None``: nothing before.

    Returns:
        One distance per row of ``values``; NaN while fewer than 10 values came before. Row ``t``
        depends on ``past`` and ``values[: t + 1]`` only.
    """
    values = np.asarray(values, dtype=np.float64)
    stream = pd.DataFrame(values if past is None else np.vstack([np.asarray(past, dtype=np.float64), values]))
    before = stream.rolling(history, min_periods=MIN_HISTORY)
    mean, std = before.mean().shift(1), before.std().shift(1)
    distance = ((stream - mean).abs() / np.maximum(std, 1e-9)).max(axis=1)
    return distance.to_numpy()[len(stream) - len(values) :]


def seasonal_distances(values: np.ndarray, history: int, period: int, past: np.ndarray | None = None) -> np.ndarray:
    """``value_distances`` of each row's change from the row ``period`` rows before it.

    Args:
        values: raw values ``(rows, features)``, oldest first.
        history: rows of past changes the mean and standard deviation are taken over.
        period: rows between a value and the one it is compared with.
        past: raw values ``(rows, features)`` just before ``values``; ``None``: nothing before.

    Returns:
        One distance per row of ``values``; NaN where no row lies ``period`` rows before or fewer
        than 10 changes came before. Row ``t`` depends on ``past`` and ``values[: t + 1]`` only.
    """
    values = np.asarray(values, dtype=np.float64)
    stream = values if past is None else np.vstack([np.asarray(past, dtype=np.float64), values])
    change = np.full_like(stream, np.nan)
    change[period:] = stream[period:] - stream[:-period]
    return value_distances(change, history)[len(stream) - len(values) :]


@dataclass(frozen=True)
class Season:
    """A seasonal check: the period in rows and the likelihood of its distances."""

    period: int
    likelihood: Likelihood


@dataclass(eq=False)
class Gaussian:
    """A multivariate normal fitted on error vectors; ``nll`` is the anomaly score."""

    mean: np.ndarray
    cov: np.ndarray

    @classmethod
    def fit(cls, errors: np.ndarray) -> Gaussian:
        """Fit on error vectors.

        Args:
            errors: ``(rows, dims)`` error vectors (no NaN rows).

        Returns:
            A ``Gaussian``.
        """
        errors = np.asarray(errors, dtype=np.float64)
        cov = np.atleast_2d(np.cov(errors, rowvar=False))
        # A small ridge keeps near-perfect forecasts (a flat line) from giving a singular covariance.
        ridge = 1e-6 * (1.0 + np.trace(cov) / len(cov))
        return cls(mean=errors.mean(axis=0), cov=cov + ridge * np.eye(len(cov)))

    def nll(self, errors: np.ndarray) -> np.ndarray:
        """Negative log-likelihood of each row of ``errors``.

        Args:
            errors: ``(rows, dims)`` error vectors.

        Returns:
            One value per row.
        """
        return -np.atleast_1d(multivariate_normal(self.mean, self.cov).logpdf(errors))


@dataclass(eq=False)
class Detection:
    """Per-row outputs; rows before the first scored row have ``score`` or ``level`` NaN and anomaly score 0."""

    score: np.ndarray
    level: np.ndarray
    anomaly_score: np.ndarray
    alert: np.ndarray
    is_anomaly: np.ndarray  # the row decision (module docstring)
    state: np.ndarray  # the mean score of the last rows that ``is_anomaly`` compares with its threshold
    spatial: np.ndarray  # rows whose value left the range seen before them (alert or not)
    record: np.ndarray  # rows that pass the likelihood's record rule (all rows when it is off)
    value_level: np.ndarray  # the value check's level (NaN where it is off or undefined)
    value_record: np.ndarray  # rows that pass the value check's record rule
    seasonal_level: np.ndarray  # the highest level of the seasonal checks whose record rule passes (NaN: none)


def error_features(predict: Predict, scaled: np.ndarray, detector: str, window: int, steps: int) -> np.ndarray:
    """Per-row errors of the network; NaN rows before ``first_scored_row``.

    Args:
        predict: ``x (n, window, features) -> outputs`` (the Keras model's ``predict``).
        scaled: the scaled series, ``(rows, features)``.
        detector: ``"prediction"`` or ``"reconstruction"``.
        window: input window length.
        steps: forecast steps (prediction detector).

    Returns:
        ``(rows, steps * features)`` forecast errors ``e(t)`` (block ``j - 1`` is the error of the
        forecast made ``j`` rows earlier), or ``(rows, 1)`` window reconstruction MSE.
    """
    rows, features = scaled.shape
    views = sliding_windows(scaled, window)
    if detector == "prediction":
        first = first_scored_row(detector, window, steps)
        out = np.full((rows, steps * features), np.nan)
        if rows <= first:
            return out
        # Window i ends at origin i + window - 1 and forecasts rows origin + 1 .. origin + steps.
        inputs = views[: rows - window]
        last_values = inputs[:, -1:, :]  # (windows, 1, features)
        changes = np.asarray(predict(inputs - last_values), dtype=np.float64).reshape(-1, steps, features)
        forecasts = changes + last_values
        targets = np.arange(first, rows)
        for j in range(1, steps + 1):
            out[first:, (j - 1) * features : j * features] = (
                scaled[targets] - forecasts[targets - window + 1 - j, j - 1]
            )
        return out
    out = np.full((rows, 1), np.nan)
    if rows < window:
        return out
    reconstructed = np.asarray(predict(views), dtype=np.float64).reshape(views.shape)
    out[window - 1 :, 0] = np.mean((reconstructed - views) ** 2, axis=(1, 2))
    return out


def spatial_anomalies(
    values: np.ndarray, tolerance: float, low: np.ndarray | None = None, high: np.ndarray | None = None
) -> np.ndarray:
    """Rows with a value outside the range of the values before them, widened by ``tolerance`` x its width.

    Args:
        values: raw values ``(rows, features)``, oldest first.
        tolerance: share of the seen range's width a value may lie beyond it.
        low: per-feature minimum seen before the first row; ``None``: nothing seen.
        high: per-feature maximum seen before the first row; ``None``: nothing seen.

    Returns:
        One bool per row; row ``t`` depends on ``low``, ``high`` and ``values[: t + 1]`` only. A feature
        whose seen range is still empty or has no width flags nothing.
    """
    values = np.asarray(values, dtype=np.float64)
    features = values.shape[1]
    start_low = np.full(features, np.inf) if low is None else np.asarray(low, dtype=np.float64)
    start_high = np.full(features, -np.inf) if high is None else np.asarray(high, dtype=np.float64)
    seen_low = np.minimum.accumulate(np.vstack([start_low, values]), axis=0)[:-1]
    seen_high = np.maximum.accumulate(np.vstack([start_high, values]), axis=0)[:-1]
    with np.errstate(invalid="ignore"):
        width = seen_high - seen_low
        margin = tolerance * width
        outside = (values > seen_high + margin) | (values < seen_low - margin)
    return (outside & np.isfinite(width) & (width > 0)).any(axis=1)


def alerts_with_cooldown(candidates: np.ndarray, cooldown: int) -> np.ndarray:
    """Keep a candidate unless an alert was kept in the ``cooldown`` rows before it.

    Args:
        candidates: bool per row: the rows whose level is above the threshold.
        cooldown: rows after an alert in which no new alert is raised.

    Returns:
        The alerts, bool per row.
    """
    alert = np.zeros(len(candidates), dtype=bool)
    last = -cooldown - 1
    for i in np.flatnonzero(candidates):
        if i - last > cooldown:
            alert[i] = True
            last = i
    return alert


@dataclass(eq=False)
class SeriesDetector:
    """Everything needed to score one series online: scaler, Gaussian, likelihood, threshold and settings."""

    name: str
    detector: str
    window: int
    steps: int
    cooldown: int
    scaler: StandardScaler
    threshold: float
    spread: float
    gaussian: Gaussian | None = None
    likelihood: Likelihood | None = None
    spatial_tolerance: float | None = None
    seen_low: np.ndarray | None = None  # per-feature range of the training prefix's raw values
    seen_high: np.ndarray | None = None
    value_likelihood: Likelihood | None = None  # the value check (None: off)
    past_values: np.ndarray | None = None  # the prefix's last raw values, before the first scored row
    seasons: tuple[Season, ...] = ()  # the seasonal checks
    state_average: int = 1  # rows whose mean score ``is_anomaly`` compares (``likelihood_average``)
    state_threshold: float | None = None  # None: a model saved before ``is_anomaly`` had its own rule
    state_spread: float = 1.0
    state_seed: np.ndarray | None = None  # the validation rows' last scores, before the first scored row

    def states(self, score: np.ndarray) -> np.ndarray:
        """Mean raw score of the last ``state_average`` rows (the validation rows' scores before the first).

        Args:
            score: raw scores of consecutive rows, oldest first (NaN where undefined).

        Returns:
            One mean per row; NaN where the score is.
        """
        score = np.asarray(score, dtype=np.float64)
        seed = np.empty(0)
        if self.state_seed is not None and self.state_average > 1:
            seed = self.state_seed[max(len(self.state_seed) - self.state_average + 1, 0) :]
        stream = pd.Series(np.concatenate([seed, score]))
        means = stream.rolling(self.state_average, min_periods=1).mean().to_numpy(copy=True)[len(seed) :]
        means[np.isnan(score)] = np.nan
        return means

    @property
    def first_row(self) -> int:
        """The first row with a score (``first_scored_row``)."""
        return first_scored_row(self.detector, self.window, self.steps)

    def features(self, predict: Predict, values: np.ndarray) -> np.ndarray:
        """Error features of raw values.

        Args:
            predict: the network's ``predict``.
            values: raw values ``(rows, features)``, oldest first.

        Returns:
            ``error_features`` of the scaled values.
        """
        return error_features(predict, scale(self.scaler, values), self.detector, self.window, self.steps)

    def scores(self, features: np.ndarray) -> np.ndarray:
        """Raw anomaly scores (Gaussian NLL or reconstruction MSE).

        Args:
            features: ``error_features`` rows.

        Returns:
            One score per row; NaN where the features are undefined.
        """
        score = np.full(len(features), np.nan)
        defined = ~np.isnan(features).any(axis=1)
        if defined.any():
            values = features[defined]
            score[defined] = self.gaussian.nll(values) if self.gaussian is not None else values[:, 0]
        return score

    def levels(self, score: np.ndarray) -> np.ndarray:
        """What the threshold applies to: the likelihood's z-scores, or the raw scores.

        Args:
            score: raw scores of consecutive rows, oldest first.

        Returns:
            One level per row.
        """
        return self.likelihood.levels(score) if self.likelihood is not None else np.asarray(score, dtype=np.float64)

    def detect_scores(self, score: np.ndarray, first_row: int = 0, values: np.ndarray | None = None) -> Detection:
        """Levels, calibrated ``[0, 1]`` scores and alerts from raw scores.

        Args:
            score: raw scores of consecutive rows, oldest first.
            first_row: rows before it (the training prefix) get no level and no alert.
            values: the raw values ``(rows, features)`` of the same rows, for the spatial, value and
                seasonal checks; ``None`` skips them.

        Returns:
            A ``Detection``.
        """
        level = np.full(len(score), np.nan)
        level[first_row:] = self.levels(score[first_row:])
        defined = ~np.isnan(level)
        spatial = np.zeros(len(score), dtype=bool)
        if self.spatial_tolerance is not None and values is not None:
            found = spatial_anomalies(values, self.spatial_tolerance, self.seen_low, self.seen_high)
            spatial[first_row:] = found[first_row:]
        record = np.ones(len(score), dtype=bool)
        if self.likelihood is not None:
            record[first_row:] = self.likelihood.records(score[first_row:])
        value_level, value_record = np.full(len(score), np.nan), np.ones(len(score), dtype=bool)
        if self.value_likelihood is not None and values is not None:
            distance = value_distances(values[first_row:], self.value_likelihood.history, self.past_values)
            value_level[first_row:] = self.value_likelihood.levels(distance)
            value_record[first_row:] = self.value_likelihood.records(distance)
        seasonal_level = np.full(len(score), np.nan)
        for season in self.seasons if values is not None else ():
            likelihood = season.likelihood
            distance = seasonal_distances(values[first_row:], likelihood.history, season.period, self.past_values)
            passed = np.where(likelihood.records(distance), likelihood.levels(distance), np.nan)
            seasonal_level[first_row:] = np.fmax(seasonal_level[first_row:], passed)
        highest = np.fmax(np.fmax(level, value_level), seasonal_level)
        anomaly_score = np.where(np.isnan(highest), 0.0, expit((np.nan_to_num(highest) - self.threshold) / self.spread))
        anomaly_score = np.where(spatial, 1.0, anomaly_score)
        candidates = (
            defined & (np.nan_to_num(level) > self.threshold) & record
            | ~np.isnan(value_level) & (np.nan_to_num(value_level) > self.threshold) & value_record
            | ~np.isnan(seasonal_level) & (np.nan_to_num(seasonal_level) > self.threshold)
            | spatial
        )
        alert = alerts_with_cooldown(candidates, self.cooldown)
        state = np.full(len(score), np.nan)
        state[first_row:] = self.states(score[first_row:])
        if self.state_threshold is None:  # a model saved before the row decision had its own rule
            is_anomaly = alert.copy()
        else:
            is_anomaly = ~np.isnan(state) & (np.nan_to_num(state) > self.state_threshold)
            anomaly_score = np.where(
                np.isnan(state), 0.0, expit((np.nan_to_num(state) - self.state_threshold) / self.state_spread)
            )
        anomaly_score = np.where(is_anomaly, np.maximum(anomaly_score, 0.5), np.minimum(anomaly_score, JUST_BELOW_HALF))
        return Detection(
            score, level, anomaly_score, alert, is_anomaly, state, spatial, record, value_level, value_record,
            seasonal_level,
        )  # fmt: skip

    def detect(self, predict: Predict, values: np.ndarray) -> Detection:
        """Score raw values of this series.

        Args:
            predict: the network's ``predict``.
            values: raw values ``(rows, features)``, oldest first.

        Returns:
            A ``Detection``.
        """
        return self.detect_scores(self.scores(self.features(predict, values)), values=values)

    def to_dict(self) -> dict:
        """The detector as JSON-ready values (the served model's ``detectors.json``).

        Returns:
            A dict that ``from_dict`` reads back.
        """
        state = {
            "name": self.name,
            "detector": self.detector,
            "window": self.window,
            "steps": self.steps,
            "cooldown": self.cooldown,
            "scaler": {"mean": self.scaler.mean_.tolist(), "scale": self.scaler.scale_.tolist()},
            "threshold": self.threshold,
            "spread": self.spread,
            "gaussian": None,
            "likelihood": None,
            "spatial_tolerance": self.spatial_tolerance,
            "seen_low": None if self.seen_low is None else self.seen_low.tolist(),
            "seen_high": None if self.seen_high is None else self.seen_high.tolist(),
        }
        for key in ("likelihood", "value_likelihood"):
            likelihood = getattr(self, key)
            state[key] = None if likelihood is None else likelihood_state(likelihood)
        state["past_values"] = None if self.past_values is None else self.past_values.tolist()
        state["seasons"] = [{"period": season.period, **likelihood_state(season.likelihood)} for season in self.seasons]
        state["state"] = None
        if self.state_threshold is not None:
            state["state"] = {
                "average": self.state_average,
                "threshold": self.state_threshold,
                "spread": self.state_spread,
                "seed": [] if self.state_seed is None else self.state_seed.tolist(),
            }
        if self.gaussian is not None:
            state["gaussian"] = {"mean": self.gaussian.mean.tolist(), "cov": self.gaussian.cov.tolist()}
        return state

    @classmethod
    def from_dict(cls, state: dict) -> SeriesDetector:
        """The detector ``to_dict`` wrote (also one logged before the record rule or the value checks).

        Args:
            state: what ``to_dict`` returned.

        Returns:
            A ``SeriesDetector``.
        """
        gaussian = state["gaussian"]

        def likelihood(key):
            found = state.get(key)  # models logged before the record rule or the value check lack some keys
            return None if found is None else likelihood_from_state(found)

        past, seasons = state.get("past_values"), state.get("seasons") or []
        return cls(
            name=state["name"],
            detector=state["detector"],
            window=int(state["window"]),
            steps=int(state["steps"]),
            cooldown=int(state["cooldown"]),
            scaler=scaler_from_state(state["scaler"]["mean"], state["scaler"]["scale"]),
            threshold=float(state["threshold"]),
            spread=float(state["spread"]),
            gaussian=None if gaussian is None else Gaussian(np.asarray(gaussian["mean"]), np.asarray(gaussian["cov"])),
            likelihood=likelihood("likelihood"),
            spatial_tolerance=state.get("spatial_tolerance"),
            seen_low=None if state.get("seen_low") is None else np.asarray(state["seen_low"], dtype=np.float64),
            seen_high=None if state.get("seen_high") is None else np.asarray(state["seen_high"], dtype=np.float64),
            value_likelihood=likelihood("value_likelihood"),
            past_values=None if past is None else np.asarray(past, dtype=np.float64).reshape(len(past), -1),
            seasons=tuple(Season(int(item["period"]), likelihood_from_state(item)) for item in seasons),
            **_state_from_dict(state.get("state")),
        )


def _state_from_dict(state: dict | None) -> dict:
    """The ``state_*`` fields of ``SeriesDetector`` (none for a model saved before the row decision)."""
    if not state:
        return {}
    return {
        "state_average": int(state["average"]),
        "state_threshold": float(state["threshold"]),
        "state_spread": float(state["spread"]),
        "state_seed": np.asarray(state["seed"], dtype=np.float64),
    }


def likelihood_state(likelihood: Likelihood) -> dict:
    """A likelihood as JSON-ready values.

    Args:
        likelihood: the likelihood.

    Returns:
        A dict that ``likelihood_from_state`` reads back.
    """
    return {
        "history": likelihood.history,
        "average": likelihood.average,
        "seed": likelihood.seed.tolist(),
        "record": likelihood.record,
    }


def likelihood_from_state(state: dict) -> Likelihood:
    """The likelihood ``likelihood_state`` wrote (``record`` 0 when missing: models logged before it).

    Args:
        state: what ``likelihood_state`` returned.

    Returns:
        A ``Likelihood``.
    """
    seed = np.asarray(state["seed"], dtype=np.float64)
    return Likelihood(int(state["history"]), int(state["average"]), seed, int(state.get("record", 0)))


def calibrate(
    name: str,
    detector: str,
    window: int,
    steps: int,
    cooldown: int,
    scaler: StandardScaler,
    val_features: np.ndarray,
    quantile: float,
    *,
    scoring: str = "raw",
    likelihood_history: int = 8640,
    likelihood_average: int = 5,
    likelihood_threshold: float = 4.0,
    record_history: int = 0,
    value_gaussian: bool = False,
    seasonal_periods: tuple[int, ...] = (),
    spatial_tolerance: float | None = None,
    prefix_values: np.ndarray | None = None,
) -> SeriesDetector:
    """Fit the Gaussian (prediction detector) and the threshold on validation errors.

    Args:
        name: the series.
        detector: ``"prediction"`` or ``"reconstruction"``.
        window: input window length.
        steps: forecast steps (prediction detector).
        cooldown: rows after an alert in which no new alert is raised.
        scaler: the series' scaler (fitted on its training rows).
        val_features: error features of the validation rows (no NaN rows).
        quantile: quantile of the validation scores used as the threshold (``raw`` scoring).
        scoring: ``"likelihood"`` or ``"raw"`` (see the module docstring).
        likelihood_history: rows of past scores the likelihood compares with.
        likelihood_average: recent rows whose mean score the likelihood scores.
        likelihood_threshold: the z above which a row is anomalous (``likelihood`` scoring).
        record_history: rows of the likelihood's record rule; 0 turns it off.
        value_gaussian: also check the values' windowed-Gaussian distances (``likelihood`` scoring;
            needs ``prefix_values``).
        seasonal_periods: rows of each seasonal check (``likelihood`` scoring; needs
            ``prefix_values``). A period is skipped when the prefix leaves fewer than 10 of the
            validation rows a change over it with 10 changes before.
        spatial_tolerance: the spatial check's tolerance; ``None`` turns it off.
        prefix_values: raw values ``(rows, features)`` of the training prefix: the range the spatial
            check starts from.

    Returns:
        A ``SeriesDetector``.
    """
    gaussian = Gaussian.fit(val_features) if detector == "prediction" else None
    series = SeriesDetector(name, detector, window, steps, cooldown, scaler, 0.0, 1.0, gaussian)
    series.spatial_tolerance = spatial_tolerance
    if prefix_values is not None and len(prefix_values):
        series.seen_low, series.seen_high = np.min(prefix_values, axis=0), np.max(prefix_values, axis=0)
    val_scores = series.scores(val_features)
    series.state_average = likelihood_average
    series.state_seed = val_scores[-likelihood_average:]
    val_states = pd.Series(val_scores).rolling(likelihood_average, min_periods=1).mean().to_numpy()
    series.state_threshold = float(np.quantile(val_states, quantile))
    state_spread = series.state_threshold - float(np.median(val_states))
    series.state_spread = state_spread if state_spread > 0 else 1e-9 * max(1.0, abs(series.state_threshold))
    if scoring == "likelihood":
        series.likelihood = Likelihood(likelihood_history, likelihood_average, val_scores, record_history)
        series.threshold = float(likelihood_threshold)
        if prefix_values is None or not len(prefix_values):
            return series
        # The value checks start from the validation rows too: the prefix's last rows, one per score.
        if value_gaussian:
            distances = value_distances(prefix_values, likelihood_history)[-len(val_scores) :]
            seed = distances[~np.isnan(distances)]
            series.value_likelihood = Likelihood(likelihood_history, likelihood_average, seed, record_history)
        seasons = []
        for period in seasonal_periods:
            distances = seasonal_distances(prefix_values, likelihood_history, period)[-len(val_scores) :]
            seed = distances[~np.isnan(distances)]
            if len(seed) >= MIN_HISTORY:
                seasons.append(Season(period, Likelihood(likelihood_history, likelihood_average, seed, record_history)))
        series.seasons = tuple(seasons)
        if series.value_likelihood is not None or seasons:
            reach = likelihood_history + max((season.period for season in seasons), default=0)
            series.past_values = np.asarray(prefix_values, dtype=np.float64)[-reach:]
        return series
    series.threshold = float(np.quantile(val_scores, quantile))
    spread = series.threshold - float(np.median(val_scores))
    series.spread = spread if spread > 0 else 1e-9 * max(1.0, abs(series.threshold))
    return series


@dataclass(eq=False)
class SeriesOutcome:
    """One series after detection: its calibrated detector, its detection and its split rows."""

    series: Series
    detector: SeriesDetector
    detection: Detection
    n_train: int
    n_prefix: int

    @property
    def scored_from(self) -> int:
        """First row the test metrics score: ``max(NAB probationary period, training prefix)``."""
        return max(probationary_length(len(self.series)), self.n_prefix)


def calibrate_part(
    predict: Predict, part: SeriesPart, settings: DetectionConfig, detector_kind: str, window: int, steps: int
) -> tuple[SeriesOutcome, dict[str, float]]:
    """Calibrate one prepared series on its validation rows and score all of its rows.

    Args:
        predict: the network's ``predict``.
        part: the series, scaled and split (``features.series_part``).
        settings: the ``detection`` group.
        detector_kind: ``"prediction"`` or ``"reconstruction"``.
        window: input window length.
        steps: forecast steps (prediction detector).

    Returns:
        ``(outcome, stats)``: the ``SeriesOutcome``, and the validation rows' ``error_sum``,
        ``error_count``, ``alarms`` and ``rows``.
    """
    features = error_features(predict, part.scaled, detector_kind, window, steps)
    val_first = part.n_train if detector_kind == "prediction" else part.n_train + window - 1
    val_features = features[val_first : part.n_prefix]
    detector = calibrate(
        part.series.name, detector_kind, window, steps, settings.cooldown,
        part.scaler, val_features, settings.threshold_quantile, scoring=settings.scoring,
        likelihood_history=settings.likelihood_history, likelihood_average=settings.likelihood_average,
        likelihood_threshold=settings.likelihood_threshold, record_history=settings.record_history,
        value_gaussian=settings.value_gaussian,
        seasonal_periods=seasonal_periods(part.series, settings.seasonal_days),
        spatial_tolerance=settings.spatial_tolerance,
        prefix_values=part.series.values[: part.n_prefix],
    )  # fmt: skip
    scores = detector.scores(features)
    detection = detector.detect_scores(scores, first_row=part.n_prefix, values=part.series.values)
    squared = val_features**2 if detector_kind == "prediction" else val_features
    stats = {
        "error_sum": float(squared.sum()),
        "error_count": squared.size,
        "alarms": int((validation_levels(detector, scores[val_first : part.n_prefix]) > detector.threshold).sum()),
        "rows": len(val_features),
    }
    return SeriesOutcome(part.series, detector, detection, part.n_train, part.n_prefix), stats


def detect_all(model: keras.Model, data: AnomalySplits) -> tuple[list[SeriesOutcome], dict[str, float]]:
    """Calibrate and score every series of prepared data with ``data.detection``'s settings.

    Args:
        model: the trained network.
        data: the task's prepared splits.

    Returns:
        ``(outcomes, stats)``: one ``SeriesOutcome`` per series, and the validation rows' summed
        ``error_sum``, ``error_count``, ``alarms`` and ``rows``.
    """
    predict = lambda x: model.predict(x, batch_size=1024, verbose=0)  # noqa: E731
    outcomes = []
    stats = {"error_sum": 0.0, "error_count": 0, "alarms": 0, "rows": 0}
    for part in data.parts:
        outcome, part_stats = calibrate_part(predict, part, data.detection, data.detector, data.window, data.steps)
        outcomes.append(outcome)
        for key, value in part_stats.items():
            stats[key] += value
    return outcomes, stats


def seasonal_periods(series: Series, days: list[float]) -> tuple[int, ...]:
    """Rows per period of each of ``days`` at the series' median time step.

    Args:
        series: the series.
        days: the periods in days (``detection.seasonal_days``).

    Returns:
        The periods in rows, ascending, without repeats; a period under 2 rows is dropped.
    """
    if len(series.timestamps) < 2:
        return ()
    step = float(np.median((series.timestamps[1:] - series.timestamps[:-1]).total_seconds()))
    periods = (int(round(d * 86400 / step)) for d in days)
    return tuple(sorted({period for period in periods if period >= 2}))


def validation_levels(detector: SeriesDetector, val_scores: np.ndarray) -> np.ndarray:
    """Levels of the validation rows on their own.

    The likelihood starts from an empty history there (its first rows have none), since the
    validation scores are its seed for the test rows.

    Args:
        detector: the calibrated detector.
        val_scores: raw scores of the validation rows.

    Returns:
        One level per row.
    """
    if detector.likelihood is None:
        return val_scores
    return dataclasses.replace(detector.likelihood, seed=np.empty(0)).levels(val_scores)


def alarm_rule(settings: DetectionConfig) -> str:
    """The two decision rules of a ``detection`` config group, in words.

    Args:
        settings: the ``detection`` group.

    Returns:
        One sentence, for the run's summary.
    """
    row = (
        f"is_anomaly when the mean score of the last {settings.likelihood_average} rows is above the "
        f"{settings.threshold_quantile:g} quantile of the validation rows' such means"
    )
    if settings.scoring == "likelihood":
        rule = (
            f"alert when the mean score of the last {settings.likelihood_average} rows is more than "
            f"{settings.likelihood_threshold:g} standard deviations above the mean of the "
            f"{settings.likelihood_history} before"
        )
        if settings.record_history:
            rule += f" and higher than every such mean in the {settings.record_history} rows before"
        if settings.value_gaussian:
            rule += (
                f"; the same for each value's distance from the mean of the {settings.likelihood_history} values "
                "before it, in their standard deviations (a windowed Gaussian)"
            )
        if settings.seasonal_days:
            days = ", ".join(f"{d:g}" for d in settings.seasonal_days)
            rule += f"; the same for each value's change since the same time {days} day(s) before"
    else:
        rule = f"alert above the {settings.threshold_quantile:g} quantile of each series' validation scores"
    if settings.spatial_tolerance is not None:
        rule += (
            f", or when a value leaves the range of the values before it by more than {settings.spatial_tolerance:g} "
            "of its width (the spatial check of NAB's HTM detector)"
        )
    return f"{row}; {rule}, cooldown {settings.cooldown} rows"
