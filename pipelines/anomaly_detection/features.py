"""What the network sees: each series scaled with statistics of its training rows, cut into windows.

Each series is standardised per column with scikit-learn's ``StandardScaler`` fitted on its training
rows only (``data.py`` splits it), then clipped to ``+-CLIP`` training standard deviations: a real
sensor can jump by a thousand of them and more, which would swamp a pooled squared loss, while a
clipped value still lies far outside anything normal and scores as an anomaly. A column constant over the
training rows is centred, not scaled (a repair, logged).

Prediction detector: the window of origin ``o`` is rows ``o - window + 1 .. o``, its target rows
``o + 1 .. o + steps`` (flattened step-major to ``steps * features`` outputs), both taken relative
to row ``o``: the network forecasts changes from the last value it saw, so a level it never saw in
training (common in real sensors) does not push it outside what it learned. A sample belongs to
the split its targets are in, so no validation row is ever a training target.
Reconstruction detector: the window ending at row ``t`` is its own target; a validation window
lies entirely in the validation rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from sklearn.preprocessing import StandardScaler

from pipelines.anomaly_detection.data import Series
from pipelines.errors import DataError

logger = logging.getLogger(__name__)

DETECTORS = ("prediction", "reconstruction")
MIN_SAMPLES = 10  # fewest training and validation samples per series
CLIP = 10.0


def fit_scaler(values: np.ndarray, name: str = "") -> StandardScaler:
    """Per-column standardisation fitted on a series' training rows.

    Args:
        values: the training rows' raw values, ``(rows, features)``.
        name: the series, for the warning about constant columns. Default: ``""``.

    Returns:
        A fitted ``StandardScaler``; its ``scale_`` is 1 for a column constant over ``values``.
    """
    scaler = StandardScaler().fit(np.asarray(values, dtype=np.float64))
    constant = scaler.scale_ != np.sqrt(scaler.var_)  # StandardScaler sets 1 for a constant column
    if constant.any():
        logger.warning(
            "series %s: %d value column(s) constant over the training rows; centred, not scaled",
            name, int(constant.sum()),
        )  # fmt: skip
    return scaler


def scaler_from_state(mean: np.ndarray, scale: np.ndarray) -> StandardScaler:
    """The fitted ``StandardScaler`` of a saved ``mean_`` and ``scale_`` (the served model's state).

    Args:
        mean: per-column means, ``(features,)``.
        scale: per-column standard deviations (1 for a constant column), ``(features,)``.

    Returns:
        A ``StandardScaler`` that transforms as the one these were read from.
    """
    scaler = StandardScaler()
    scaler.mean_ = np.asarray(mean, dtype=np.float64).reshape(-1)
    scaler.scale_ = np.asarray(scale, dtype=np.float64).reshape(-1)
    scaler.n_features_in_ = len(scaler.mean_)
    return scaler


def scale(scaler: StandardScaler, values: np.ndarray) -> np.ndarray:
    """Standardised values clipped to ``+-CLIP``, as the network takes them.

    Args:
        scaler: a fitted scaler (``fit_scaler`` or ``scaler_from_state``).
        values: raw values, ``(rows, features)``.

    Returns:
        float32 ``(rows, features)``.
    """
    scaled = scaler.transform(np.asarray(values, dtype=np.float64))
    return np.clip(scaled, -CLIP, CLIP).astype(np.float32)


@dataclass(eq=False)
class SeriesPart:
    """One series prepared for the network: its scaler, scaled values and split rows.

    Attributes:
        series: the series.
        scaler: fitted on rows ``[0, n_train)``.
        scaled: all rows, scaled.
        n_train: rows that train the network.
        n_prefix: rows of the assumed-normal prefix (training and validation rows).
    """

    series: Series
    scaler: StandardScaler
    scaled: np.ndarray
    n_train: int
    n_prefix: int

    @property
    def bounds(self) -> dict[str, tuple[int, int]]:
        """``{split: (first, last)}``, the rows ``[first, last)`` of each split."""
        return {
            "train": (0, self.n_train),
            "val": (self.n_train, self.n_prefix),
            "test": (self.n_prefix, len(self.series)),
        }


def series_part(series: Series, n_train: int, n_prefix: int) -> SeriesPart:
    """Fit the scaler on the training rows of ``series`` and scale all of its rows.

    Args:
        series: the series.
        n_train: rows that train the network.
        n_prefix: rows of the assumed-normal prefix.

    Returns:
        A ``SeriesPart``.
    """
    scaler = fit_scaler(series.values[:n_train], series.name)
    return SeriesPart(series, scaler, scale(scaler, series.values), n_train, n_prefix)


def first_scored_row(detector: str, window: int, steps: int) -> int:
    """First row with a score: a prediction needs ``window + steps - 1`` rows before it.

    Args:
        detector: ``"prediction"`` or ``"reconstruction"``.
        window: input window length.
        steps: forecast steps (prediction detector).

    Returns:
        The row index.
    """
    return window + steps - 1 if detector == "prediction" else window - 1


def check_lengths(name: str, n_rows: int, n_train: int, n_prefix: int, detector: str, window: int, steps: int) -> None:
    """Raise ``DataError`` unless both splits hold ``MIN_SAMPLES`` samples and a test part exists.

    Args:
        name: the series, for the message.
        n_rows: rows of the series.
        n_train: training rows.
        n_prefix: rows of the assumed-normal prefix.
        detector: ``"prediction"`` or ``"reconstruction"``.
        window: input window length.
        steps: forecast steps (prediction detector).
    """
    if detector == "prediction":
        train, val = n_train - window - steps + 1, n_prefix - n_train - steps + 1
    else:
        train, val = n_train - window + 1, n_prefix - n_train - window + 1
    if min(train, val) < MIN_SAMPLES or n_rows <= n_prefix:
        raise DataError(
            f"series {name}: its normal prefix has {n_prefix} of {n_rows} rows ({n_train} train, "
            f"{n_prefix - n_train} validation), giving {train} training and {val} validation samples with "
            f"features.window={window}, model.prediction_steps={steps} ({detector}); need {MIN_SAMPLES} of each "
            "and rows after the prefix. Use a shorter features.window or a larger data.train_fraction / "
            "data.train_max_rows."
        )


def sliding_windows(scaled: np.ndarray, window: int) -> np.ndarray:
    """All windows of a series.

    Args:
        scaled: the scaled series, ``(rows, features)``.
        window: window length.

    Returns:
        A view ``(rows - window + 1, window, features)``; window ``i`` ends at row ``i + window - 1``.
    """
    return np.lib.stride_tricks.sliding_window_view(scaled, window, axis=0).transpose(0, 2, 1)


def prediction_samples(
    scaled: np.ndarray, window: int, steps: int, first: int, last: int
) -> tuple[np.ndarray, np.ndarray]:
    """Samples of the prediction detector whose targets lie in rows ``[first, last)``.

    Args:
        scaled: the scaled series, ``(rows, features)``.
        window: input window length.
        steps: rows forecast from each window.
        first: first row of the split.
        last: row after the split's last.

    Returns:
        ``x (n, window, features)`` and ``y (n, steps * features)``, both relative to each window's
        last row.
    """
    origins = np.arange(max(first - 1, window - 1), last - steps)
    views = sliding_windows(scaled, window)
    last_values = scaled[origins][:, None, :]
    x = views[origins - window + 1] - last_values
    targets = sliding_windows(scaled, steps)[origins + 1] - last_values
    return np.ascontiguousarray(x), np.ascontiguousarray(targets.reshape(len(origins), -1))


def reconstruction_samples(scaled: np.ndarray, window: int, first: int, last: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows lying entirely in rows ``[first, last)``; the target is the input.

    Args:
        scaled: the scaled series, ``(rows, features)``.
        window: window length.
        first: first row of the split.
        last: row after the split's last.

    Returns:
        ``(x, x)``, ``x`` of shape ``(n, window, features)``.
    """
    x = np.ascontiguousarray(sliding_windows(scaled, window)[first : last - window + 1])
    return x, x


def split_samples(
    scaled: np.ndarray, detector: str, window: int, steps: int, first: int, last: int
) -> tuple[np.ndarray, np.ndarray]:
    """The detector's samples of rows ``[first, last)`` (``prediction_samples`` or ``reconstruction_samples``).

    Args:
        scaled: the scaled series, ``(rows, features)``.
        detector: ``"prediction"`` or ``"reconstruction"``.
        window: input window length.
        steps: forecast steps (prediction detector).
        first: first row of the split.
        last: row after the split's last.

    Returns:
        ``(x, y)``.
    """
    if detector == "prediction":
        return prediction_samples(scaled, window, steps, first, last)
    return reconstruction_samples(scaled, window, first, last)
