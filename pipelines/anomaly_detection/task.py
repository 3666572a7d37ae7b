"""Anomaly detection on the shared engine: series in, online anomaly scores and alerts out.

The network (any zoo variant, ``model.detector`` reconstruction or prediction) learns the
assumed-normal prefix of each series (``data.py`` splits it, ``features.py`` scales and windows
it); the calibration (``detection.py``: Gaussian, likelihood, threshold) uses the prefix's
validation rows; everything after the prefix is test data, scored online (``evaluation.py``).
Several series are pooled: one network, one scaler and calibration per series.

The tuning objective is ``val_mse``, the mean squared error (in each series' standard units) of the
network on the validation rows. For the prediction detector these are the same rows for every
window length, so trials with different ``features.window`` compare fairly; errors of different
detectors, forecast lengths or splits do not, and the ``detection`` settings do not change the
objective at all, so those keys may not be searched (``load_source`` rejects them), and with the
reconstruction detector (whose error grows with the window) neither may ``features.window``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING

import keras
import numpy as np
import pandas as pd

from pipelines.anomaly_detection import data as series_data
from pipelines.anomaly_detection.detection import MIN_HISTORY, SCORINGS, alarm_rule, detect_all
from pipelines.anomaly_detection.evaluation import report
from pipelines.anomaly_detection.features import DETECTORS, SeriesPart, check_lengths, series_part, split_samples
from pipelines.anomaly_detection.serving import (
    AnomalyServingModel,
    read_request,
    request_frame,
    save_detectors,
    serving_signature,
)
from pipelines.anomaly_detection.synthetic import SEED as SYNTHETIC_SEED
from pipelines.anomaly_detection.synthetic import ensure_synthetic_nab
from pipelines.config import ModelConfig, make_config_class
from pipelines.errors import ConfigError, DataError
from pipelines.serving import save_keras_artifacts
from pipelines.tasks import Evaluation, GateDecision, ServingBundle, Task, metric_check
from pipelines.tracking import local_dataset
from pipelines.training import build_and_compile

if TYPE_CHECKING:
    from mlflow.data.pandas_dataset import PandasDataset

logger = logging.getLogger(__name__)

FORMATS = ("nab", "csv")
# Only these keys outside `model` and `train` keep `val_mse` comparable between trials.
SEARCHABLE_FEATURE_KEYS = ("features.window",)
FIXED_MODEL_KEYS = ("model.detector", "model.prediction_steps")


@dataclasses.dataclass
class AnomalyDataConfig:
    """`data` group: where the series are, which layout, how each is split in time."""

    path: str | None = None
    format: str = "nab"
    series: list | None = None
    timestamp_column: str = "timestamp"
    value_columns: list | None = None
    label_column: str | None = None
    separator: str = ","
    train_fraction: float = 0.15
    train_max_rows: int | None = 750
    val_fraction: float = 0.3

    def __post_init__(self):
        for key, allowed in {"format": FORMATS, "separator": series_data.SEPARATORS}.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(f"data.{key}: expected one of {', '.join(allowed)}, got {getattr(self, key)!r}")
        if self.train_max_rows is not None and self.train_max_rows < 1:
            raise ConfigError(f"data.train_max_rows: expected a positive integer or null, got {self.train_max_rows!r}")
        for key in ("train_fraction", "val_fraction"):
            if not 0.0 < getattr(self, key) < 1.0:
                raise ConfigError(f"data.{key}: expected a fraction in (0, 1), got {getattr(self, key)!r}")
        if self.format == "csv" and not self.path:
            raise ConfigError("data.path: format csv needs a CSV file or folder")


@dataclasses.dataclass
class AnomalyFeaturesConfig:
    """`features` group: what the network sees."""

    window: int = 24

    def __post_init__(self):
        if self.window < 2:
            raise ConfigError(f"features.window: expected an integer >= 2, got {self.window!r}")


@dataclasses.dataclass
class AnomalyModelConfig(ModelConfig):
    """`model` group: the zoo variant, and what the network learns (`detector`)."""

    detector: str = "reconstruction"  # or prediction; both on NAB: docs/experiments/anomaly_nab.md
    prediction_steps: int = 3

    def __post_init__(self):
        super().__post_init__()
        if self.detector not in DETECTORS:
            raise ConfigError(f"model.detector: expected one of {', '.join(DETECTORS)}, got {self.detector!r}")
        if self.prediction_steps < 1:
            raise ConfigError(f"model.prediction_steps: expected a positive integer, got {self.prediction_steps!r}")


@dataclasses.dataclass
class DetectionConfig:
    """`detection` group: how the network's errors become scores and alerts (see `detection.py`)."""

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
        if self.scoring not in SCORINGS:
            raise ConfigError(f"detection.scoring: expected one of {', '.join(SCORINGS)}, got {self.scoring!r}")
        if self.likelihood_history < MIN_HISTORY:  # the scores a mean and standard deviation are taken over
            raise ConfigError(
                f"detection.likelihood_history: expected an integer >= {MIN_HISTORY}, got {self.likelihood_history!r}"
            )
        if self.likelihood_average < 1:
            raise ConfigError(
                f"detection.likelihood_average: expected a positive integer, got {self.likelihood_average!r}"
            )
        if self.record_history < 0:
            raise ConfigError(
                f"detection.record_history: expected an integer >= 0 (0: off), got {self.record_history!r}"
            )
        if not isinstance(self.seasonal_days, list) or not all(
            isinstance(days, int | float) and not isinstance(days, bool) and days > 0 for days in self.seasonal_days
        ):
            raise ConfigError(
                f"detection.seasonal_days: expected a list of positive numbers of days, got {self.seasonal_days!r}"
            )
        if not 0 < self.likelihood_threshold < math.inf:
            raise ConfigError(
                f"detection.likelihood_threshold: expected a z-score > 0, got {self.likelihood_threshold!r}"
            )
        if self.spatial_tolerance is not None and not 0 <= self.spatial_tolerance < math.inf:
            raise ConfigError(
                f"detection.spatial_tolerance: expected a share >= 0 or null (off), got {self.spatial_tolerance!r}"
            )
        if self.cooldown < 0:
            raise ConfigError(f"detection.cooldown: expected an integer >= 0, got {self.cooldown!r}")
        if not 0.5 <= self.threshold_quantile <= 1.0:
            raise ConfigError(
                f"detection.threshold_quantile: expected a value in [0.5, 1], got {self.threshold_quantile!r}"
            )


