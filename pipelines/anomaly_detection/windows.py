"""The normal prefix of each series, scaling fitted on it, and the model's input windows.

Rows ``[0, n_prefix)`` of a series are assumed normal: by default NAB's probationary period
(15% of the rows, at most 750), cut before the first labelled anomaly if one starts earlier. The
prefix is split in time: rows ``[0, n_train)`` train the network, rows ``[n_train, n_prefix)``
(validation) stop training early and calibrate the scores (Gaussian, threshold). Every row from
``n_prefix`` on is test data. The scaler sees the training rows only, and clips scaled values to
``+-CLIP`` training standard deviations: real sensors jump by thousands of them (one NAB disk-write
series reaches 1,200 in its validation rows), which would swamp a pooled squared loss, while a
clipped value still lies far outside anything normal and scores as an anomaly.

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
import math
from dataclasses import dataclass

import numpy as np

from pipelines.errors import DataError

logger = logging.getLogger(__name__)

DETECTORS = ("prediction", "reconstruction")
MIN_SAMPLES = 10  # fewest training and validation samples per series
CLIP = 10.0


@dataclass(eq=False)
class Scaler:
    """Per-column standardisation fitted on training rows, clipped to ``+-CLIP``; ``scale`` is 1 for
    a column that is constant over the training rows (a repair, logged)."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, values: np.ndarray, name: str = "") -> Scaler:
        mean = values.mean(axis=0)
        scale = values.std(axis=0)
        constant = ~(scale > 0)
        if constant.any():
            logger.warning(
                "series %s: %d value column(s) constant over the training rows; centred, not scaled",
                name, int(constant.sum()),
            )  # fmt: skip
        return cls(mean=mean, scale=np.where(constant, 1.0, scale))

    def transform(self, values: np.ndarray) -> np.ndarray:
        scaled = (np.asarray(values, dtype=np.float64) - self.mean) / self.scale
        return np.clip(scaled, -CLIP, CLIP).astype(np.float32)


def prefix_rows(n_rows: int, windows: list[tuple[int, int]], train_fraction: float, train_max_rows: int | None) -> int:
    """Rows of the assumed-normal prefix: ``min(floor(fraction * n), max_rows)``, before any window."""
    n_prefix = math.floor(train_fraction * n_rows + 1e-9)
    if train_max_rows is not None:
        n_prefix = min(n_prefix, train_max_rows)
    if windows and windows[0][0] < n_prefix:
        n_prefix = windows[0][0]
    return n_prefix


def first_scored_row(detector: str, window: int, steps: int) -> int:
    """First row with a score: a prediction needs ``window + steps - 1`` rows before it."""
    return window + steps - 1 if detector == "prediction" else window - 1


def check_lengths(name: str, n_rows: int, n_train: int, n_prefix: int, detector: str, window: int, steps: int):
    """Raise ``DataError`` unless both splits hold ``MIN_SAMPLES`` samples and a test part exists."""
    if detector == "prediction":
        train, val = n_train - window - steps + 1, n_prefix - n_train - steps + 1
    else:
        train, val = n_train - window + 1, n_prefix - n_train - window + 1
    if min(train, val) < MIN_SAMPLES or n_rows <= n_prefix:
        raise DataError(
            f"series {name}: its normal prefix has {n_prefix} of {n_rows} rows ({n_train} train, "
            f"{n_prefix - n_train} validation), giving {train} training and {val} validation samples with "
            f"window={window}, prediction_steps={steps} ({detector}); need {MIN_SAMPLES} of each and rows after "
            "the prefix. Use a shorter data.window or a larger data.train_fraction / data.train_max_rows."
        )


def sliding_windows(scaled: np.ndarray, window: int) -> np.ndarray:
    """All windows, ``(rows - window + 1, window, features)``; row ``i`` ends at row ``i + window - 1``."""
    return np.lib.stride_tricks.sliding_window_view(scaled, window, axis=0).transpose(0, 2, 1)


def prediction_samples(scaled: np.ndarray, window: int, steps: int, first: int, last: int):
    """Samples whose targets lie in rows ``[first, last)``: ``x (n, window, f)``, ``y (n, steps * f)``."""
    origins = np.arange(max(first - 1, window - 1), last - steps)
    views = sliding_windows(scaled, window)
    last_values = scaled[origins][:, None, :]
    x = views[origins - window + 1] - last_values
    targets = sliding_windows(scaled, steps)[origins + 1] - last_values
    return np.ascontiguousarray(x), np.ascontiguousarray(targets.reshape(len(origins), -1))


def reconstruction_samples(scaled: np.ndarray, window: int, first: int, last: int):
    """Windows lying entirely in rows ``[first, last)``; the target is the input."""
    x = np.ascontiguousarray(sliding_windows(scaled, window)[first : last - window + 1])
    return x, x
