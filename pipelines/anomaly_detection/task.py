"""Anomaly detection on the shared engine: series in, online anomaly scores and alerts out.

The network (any zoo variant) learns the assumed-normal prefix of each series (see ``windows.py``);
the calibration (Gaussian, threshold) uses the prefix's validation rows; everything after the prefix
is test data, scored online. Several series are pooled: one network, one scaler and calibration per
series.

The tuning objective is ``val_mse``, the mean squared error (in each series' standard units) of the
network on the validation rows. For the prediction detector these are the same rows for every
window length, so trials with different ``data.window`` compare fairly; errors of different
detectors, forecast lengths or splits do not, so those keys may not be searched (``load_source``
rejects them), and with the reconstruction detector (whose error grows with the window) neither may
``data.window``.
"""

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.anomaly_detection import data as series_data
from pipelines.anomaly_detection.detectors import MIN_HISTORY, SCORINGS, calibrate, error_features
from pipelines.anomaly_detection.evaluation import SeriesOutcome, report
from pipelines.anomaly_detection.serving import (
    SERIES_COLUMN,
    AnomalyServingModel,
    save_detectors,
    serving_signature,
)
from pipelines.anomaly_detection.synthetic import SEED as SYNTHETIC_SEED
from pipelines.anomaly_detection.synthetic import ensure_synthetic_nab
from pipelines.anomaly_detection.windows import (
    DETECTORS,
    Scaler,
    check_lengths,
    prediction_samples,
    prefix_rows,
    reconstruction_samples,
)
from pipelines.config import make_config_class
from pipelines.csv_table import read_csv_strings
from pipelines.errors import ConfigError, DataError
from pipelines.serving import save_keras_artifacts
from pipelines.tasks import Evaluation, ServingBundle, Task
from pipelines.tracking import local_dataset
from pipelines.training import build_and_compile

FORMATS = ("nab", "csv")
SEARCHABLE_DATA_KEYS = ("data.window",)


