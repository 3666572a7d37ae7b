"""Speech commands on the shared engine: raw 16 kHz waveforms in, a word label out."""

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.config import make_config_class
from pipelines.errors import ConfigError, DataError
from pipelines.serving import save_keras_artifacts
from pipelines.speech_commands import augment, evaluation
from pipelines.speech_commands.adaptation import confident_pseudo_labels, self_train
from pipelines.speech_commands.audio import AudioError, load_clip, load_clips
from pipelines.speech_commands.data import CLASS_SETUPS, LOADING_KEYS, load_source, loading_settings
from pipelines.speech_commands.layouts import LAYOUTS, wav_files
from pipelines.speech_commands.model import ARCHITECTURES, build_speech_model, clip_normalization, front_end
from pipelines.speech_commands.serving import SpeechServingModel, save_class_names, serving_signature
from pipelines.tasks import Evaluation, ServingBundle, Task
from pipelines.tracking import local_dataset
from pipelines.training import ensemble_members


@dataclasses.dataclass
class SpeechDataConfig:
    """`data` section: where the clips are, how they are labelled and split, features, augmentation.

    The loading keys (`LOADING_KEYS`: path to extra_train) are read once per run or tune; the
    others may go in the search space.
    """

    path: str | None = None  # None: the SYNTHETIC eSpeak NG default data, generated once into a cache folder
    layout: str = "auto"  # auto, speech_commands, fsdd or folders
    classes: str = "auto"  # auto, 12 (commands + _unknown_ + _silence_) or all (every word)
    split: str = "official"  # official, or speaker (FSDD: test_speaker held out)
    test_speaker: str | None = None  # FSDD speaker held out by split=speaker; None: the first alphabetically
    sample_rate: int = 16000
    clip_seconds: float = 1.0
    unknown_fraction: float = 0.1  # _unknown_ clips per command clip, per split (classes 12)
    silence_fraction: float = 0.1  # _silence_ clips per command clip, per split (classes 12)
    extra_train: list | None = None  # one-folder-per-label trees whose clips join the training split only
    extra_train_labels: dict[str, Any] | None = None  # their folder -> class (zero: 0); only those folders read
    num_mel_bins: int = 40
    mel_min_hz: float = 20.0  # the mel filters' lowest edge
    mel_max_hz: float | None = None  # ... and highest; None: half the sample rate (FSDD's 8 kHz recordings: 4000)
    top_db: float = 80.0  # log-mel floor, in dB below each clip's loudest value: quieter detail (noise) is flat
    clip_normalization: bool = False  # each clip's mean and variance over time taken out of every mel bin (CMVN)
    architecture: str = "zoo"  # zoo (model.variant over log-mel), attention_rnn (de Andrade et al. 2018) or crnn
    speed_change: float = 0.15  # training only: speed (tempo and pitch) changed by up to this fraction
    time_shift_seconds: float = 0.1  # training only: random shift either way
    noise_probability: float = 0.5  # training only: chance of mixing in background noise
    noise_max_gain: float = 0.05  # training only: noise gain drawn from [0, noise_max_gain]
    noise_snr_db: list | None = None  # training only: [low, high] dB; noise at an SNR drawn from it, not a gain
    freq_masks: int = 1  # training only: SpecAugment masks of up to freq_mask_width mel bins
    freq_mask_width: int = 5
    time_masks: int = 1  # ... and of up to time_mask_width frames (10 ms each)
    time_mask_width: int = 5
    equalizer_db: float = 0.0  # training only: random smooth gain across the mel bins of up to this many dB
    trim_probability: float = 0.0  # training only: chance of cutting a clip tightly around its loud part
    trim_db: list = dataclasses.field(default_factory=lambda: [15.0, 30.0])  # the cut, in dB below the loudest 10 ms

    def __post_init__(self):
        if isinstance(self.extra_train, str):
            self.extra_train = [self.extra_train]
        if self.extra_train is not None and not all(isinstance(path, str) for path in self.extra_train):
            raise ConfigError(f"data.extra_train: expected a folder or a list of folders, got {self.extra_train!r}")
        if self.extra_train_labels is not None:
            self.extra_train_labels = _folder_labels(self.extra_train_labels)
            if not self.extra_train:
                raise ConfigError("data.extra_train_labels: set, but data.extra_train names no folder to read")
        for key, allowed in (
            ("layout", LAYOUTS),
            ("classes", CLASS_SETUPS),
            ("split", ("official", "speaker")),
            ("architecture", ARCHITECTURES),
        ):
            if getattr(self, key) not in allowed:
                raise ConfigError(f"data.{key}: expected one of {', '.join(allowed)}, got {getattr(self, key)!r}")
        for key in ("sample_rate", "num_mel_bins"):
            if getattr(self, key) < 1:
                raise ConfigError(f"data.{key}: expected a positive integer, got {getattr(self, key)!r}")
        for key in ("freq_masks", "freq_mask_width", "time_masks", "time_mask_width"):
            if getattr(self, key) < 0:
                raise ConfigError(f"data.{key}: expected a non-negative integer, got {getattr(self, key)!r}")
        for key in (
            "unknown_fraction", "silence_fraction", "noise_probability", "time_shift_seconds", "trim_probability"
        ):  # fmt: skip
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ConfigError(f"data.{key}: expected a value in [0, 1], got {getattr(self, key)!r}")
        if not 0.1 <= self.clip_seconds <= 10.0:
            raise ConfigError(f"data.clip_seconds: expected 0.1 to 10 seconds, got {self.clip_seconds!r}")
        if not 0.0 <= self.speed_change < 0.5:
            raise ConfigError(f"data.speed_change: expected a fraction in [0, 0.5), got {self.speed_change!r}")
        if self.noise_snr_db is not None:
            _check_db_range("noise_snr_db", self.noise_snr_db, low_above_zero=False)
        _check_db_range("trim_db", self.trim_db, low_above_zero=True)
        top_hz = self.sample_rate / 2
        if self.mel_max_hz is not None and not 0 < self.mel_max_hz <= top_hz:
            raise ConfigError(
                f"data.mel_max_hz: expected a frequency above 0 and at most half the sample rate ({top_hz:g} Hz), "
                f"got {self.mel_max_hz!r}"
            )
        band_top = self.mel_max_hz or top_hz
        if not 0 <= self.mel_min_hz < band_top:
            raise ConfigError(
                f"data.mel_min_hz: expected a frequency >= 0 and below data.mel_max_hz ({band_top:g} Hz), "
                f"got {self.mel_min_hz!r}"
            )
        if isinstance(self.top_db, bool) or not (isinstance(self.top_db, int | float) and 0 < self.top_db < math.inf):
            raise ConfigError(f"data.top_db: expected a positive number of dB, got {self.top_db!r}")
        for key in ("noise_max_gain", "equalizer_db"):
            if not 0 <= getattr(self, key) < math.inf:
                raise ConfigError(f"data.{key}: expected a finite number >= 0, got {getattr(self, key)!r}")