# Every key that left `data` when the config took its groups.
MOVED_KEYS = {
    "data.window": "features.window",
    "data.detector": "model.detector",
    "data.prediction_steps": "model.prediction_steps",
    **{f"data.{field.name}": f"detection.{field.name}" for field in dataclasses.fields(DetectionConfig)},
}

AnomalyConfig = make_config_class(
    "AnomalyConfig",
    data=AnomalyDataConfig,
    features=AnomalyFeaturesConfig,
    model=AnomalyModelConfig,
    output=("detection", DetectionConfig),
    moved=MOVED_KEYS,
)


@dataclasses.dataclass(eq=False)
class AnomalySplits:
    """Pooled model inputs of every series, the per-series parts to score them, and how to score."""

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
    detector: str
    window: int
    steps: int
    detection: DetectionConfig
    val_fraction: float = 0.3
    skipped: list[str] = dataclasses.field(default_factory=list)  # series whose normal prefix is too short
    outcomes: list | None = None  # filled by `evaluate`, reused by `serving_bundle`
    scored_model: object = None


class AnomalyDetection(Task):
    name = "anomaly_detection"
    config_class = AnomalyConfig
    head = "regression"  # `build_model` uses "reconstruction" for that detector
    loss = "mse"
    objective = "val_mse"

    def load_source(self, config: AnomalyConfig) -> series_data.AnomalySource:
        """Read the series (NAB layout, sensor CSV, or the synthetic default) after checking the search space.

        Returns:
            An `AnomalySource`.
        """
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

    def prepare(self, config: AnomalyConfig, source: series_data.AnomalySource) -> AnomalySplits:
        """Split each series in time, scale it on its training rows and cut it into the detector's samples.

        Returns:
            The pooled samples of every series, and the per-series parts that `evaluate` scores.
        """
        spec, window = config.data, config.features.window
        detector, steps = config.model.detector, config.model.prediction_steps
        parts, splits, skipped, reasons = [], {"train": [], "val": [], "test": []}, [], []
        for item in source.series:
            n_train, n_prefix = series_data.split_rows(
                item, spec.train_fraction, spec.train_max_rows, spec.val_fraction
            )
            try:
                check_lengths(item.name, len(item), n_train, n_prefix, detector, window, steps)
            except DataError as error:  # one short series does not stop the others
                logger.warning("skipped: %s", error)
                skipped.append(item.name)
                reasons.append(str(error))
                continue
            part = series_part(item, n_train, n_prefix)
            parts.append(part)
            for split, (first, last) in part.bounds.items():
                splits[split].append(split_samples(part.scaled, detector, window, steps, first, last))
        if not parts:
            raise DataError(f"every series is too short for its normal prefix; the first: {reasons[0]}")
        arrays = {}
        for split, pairs in splits.items():
            arrays[f"x_{split}"] = np.concatenate([x for x, _ in pairs])
            arrays[f"y_{split}"] = np.concatenate([y for _, y in pairs])
        features = parts[0].scaled.shape[1]
        return AnomalySplits(
            **arrays,
            input_shape=(window, features),
            output_dim=steps * features if detector == "prediction" else features,
            parts=parts,
            timestamp_column=spec.timestamp_column if spec.format == "csv" else "timestamp",
            value_columns=source.series[0].value_columns,
            detector=detector,
            window=window,
            steps=steps,
            detection=config.detection,
            val_fraction=spec.val_fraction,
            skipped=skipped,
        )

    def build_model(self, config: AnomalyConfig, data: AnomalySplits) -> keras.Model:
        """The zoo model with a forecast (prediction) or sequence (reconstruction) head.

        Returns:
            A compiled `keras.Model`.
        """
        head = "regression" if config.model.detector == "prediction" else "reconstruction"
        return build_and_compile(config, data.input_shape, head, data.output_dim, self.loss, self.keras_metrics)

    def dataset_for_logging(self, config: AnomalyConfig, source: series_data.AnomalySource) -> PandasDataset:
        """Every series as one table (`series`, `timestamp`, the value columns, `label`).

        Returns:
            An `mlflow.data` dataset.
        """
        frames = []
        for item in source.series:
            frame = pd.DataFrame(item.values, columns=list(item.value_columns))
            frame.insert(0, "timestamp", item.timestamps.strftime("%Y-%m-%d %H:%M:%S"))
            frame.insert(0, "series", item.name)
            frame["label"] = item.labels.astype(bool)  # an int column makes MLflow warn about missing values
            frames.append(frame)
        return local_dataset(pd.concat(frames, ignore_index=True), source.origin, f"series ({len(source.series)})")

    def evaluate(self, model: keras.Model, data: AnomalySplits, config: AnomalyConfig) -> Evaluation:
        """Calibrate and score every series; `val_mse` (the objective), NAB and baseline test metrics.

        Returns:
            An `Evaluation` whose headline is `test_nab_standard`.
        """
        outcomes, val_stats = detect_all(model, data)
        data.outcomes, data.scored_model = outcomes, model
        detector_name = f"lstm{config.model.detector.capitalize()}"
        result = report(outcomes, alarm_rule(config.detection), config.seed, detector_name, data.skipped)
        metrics = {
            "val_mse": val_stats["error_sum"] / val_stats["error_count"],
            "val_alarm_rate": val_stats["alarms"] / val_stats["rows"],
            **result.metrics,
        }
        if len(outcomes) == 1:
            metrics["val_threshold"] = outcomes[0].detector.threshold
        baseline = (
            f"random: {metrics['test_random_alert_nab_standard']:.1f}, "
            f"always-anomalous: {metrics['test_always_alert_nab_standard']:.1f}, null: 0, perfect: 100"
        )
        headline = {"metric": "test_alert_nab_standard", "value": metrics["test_alert_nab_standard"]}
        return Evaluation(
            metrics=metrics,
            figures=result.figures,
            tables=result.tables,
            summary=result.summary,
            headline={**headline, "baseline": baseline},
        )

    def gate(self, metrics: dict[str, float], config: AnomalyConfig, champion: dict[str, float] | None) -> GateDecision:
        """Above random alerts on the labelled series: the NAB standard score of the alerts beats that of
        as many alerts placed at random (the only labelled measure: the validation part has no labels).

        Returns:
            The decision.
        """
        random = metrics.get("test_random_alert_nab_standard")
        return GateDecision([metric_check(metrics, "test_alert_nab_standard", random, True, "random alerts")])

    def serving_bundle(self, model: keras.Model, data: AnomalySplits, workdir: str | Path) -> ServingBundle:
        """The network with each series' calibrated detector (`detectors.json`).

        Returns:
            A `ServingBundle` whose request is the last rows of the first series.
        """
        if data.scored_model is not model:
            data.outcomes, _ = detect_all(model, data)
            data.scored_model = model
        detectors = {outcome.series.name: outcome.detector for outcome in data.outcomes}
        samples = data.x_test[:32] if len(data.x_test) else data.x_val[:32]
        artifacts = save_keras_artifacts(model, samples, workdir)
        settings = {"detection": dataclasses.asdict(data.detection), "val_fraction": data.val_fraction}
        artifacts["detectors"] = save_detectors(detectors, data.timestamp_column, data.value_columns, workdir, settings)
        series = data.parts[0].series
        rows = data.window + data.steps + 9  # ten or more scored rows
        name = series.name if len(detectors) > 1 else None
        request = request_frame(series, data.timestamp_column, data.value_columns, name).tail(rows)
        signature = serving_signature(data.timestamp_column, data.value_columns)
        return ServingBundle(AnomalyServingModel(), artifacts, signature, request)

    def read_inputs(self, path: str | Path, served: AnomalyServingModel) -> pd.DataFrame | dict[str, pd.DataFrame]:
        """A CSV of one series, or a folder of them, for `predict`, checked as training data is.

        Each request names its series by the file's path (relative to the folder given; the file name
        for a file), unless the file has a `series` column: the served model scores a series it was
        calibrated on with that calibration, and any other after a warm-up on its first rows.

        Args:
            path: a CSV file, or a folder searched recursively for `*.csv` files.
            served: the loaded served model (its timestamp and value columns).

        Returns:
            The request (`serving.read_request`) of a file; for a folder, `{relative path: request}`,
            which `predict` answers with one result file per input, in the same layout.
        """
        path = Path(path)
        columns = (served.timestamp_column, tuple(served.value_columns))
        if path.is_dir():
            files = sorted(item for item in path.rglob("*") if item.is_file() and item.suffix.lower() == ".csv")
            if not files:
                raise DataError(f"{path}: folder has no .csv files")
            return {
                file.relative_to(path).as_posix(): read_request(file, *columns, file.relative_to(path).as_posix())
                for file in files
            }
        return read_request(path, *columns, path.name)


def _check_search_space(config: AnomalyConfig) -> None:
    """Only keys that keep `val_mse` comparable between trials may be searched."""
    for key in config.search.space:
        group = key.split(".", 1)[0]
        if group == "detection":
            raise ConfigError(
                f"search.space.{key}: the detection settings do not change val_mse, the objective, so trials "
                f"cannot choose between values of {key}; set it per run and compare the test metrics instead"
            )
        if group == "data" or key in FIXED_MODEL_KEYS or (group == "features" and key not in SEARCHABLE_FEATURE_KEYS):
            raise ConfigError(
                f"search.space.{key}: trials that differ in {key} are scored on different errors or rows, so "
                f"their val_mse cannot be compared; searchable keys outside model and train: "
                f"{', '.join(SEARCHABLE_FEATURE_KEYS)} (run one study per value instead)"
            )
    if config.model.detector == "reconstruction" and "features.window" in config.search.space:
        raise ConfigError(
            "search.space.features.window: with the reconstruction detector val_mse is a whole window's error, "
            "which grows with the window; fix features.window or use model.detector=prediction"
        )


TASK = AnomalyDetection()