@dataclasses.dataclass
class AnomalyDataConfig:
    """`data` section: where the series are, which detector, how the normal prefix is used."""

    path: str | None = None
    format: str = "nab"
    series: list | None = None
    timestamp_column: str = "timestamp"
    value_columns: list | None = None
    label_column: str | None = None
    separator: str = ","
    detector: str = "reconstruction"  # or prediction; see docs/results.md for both on NAB
    window: int = 24
    prediction_steps: int = 3
    train_fraction: float = 0.15
    train_max_rows: int | None = 750
    val_fraction: float = 0.3
    scoring: str = "likelihood"
    likelihood_history: int = 8640
    likelihood_average: int = 5
    likelihood_threshold: float = 4.0
    record_history: int = 1000
    value_gaussian: bool = True
    seasonal_days: list = dataclasses.field(default_factory=lambda: [1, 7])
    threshold_quantile: float = 1.0
    spatial_tolerance: float | None = 0.05
    cooldown: int = 100

    def __post_init__(self):
        choices = {
            "format": FORMATS,
            "detector": DETECTORS,
            "separator": series_data.SEPARATORS,
            "scoring": SCORINGS,
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(f"data.{key}: expected one of {', '.join(allowed)}, got {getattr(self, key)!r}")
        if self.window < 2:
            raise ConfigError(f"data.window: expected an integer >= 2, got {self.window!r}")
        if self.prediction_steps < 1:
            raise ConfigError(f"data.prediction_steps: expected a positive integer, got {self.prediction_steps!r}")
        if self.train_max_rows is not None and self.train_max_rows < 1:
            raise ConfigError(f"data.train_max_rows: expected a positive integer or null, got {self.train_max_rows!r}")
        if self.likelihood_history < MIN_HISTORY:  # the scores a mean and standard deviation are taken over
            raise ConfigError(
                f"data.likelihood_history: expected an integer >= {MIN_HISTORY}, got {self.likelihood_history!r}"
            )
        if self.likelihood_average < 1:
            raise ConfigError(f"data.likelihood_average: expected a positive integer, got {self.likelihood_average!r}")
        if self.record_history < 0:
            raise ConfigError(f"data.record_history: expected an integer >= 0 (0: off), got {self.record_history!r}")
        if not isinstance(self.seasonal_days, list) or not all(
            isinstance(days, int | float) and not isinstance(days, bool) and days > 0 for days in self.seasonal_days
        ):
            raise ConfigError(
                f"data.seasonal_days: expected a list of positive numbers of days, got {self.seasonal_days!r}"
            )
        if not 0 < self.likelihood_threshold < math.inf:
            raise ConfigError(f"data.likelihood_threshold: expected a z-score > 0, got {self.likelihood_threshold!r}")
        if self.spatial_tolerance is not None and not 0 <= self.spatial_tolerance < math.inf:
            raise ConfigError(
                f"data.spatial_tolerance: expected a share >= 0 or null (off), got {self.spatial_tolerance!r}"
            )
        if self.cooldown < 0:
            raise ConfigError(f"data.cooldown: expected an integer >= 0, got {self.cooldown!r}")
        for key in ("train_fraction", "val_fraction"):
            if not 0.0 < getattr(self, key) < 1.0:
                raise ConfigError(f"data.{key}: expected a fraction in (0, 1), got {getattr(self, key)!r}")
        if not 0.5 <= self.threshold_quantile <= 1.0:
            raise ConfigError(f"data.threshold_quantile: expected a value in [0.5, 1], got {self.threshold_quantile!r}")
        if self.format == "csv" and not self.path:
            raise ConfigError("data.path: format csv needs a CSV file or folder")


AnomalyConfig = make_config_class(AnomalyDataConfig)


@dataclasses.dataclass(eq=False)
class SeriesPart:
    """One series prepared for the network: scaled values and its split rows."""

    series: series_data.Series
    scaler: Scaler
    scaled: np.ndarray
    n_train: int
    n_prefix: int


@dataclasses.dataclass(eq=False)
class AnomalySplits:
    """Pooled model inputs of every series, and the per-series parts to score them."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    input_shape: tuple
    output_dim: int
    parts: list[SeriesPart]
    timestamp_column: str
    value_columns: tuple[str, ...]
    spec: AnomalyDataConfig
    outcomes: list | None = None  # filled by `evaluate`, reused by `serving_bundle`
    scored_model: object = None


class AnomalyDetection(Task):
    name = "anomaly_detection"
    config_class = AnomalyConfig
    head = "regression"  # `build_model` uses "reconstruction" for that detector
    loss = "mse"
    objective = "val_mse"

    def load_source(self, config):
        _check_search_space(config)
        spec = config.data
        if not spec.path:
            root = ensure_synthetic_nab()
            series = series_data.load_nab(root, spec.series)
            origin = f"SYNTHETIC NAB-style series (seed {SYNTHETIC_SEED}), {root}"
        elif spec.format == "nab":
            series, origin = series_data.load_nab(spec.path, spec.series), str(spec.path)
        else:
            series = series_data.load_sensor_csv(
                spec.path, spec.timestamp_column, spec.value_columns, spec.label_column, spec.separator, spec.series
            )
            origin = str(spec.path)
        return series_data.AnomalySource(series, origin)

    def prepare(self, config, source):
        spec = config.data
        steps = spec.prediction_steps
        parts, splits = [], {"train": [], "val": [], "test": []}
        for item in source.series:
            n_prefix = prefix_rows(len(item), item.windows, spec.train_fraction, spec.train_max_rows)
            n_train = math.floor((1.0 - spec.val_fraction) * n_prefix + 1e-9)
            check_lengths(item.name, len(item), n_train, n_prefix, spec.detector, spec.window, steps)
            scaler = Scaler.fit(item.values[:n_train], item.name)
            scaled = scaler.transform(item.values)
            parts.append(SeriesPart(item, scaler, scaled, n_train, n_prefix))
            bounds = {"train": (0, n_train), "val": (n_train, n_prefix), "test": (n_prefix, len(item))}
            for split, (first, last) in bounds.items():
                if spec.detector == "prediction":
                    splits[split].append(prediction_samples(scaled, spec.window, steps, first, last))
                else:
                    splits[split].append(reconstruction_samples(scaled, spec.window, first, last))
        arrays = {}
        for split, pairs in splits.items():
            arrays[f"x_{split}"] = np.concatenate([x for x, _ in pairs])
            arrays[f"y_{split}"] = np.concatenate([y for _, y in pairs])
        features = parts[0].scaled.shape[1]
        value_columns = source.series[0].value_columns
        return AnomalySplits(
            **arrays,
            input_shape=(spec.window, features),
            output_dim=steps * features if spec.detector == "prediction" else features,
            parts=parts,
            timestamp_column=spec.timestamp_column if spec.format == "csv" else "timestamp",
            value_columns=value_columns,
            spec=spec,
        )

    def build_model(self, config, data):
        head = "regression" if config.data.detector == "prediction" else "reconstruction"
        return build_and_compile(config, data.input_shape, head, data.output_dim, self.loss, self.keras_metrics)

    def dataset_for_logging(self, config, source):
        frames = []
        for item in source.series:
            frame = pd.DataFrame(item.values, columns=list(item.value_columns))
            frame.insert(0, "timestamp", item.timestamps.strftime("%Y-%m-%d %H:%M:%S"))
            frame.insert(0, "series", item.name)
            frame["label"] = item.labels.astype(bool)  # an int column makes MLflow warn about missing values
            frames.append(frame)
        return local_dataset(pd.concat(frames, ignore_index=True), source.origin, f"series ({len(source.series)})")

    def evaluate(self, model, data, config):
        spec = config.data
        outcomes, val_stats = detect_all(model, data)
        data.outcomes, data.scored_model = outcomes, model
        detector_name = f"lstm{spec.detector.capitalize()}"
        result = report(outcomes, alarm_rule(spec), config.seed, detector_name)
        metrics = {
            "val_mse": val_stats["error_sum"] / val_stats["error_count"],
            "val_alarm_rate": val_stats["alarms"] / val_stats["rows"],
            **result.metrics,
        }
        if len(outcomes) == 1:
            metrics["val_threshold"] = outcomes[0].detector.threshold
        baseline = (
            f"random: {metrics['test_random_nab_standard']:.1f}, "
            f"always-anomalous: {metrics['test_always_nab_standard']:.1f}, null: 0, perfect: 100"
        )
        return Evaluation(
            metrics=metrics,
            figures=result.figures,
            tables=result.tables,
            summary=result.summary,
            headline={"metric": "test_nab_standard", "value": metrics["test_nab_standard"], "baseline": baseline},
        )

    def serving_bundle(self, model, data, workdir):
        if data.scored_model is not model:
            data.outcomes, _ = detect_all(model, data)
            data.scored_model = model
        detectors = {outcome.series.name: outcome.detector for outcome in data.outcomes}
        samples = data.x_test[:32] if len(data.x_test) else data.x_val[:32]
        artifacts = save_keras_artifacts(model, samples, workdir)
        artifacts["detectors"] = save_detectors(detectors, data.timestamp_column, data.value_columns, workdir)
        series = data.parts[0].series
        rows = data.spec.window + data.spec.prediction_steps + 9  # ten or more scored rows
        name = series.name if len(detectors) > 1 else None
        request = request_frame(series, data.timestamp_column, data.value_columns, name).tail(rows)
        signature = serving_signature(data.timestamp_column, data.value_columns)
        return ServingBundle(AnomalyServingModel(), artifacts, signature, request)

    def read_inputs(self, path, served):
        """A CSV of one series for `predict`, checked as training data is: the served model's
        timestamp and value columns, timestamps parsed and ascending (a repeated one dropped),
        values numbers (short gaps filled); errors name the file, line and column. A `series`
        column, when present, must name one series."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: no such file")
        with path.open(encoding="utf-8-sig", errors="replace") as handle:  # read_csv_strings reports bad bytes
            header = next((line for line in handle if line.strip()), "")
        separator = ";" if header.count(";") > header.count(",") else ","
        frame, lines = read_csv_strings(path, separator)
        timestamp, value_columns = served.timestamp_column, list(served.value_columns)
        series = series_data.build_series(frame, lines, str(path), path.name, timestamp, value_columns)
        if SERIES_COLUMN not in frame.columns:
            return request_frame(series, timestamp, value_columns)
        names = frame[SERIES_COLUMN].dropna().unique()
        if len(names) != 1:
            raise DataError(f"{path}: column '{SERIES_COLUMN}' must name one series; found {', '.join(names[:5])}")
        return request_frame(series, timestamp, value_columns, names[0])