def _folder_labels(mapping):
    """`data.extra_train_labels` as folder name -> class name, both strings (YAML may read `0` as a number)."""
    if not isinstance(mapping, dict) or not mapping:
        raise ConfigError(f"data.extra_train_labels: expected a mapping of folder name to class, got {mapping!r}")
    for name, label in mapping.items():
        for value in (name, label):
            if isinstance(value, bool) or not isinstance(value, str | int):
                raise ConfigError(f"data.extra_train_labels: expected folder and class names, got {name!r}: {label!r}")
    return {str(name): str(label) for name, label in mapping.items()}


def _check_db_range(key, bounds, low_above_zero):
    """Raise `ConfigError` naming `data.<key>` unless `bounds` is `[low, high]` in dB with `low <= high`."""
    numbers = isinstance(bounds, list | tuple) and len(bounds) == 2
    numbers = numbers and all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in bounds
    )
    if not numbers or not bounds[0] <= bounds[1] or (low_above_zero and not bounds[0] > 0):
        rule = "0 < low <= high" if low_above_zero else "low <= high"
        raise ConfigError(f"data.{key}: expected [low, high] in dB with {rule}, got {bounds!r}")


SpeechConfig = make_config_class(SpeechDataConfig)


@dataclasses.dataclass
class SpeechSplits:
    """Model-ready splits: waveforms `(n, samples)` float32 and int labels, plus tf.data pipelines."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    files_test: list[str]
    class_names: list[str]
    feature_mean: np.ndarray
    feature_variance: np.ndarray
    train_dataset: object
    val_dataset: object

    @property
    def input_shape(self):
        return self.x_train.shape[1:]

    @property
    def output_dim(self):
        return len(self.class_names)


def feature_statistics(data_config, waveforms, limit=2000, batch_size=250, seed=0):
    """Per-mel-bin mean and variance of the log-mel features of the training clips.

    Args:
        data_config: The `data` section (the front end's settings).
        waveforms: Training clips `(n, samples)`, in any order (datasets list them word by word).
        limit: At most this many clips, drawn at random without replacement. Default: `2000`.
        batch_size: Clips per front-end call. Default: `250`.
        seed: Seed of the draw. Default: `0`.

    Returns:
        `(mean, variance)`, float32 `(num_mel_bins,)` each.
    """
    layer, normalizer = front_end(data_config), clip_normalization(data_config)
    if len(waveforms) > limit:
        chosen = np.random.default_rng(seed).choice(len(waveforms), size=limit, replace=False)
        waveforms = waveforms[np.sort(chosen)]
    total, squares, count = 0.0, 0.0, 0
    for start in range(0, len(waveforms), batch_size):
        features = layer(waveforms[start : start + batch_size])
        features = np.asarray(features if normalizer is None else normalizer(features), dtype="float64")
        total = total + features.sum(axis=(0, 1))
        squares = squares + np.square(features).sum(axis=(0, 1))
        count += features.shape[0] * features.shape[1]
    mean = total / count
    return mean.astype("float32"), np.maximum(squares / count - mean**2, 1e-6).astype("float32")


def _waveforms(inputs):
    """The float32 `(clips, samples)` array of `read_inputs`'s `waveform` column."""
    return np.stack(inputs["waveform"].to_numpy()).astype("float32")


class SpeechCommands(Task):
    name = "speech_commands"
    adapts = True
    config_class = SpeechConfig
    head = "classification"
    loss = "sparse_categorical_crossentropy"
    keras_metrics = ("accuracy",)
    # An error rate, not accuracy: every objective is minimised, like the val_loss the pruner watches.
    objective = "val_error_rate"

    def load_source(self, config):
        return load_source(config.data, seed=config.seed)

    def prepare(self, config, source):
        changed = [key for key in LOADING_KEYS if loading_settings(config.data)[key] != source.loaded_with[key]]
        if changed:
            raise ConfigError(
                f"data.{changed[0]} is read once per run or tune when the clips are loaded; it cannot change "
                "between trials (remove it from search.space)"
            )
        d = config.data
        train, val, test = (source.splits[name] for name in ("train", "val", "test"))
        key = ("features", d.sample_rate, d.num_mel_bins, d.top_db, d.clip_normalization)
        if key not in source.cache:
            source.cache[key] = feature_statistics(d, train.x, seed=config.seed)
        mean, variance = source.cache[key]
        batch_size = config.train.batch_size
        mixer = None
        if d.noise_probability > 0 and (d.noise_snr_db is not None or d.noise_max_gain > 0):
            mixer = augment.noise_mixer(
                source.noise, train.x.shape[1], batch_size, d.noise_probability, d.noise_max_gain, d.noise_snr_db
            )
        return SpeechSplits(
            x_train=train.x,
            y_train=train.y,
            x_val=val.x,
            y_val=val.y,
            x_test=test.x,
            y_test=test.y,
            files_test=test.files,
            class_names=list(source.class_names),
            feature_mean=mean,
            feature_variance=variance,
            train_dataset=augment.training_dataset(train.x, train.y, batch_size, mixer, seed=config.seed),
            val_dataset=augment.evaluation_dataset(val.x, val.y, batch_size),
        )

    def build_model(self, config, data):
        return build_speech_model(
            config, data.input_shape[0], data.output_dim, data.feature_mean, data.feature_variance
        )

    def dataset_for_logging(self, config, source):
        kind = "SYNTHETIC speech commands" if source.synthetic else f"speech ({source.layout})"
        frame = source.records[["file", "word", "label", "split", "speaker"]].astype(str)
        return local_dataset(frame, source.root, f"{kind}, {len(frame)} clips")

    def evaluate(self, model, data, config):
        names = data.class_names
        val_pred = model.predict(data.x_val, batch_size=256, verbose=0).argmax(axis=1)
        test_probabilities = model.predict(data.x_test, batch_size=256, verbose=0)
        test_pred = test_probabilities.argmax(axis=1)
        metrics = {
            key: value
            for key, value in evaluation.classification_metrics(data.y_val, val_pred, names, "val").items()
            if "_recall_" not in key
        }
        metrics.update(evaluation.classification_metrics(data.y_test, test_pred, names, "test"))
        majority = int(np.bincount(data.y_train, minlength=len(names)).argmax())
        metrics["test_majority_accuracy"] = float(np.mean(data.y_test == majority))
        figures = {"confusion_matrix": evaluation.confusion_figure(data.y_test, test_pred, names)}
        # An ensemble's figure shows its first member's attention.
        first = ensemble_members(model)[0]
        attention = evaluation.attention_figure(first, data.x_test[:256], data.y_test[:256], names)
        if attention is not None:
            figures["attention_over_time"] = attention
        predictions = pd.DataFrame(
            {
                "file": data.files_test,
                "true": [names[i] for i in data.y_test],
                "predicted": [names[i] for i in test_pred],
                "probability": test_probabilities.max(axis=1),
            }
        )
        baseline = f"majority class ({names[majority]}): {metrics['test_majority_accuracy']:.4f}"
        summary = (
            f"test accuracy {metrics['test_accuracy']:.4f}, macro-F1 {metrics['test_macro_f1']:.4f} on "
            f"{len(data.y_test)} clips, {len(names)} classes; {baseline}"
        )
        return Evaluation(
            metrics=metrics,
            figures=figures,
            tables={
                "per_class": evaluation.per_class_table(data.y_test, test_pred, names),
                "test_predictions": predictions,
            },
            summary=summary,
            headline={"metric": "test_accuracy", "value": metrics["test_accuracy"], "baseline": baseline},
        )

    def serving_bundle(self, model, data, workdir):
        artifacts = save_keras_artifacts(model, data.x_test[:8], workdir)
        artifacts["class_names"] = save_class_names(data.class_names, workdir)
        # One test clip; 4 decimals (a rounding error under 5e-5 of full scale) keep its JSON small.
        request = np.round(data.x_test[:1].astype("float64"), 4)
        return ServingBundle(SpeechServingModel(), artifacts, serving_signature(data.class_names), request)

    def read_inputs(self, path, served):
        """WAV file, or a folder searched recursively, as waveforms at the served model's rate and
        clip length, with their file names.

        One unreadable file given by name raises `AudioError`; in a folder, unreadable files are
        skipped with a warning naming them.
        """
        path = Path(path)
        rate, clip_samples = served.sample_rate, served.clip_samples
        if path.is_file():
            return pd.DataFrame({"file": [str(path)], "waveform": [load_clip(path, rate, clip_samples)]})
        if not path.is_dir():
            raise DataError(f"{path}: no such file or folder")
        files = [str(item) for item in wav_files(path, recursive=True)]
        waveforms, kept, notes = load_clips(files, rate, clip_samples, what="input files", keep_silent=True)
        if not len(kept):
            raise AudioError(f"{path}: no readable WAV files")
        return pd.DataFrame({"file": [files[i] for i in kept], "waveform": list(waveforms)})

    def check_adaptable(self, served, inputs, data, config, settings):
        """The model and the config's data must have the same classes, sample rate and clip length,
        and the model must label at least one input clip at `settings.threshold`."""
        if list(served.class_names) != list(data.class_names):
            raise ConfigError(
                f"the model's classes ({', '.join(served.class_names)}) are not the config data's "
                f"({', '.join(data.class_names)}); pass the config (--config, --set data.*) the model was trained with"
            )
        trained_on = (served.sample_rate, served.clip_samples)
        if trained_on != (config.data.sample_rate, data.input_shape[0]):
            raise ConfigError(
                f"the model takes {served.clip_samples} samples at {served.sample_rate} Hz, the config data "
                f"{data.input_shape[0]} at {config.data.sample_rate} Hz; set data.sample_rate and data.clip_seconds "
                "as the model was trained"
            )
        confident_pseudo_labels(
            served.keras_model.predict(_waveforms(inputs), batch_size=256, verbose=0), settings.threshold
        )

    def adapt(self, served, inputs, data, config, settings):
        """Self-train the served model on the unlabelled clips of `inputs` (`adaptation.self_train`),
        replaying the config's training split.

        Returns:
            `(metrics, table)`: counts, the share of clips whose label changed and the test accuracy
            before adapting; a row per clip with its label before and after and whether it was
            trained on.
        """
        model = served.keras_model
        x_new = _waveforms(inputs)
        test_predictions = model.predict(data.x_test, batch_size=256, verbose=0).argmax(axis=1)
        source_test_accuracy = float(np.mean(test_predictions == data.y_test))
        before = model.predict(x_new, batch_size=256, verbose=0)
        pseudo, replayed = self_train(
            model, x_new, before, data.x_train, data.y_train, settings, np.random.default_rng(settings.seed)
        )
        after = model.predict(x_new, batch_size=256, verbose=0)
        names = np.asarray(data.class_names)
        table = pd.DataFrame(
            {
                "file": inputs["file"].to_numpy(),
                "label_before": names[pseudo.labels],
                "probability_before": pseudo.probability,
                "trained_on": pseudo.confident,
                "label": names[after.argmax(axis=1)],
                "probability": after.max(axis=1),
            }
        )
        metrics = {
            "adapt_clips": len(x_new),
            "adapt_pseudo_labels": int(pseudo.confident.sum()),
            "adapt_replayed_clips": replayed,
            "adapt_changed_labels": float(np.mean(table["label"] != table["label_before"])),
            "source_test_accuracy": source_test_accuracy,
        }
        return metrics, table


TASK = SpeechCommands()