def request_frame(series, timestamp_column, value_columns, series_name=None):
    """A served-model request holding all of ``series``: the timestamp as text, a ``series``
    column holding ``series_name`` when given, then the value columns."""
    out = pd.DataFrame({timestamp_column: series.timestamps.astype(str)})
    if series_name is not None:
        out[SERIES_COLUMN] = series_name
    for index, column in enumerate(value_columns):
        out[column] = series.values[:, index]
    return out


def detect_all(model, data):
    """Calibrate and score every series; returns the outcomes and validation statistics."""
    predict = lambda x: model.predict(x, batch_size=1024, verbose=0)  # noqa: E731
    spec = data.spec
    outcomes = []
    stats = {"error_sum": 0.0, "error_count": 0, "alarms": 0, "rows": 0}
    for part in data.parts:
        features = error_features(predict, part.scaled, spec.detector, spec.window, spec.prediction_steps)
        val_first = part.n_train if spec.detector == "prediction" else part.n_train + spec.window - 1
        val_features = features[val_first : part.n_prefix]
        detector = calibrate(
            part.series.name, spec.detector, spec.window, spec.prediction_steps, spec.cooldown,
            part.scaler, val_features, spec.threshold_quantile, scoring=spec.scoring,
            likelihood_history=spec.likelihood_history, likelihood_average=spec.likelihood_average,
            likelihood_threshold=spec.likelihood_threshold, record_history=spec.record_history,
            value_gaussian=spec.value_gaussian, seasonal_periods=seasonal_periods(part.series, spec.seasonal_days),
            spatial_tolerance=spec.spatial_tolerance,
            prefix_values=part.series.values[: part.n_prefix],
        )  # fmt: skip
        scores = detector.scores(features)
        detection = detector.detect_scores(scores, first_row=part.n_prefix, values=part.series.values)
        outcomes.append(SeriesOutcome(part.series, detector, detection, part.n_train, part.n_prefix))
        squared = val_features**2 if spec.detector == "prediction" else val_features
        stats["error_sum"] += float(squared.sum())
        stats["error_count"] += squared.size
        stats["alarms"] += int(
            (validation_levels(detector, scores[val_first : part.n_prefix]) > detector.threshold).sum()
        )
        stats["rows"] += len(val_features)
    return outcomes, stats


def seasonal_periods(series, days):
    """Rows per period of each of ``days`` at the series' median time step (periods under 2 rows dropped)."""
    if len(series.timestamps) < 2:
        return ()
    step = float(np.median((series.timestamps[1:] - series.timestamps[:-1]).total_seconds()))
    periods = (int(round(d * 86400 / step)) for d in days)
    return tuple(sorted({period for period in periods if period >= 2}))


def validation_levels(detector, val_scores):
    """Levels of the validation rows on their own: the likelihood starts from an empty history there
    (its first rows have none), since the validation scores are its seed for the test rows."""
    if detector.likelihood is None:
        return val_scores
    return dataclasses.replace(detector.likelihood, seed=np.empty(0)).levels(val_scores)


def alarm_rule(spec):
    """The alarm rule of a data config, in words."""
    if spec.scoring == "likelihood":
        rule = (
            f"alert when the mean score of the last {spec.likelihood_average} rows is more than "
            f"{spec.likelihood_threshold:g} standard deviations above the mean of the {spec.likelihood_history} "
            "before"
        )
        if spec.record_history:
            rule += f" and higher than every such mean in the {spec.record_history} rows before"
        if spec.value_gaussian:
            rule += (
                f"; the same for each value's distance from the mean of the {spec.likelihood_history} values "
                "before it, in their standard deviations (a windowed Gaussian)"
            )
        if spec.seasonal_days:
            days = ", ".join(f"{d:g}" for d in spec.seasonal_days)
            rule += f"; the same for each value's change since the same time {days} day(s) before"
    else:
        rule = f"alert above the {spec.threshold_quantile} quantile of each series' validation scores"
    if spec.spatial_tolerance is not None:
        rule += (
            f", or when a value leaves the range of the values before it by more than {spec.spatial_tolerance:g} "
            "of its width (the spatial check of NAB's HTM detector)"
        )
    return f"{rule}, cooldown {spec.cooldown} rows"


def _check_search_space(config):
    """Only keys that keep `val_mse` comparable between trials may be searched."""
    for key in config.search.space:
        if key.startswith("data.") and key not in SEARCHABLE_DATA_KEYS:
            raise ConfigError(
                f"search.space.{key}: trials that differ in {key} are scored on different errors or rows, so "
                f"their val_mse cannot be compared; searchable data keys: {', '.join(SEARCHABLE_DATA_KEYS)} "
                "(run one study per value instead)"
            )
    if config.data.detector == "reconstruction" and "data.window" in config.search.space:
        raise ConfigError(
            "search.space.data.window: with the reconstruction detector val_mse is a whole window's error, "
            "which grows with the window; fix data.window or use data.detector=prediction"
        )


TASK = AnomalyDetection()
