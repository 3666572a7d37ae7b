"""Speech commands on the shared engine: raw 16 kHz waveforms in, a word label out.

The config classes and the `Task`; the work is done in `data` (read, check, split), `features`
(log-mel inside the model), `augment`, `model`, `baselines`, `evaluation`, `serving` and `adaptation`.
"""

import dataclasses
import math
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd

from pipelines.config import ModelConfig, make_config_class
from pipelines.errors import ConfigError, DataError
from pipelines.serving import save_keras_artifacts
from pipelines.speech_commands import augment, evaluation
from pipelines.speech_commands.adaptation import AdaptationSettings, confident_pseudo_labels, self_train
from pipelines.speech_commands.clip_file import ClipFile
from pipelines.speech_commands.data import (
    CLASS_SETUPS,
    LAYOUTS,
    AudioError,
    SpeechSource,
    load_clip,
    load_clips,
    load_source,
    wav_files,
)
from pipelines.speech_commands.features import feature_statistics
from pipelines.speech_commands.model import ARCHITECTURES, CONV_NORMS, build_speech_model
from pipelines.speech_commands.serving import SpeechServingModel, save_class_names, serving_signature
from pipelines.tasks import Evaluation, ServingBundle, Task
from pipelines.tracking import local_dataset

REMOVED = "removed: measured no gain (docs/experiments/speech_fsdd.md)"


@dataclasses.dataclass
class SpeechDataConfig:
    """`data` group: where the clips are, how they are labelled and split.

    All of it is read once per run or tune, when the clips are loaded (`data.load_source`), so none
    of it may go in the search space.
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
    in_memory_max_clips: int = 20000  # more clips than this stream from a file on disk (streaming.ClipFile)

    def __post_init__(self):
        if self.in_memory_max_clips < 0:
            raise ConfigError(f"data.in_memory_max_clips: expected an integer >= 0, got {self.in_memory_max_clips!r}")
        if isinstance(self.extra_train, str):
            self.extra_train = [self.extra_train]
        if self.extra_train is not None and not all(isinstance(path, str) for path in self.extra_train):
            raise ConfigError(f"data.extra_train: expected a folder or a list of folders, got {self.extra_train!r}")
        if self.extra_train_labels is not None:
            self.extra_train_labels = _folder_labels(self.extra_train_labels)
            if not self.extra_train:
                raise ConfigError("data.extra_train_labels: set, but data.extra_train names no folder to read")
        for key, allowed in (("layout", LAYOUTS), ("classes", CLASS_SETUPS), ("split", ("official", "speaker"))):
            if getattr(self, key) not in allowed:
                raise ConfigError(f"data.{key}: expected one of {', '.join(allowed)}, got {getattr(self, key)!r}")
        if self.sample_rate < 1:
            raise ConfigError(f"data.sample_rate: expected a positive integer, got {self.sample_rate!r}")
        for key in ("unknown_fraction", "silence_fraction"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ConfigError(f"data.{key}: expected a value in [0, 1], got {getattr(self, key)!r}")
        if not 0.1 <= self.clip_seconds <= 10.0:
            raise ConfigError(f"data.clip_seconds: expected 0.1 to 10 seconds, got {self.clip_seconds!r}")


def _folder_labels(mapping):
    """`data.extra_train_labels` as folder name -> class name, both strings (YAML may read `0` as a number)."""
    if not isinstance(mapping, dict) or not mapping:
        raise ConfigError(f"data.extra_train_labels: expected a mapping of folder name to class, got {mapping!r}")
    for name, label in mapping.items():
        for value in (name, label):
            if isinstance(value, bool) or not isinstance(value, str | int):
                raise ConfigError(f"data.extra_train_labels: expected folder and class names, got {name!r}: {label!r}")
    return {str(name): str(label) for name, label in mapping.items()}


@dataclasses.dataclass
class SpeechFeaturesConfig:
    """`features` group: the log-mel front end inside the model (25 ms Hann window, 10 ms hop).

    The band is checked against `data.sample_rate` by `SpeechConfig`.
    """

    num_mel_bins: int = 40
    mel_min_hz: float = 20.0  # the mel filters' lowest edge
    mel_max_hz: float | None = None  # ... and highest; None: half the sample rate (FSDD's 8 kHz recordings: 4000)
    top_db: float = 80.0  # log-mel floor, in dB below each clip's loudest value: quieter detail (noise) is flat

    def __post_init__(self):
        if self.num_mel_bins < 1:
            raise ConfigError(f"features.num_mel_bins: expected a positive integer, got {self.num_mel_bins!r}")
        if not 0 < self.top_db < math.inf:
            raise ConfigError(f"features.top_db: expected a positive number of dB, got {self.top_db!r}")


@dataclasses.dataclass
class SpeechAugmentConfig:
    """`augment` group: training-only augmentation (the served model never applies it)."""

    speed_change: float = 0.15  # speed (tempo and pitch) changed by up to this fraction
    time_shift_seconds: float = 0.1  # random shift either way
    noise_probability: float = 0.5  # chance of mixing in background noise
    noise_max_gain: float = 0.05  # noise gain drawn from [0, noise_max_gain]
    freq_masks: int = 1  # SpecAugment masks of up to freq_mask_width mel bins
    freq_mask_width: int = 5
    time_masks: int = 1  # ... and of up to time_mask_width frames (10 ms each)
    time_mask_width: int = 5

    def __post_init__(self):
        for key in ("freq_masks", "freq_mask_width", "time_masks", "time_mask_width"):
            if getattr(self, key) < 0:
                raise ConfigError(f"augment.{key}: expected a non-negative integer, got {getattr(self, key)!r}")
        for key in ("noise_probability", "time_shift_seconds"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ConfigError(f"augment.{key}: expected a value in [0, 1], got {getattr(self, key)!r}")
        if not 0.0 <= self.speed_change < 0.5:
            raise ConfigError(f"augment.speed_change: expected a fraction in [0, 0.5), got {self.speed_change!r}")
        if not 0 <= self.noise_max_gain < math.inf:
            raise ConfigError(f"augment.noise_max_gain: expected a finite number >= 0, got {self.noise_max_gain!r}")


@dataclasses.dataclass
class SpeechModelConfig(ModelConfig):
    """`model` group: the zoo's keys, and the architecture the recurrent layers sit in.

    `attention_rnn` and `crnn` need `variant: attention_lstm`; `model.build_speech_model` checks it,
    not this class, so a search space over `model.variant` stays valid beside them.
    """

    architecture: str = "zoo"  # zoo (model.variant over log-mel), attention_rnn (de Andrade et al. 2018) or crnn
    conv_filters: list = dataclasses.field(default_factory=lambda: [16, 32])  # crnn: one 3 x 3 block per entry
    conv_norm: str = "layer"  # crnn: layer or batch normalisation in each convolution block
    dense_units: list = dataclasses.field(default_factory=lambda: [64, 32])  # attention_rnn, crnn: dense layers
    head_dropout: float = 0.0  # attention_rnn, crnn: dropout after the dense layers

    def __post_init__(self):
        super().__post_init__()
        if self.architecture not in ARCHITECTURES:
            raise ConfigError(
                f"model.architecture: expected one of {', '.join(ARCHITECTURES)}, got {self.architecture!r}"
            )
        for key in ("conv_filters", "dense_units"):
            values = getattr(self, key)
            if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
                raise ConfigError(f"model.{key}: expected a non-empty list of positive integers, got {values!r}")
        if self.conv_norm not in CONV_NORMS:
            raise ConfigError(f"model.conv_norm: expected one of {', '.join(CONV_NORMS)}, got {self.conv_norm!r}")
        if not 0 <= self.head_dropout < 1:
            raise ConfigError(f"model.head_dropout: expected a number in [0, 1), got {self.head_dropout!r}")


@dataclasses.dataclass
class SpeechSpottingConfig:
    """`spotting` group: keyword spotting in long recordings (`lstm-pipelines stream`, `spotting.detect`)."""

    hop_seconds: float = 0.02  # audio per step; a whole number of the front end's 10 ms frame hops
    smoothing_seconds: float = 0.1  # each class's probability averaged over the hops of this much audio
    threshold: float = 0.5  # a word is reported when its averaged probability reaches this
    refractory_seconds: float = 1.0  # after a detection, none for this long

    def __post_init__(self):
        steps = self.hop_seconds / 0.01
        if not 0.01 <= self.hop_seconds <= 1.0 or abs(steps - round(steps)) > 1e-6:
            raise ConfigError(
                f"spotting.hop_seconds: expected a multiple of 0.01 s (the log-mel frame hop) from 0.01 to 1, "
                f"got {self.hop_seconds!r}"
            )
        for key in ("smoothing_seconds", "refractory_seconds"):
            if not 0.0 <= getattr(self, key) < math.inf:
                raise ConfigError(
                    f"spotting.{key}: expected a finite number of seconds >= 0, got {getattr(self, key)!r}"
                )
        if not 0.0 < self.threshold <= 1.0:
            raise ConfigError(f"spotting.threshold: expected a probability in (0, 1], got {self.threshold!r}")


# Every key of the old flat `data` group that moved or went.
MOVED_KEYS = {
    **{f"data.{key}": f"features.{key}" for key in ("num_mel_bins", "mel_min_hz", "mel_max_hz", "top_db")},
    **{f"data.{field.name}": f"augment.{field.name}" for field in dataclasses.fields(SpeechAugmentConfig)},
    "data.architecture": "model.architecture",
    **{
        f"data.{key}": REMOVED
        for key in ("clip_normalization", "noise_snr_db", "equalizer_db", "trim_probability", "trim_db")
    },
}


class SpeechConfig(
    make_config_class(
        "SpeechConfig",
        data=SpeechDataConfig,
        features=SpeechFeaturesConfig,
        augment=SpeechAugmentConfig,
        model=SpeechModelConfig,
        output=("spotting", SpeechSpottingConfig),
        moved=MOVED_KEYS,
    )
):
    """The speech task's config; checks the mel band against the sample rate, which lie in two groups."""

    def __post_init__(self):
        super().__post_init__()
        top_hz, band = self.data.sample_rate / 2, self.features
        if band.mel_max_hz is not None and not 0 < band.mel_max_hz <= top_hz:
            raise ConfigError(
                f"features.mel_max_hz: expected a frequency above 0 and at most half of data.sample_rate "
                f"({top_hz:g} Hz), got {band.mel_max_hz!r}"
            )
        band_top = band.mel_max_hz or top_hz
        if not 0 <= band.mel_min_hz < band_top:
            raise ConfigError(
                f"features.mel_min_hz: expected a frequency >= 0 and below features.mel_max_hz ({band_top:g} Hz), "
                f"got {band.mel_min_hz!r}"
            )


@dataclasses.dataclass
class SpeechSplits:
    """Model-ready splits: waveforms `(n, samples)` float32 (arrays, or `ClipFile`s read from disk a batch
    at a time) and int labels, plus tf.data pipelines."""

    x_train: np.ndarray | ClipFile
    y_train: np.ndarray
    x_val: np.ndarray | ClipFile
    y_val: np.ndarray
    x_test: np.ndarray | ClipFile
    y_test: np.ndarray
    files_test: list[str]
    class_names: list[str]
    feature_mean: np.ndarray
    feature_variance: np.ndarray
    train_dataset: object
    val_dataset: object

    @property
    def input_shape(self) -> tuple[int, ...]:
        """`(samples,)` of one clip."""
        return self.x_train.shape[1:]

    @property
    def output_dim(self) -> int:
        """The number of classes."""
        return len(self.class_names)


def _waveforms(inputs: pd.DataFrame) -> np.ndarray:
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

    def load_source(self, config: SpeechConfig) -> SpeechSource:
        return load_source(config.data, seed=config.seed)

    def prepare(self, config: SpeechConfig, source: SpeechSource) -> SpeechSplits:
        loaded = dataclasses.asdict(config.data)
        changed = [key for key, value in loaded.items() if value != source.loaded_with[key]]
        if changed:
            raise ConfigError(
                f"data.{changed[0]} is read once per run or tune when the clips are loaded; it cannot change "
                "between trials (remove it from search.space)"
            )
        train, val, test = (source.splits[name] for name in ("train", "val", "test"))
        rate, a = config.data.sample_rate, config.augment
        key = ("features", *dataclasses.astuple(config.features))
        if key not in source.cache:
            source.cache[key] = feature_statistics(config.features, rate, train.x, seed=config.seed)
        mean, variance = source.cache[key]
        batch_size, mixer = config.train.batch_size, None
        if a.noise_probability > 0 and a.noise_max_gain > 0:
            clip_samples = train.x.shape[1]
            mixer = augment.noise_mixer(source.noise, clip_samples, batch_size, a.noise_probability, a.noise_max_gain)
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

    def build_model(self, config: SpeechConfig, data: SpeechSplits) -> keras.Model:
        return build_speech_model(
            config, data.input_shape[0], data.output_dim, data.feature_mean, data.feature_variance
        )

    def dataset_for_logging(self, config: SpeechConfig, source: SpeechSource) -> Any:
        kind = "SYNTHETIC speech commands" if source.synthetic else f"speech ({source.layout})"
        frame = source.records[["file", "word", "label", "split", "speaker"]].astype(str)
        return local_dataset(frame, source.root, f"{kind}, {len(frame)} clips")

    def evaluate(self, model: keras.Model, data: SpeechSplits, config: SpeechConfig) -> Evaluation:
        return evaluation.evaluate(model, data)

    def gate(self, metrics: dict[str, float], config: SpeechConfig, champion: dict[str, float] | None) -> Any:
        """Above the majority class on validation, and not below the current champion's validation accuracy.

        The majority class's validation accuracy is `val_majority_accuracy` where the evaluation logs
        it, else its test accuracy (`test_majority_accuracy`), the share of the commonest training class.

        Returns:
            A `pipelines.tasks.GateDecision`.
        """
        from pipelines.tasks import GateDecision, metric_check

        majority = metrics.get("val_majority_accuracy", metrics.get("test_majority_accuracy"))
        name = "the majority class" + ("" if "val_majority_accuracy" in metrics else " (its test accuracy)")
        best = None if champion is None else champion.get("val_accuracy")
        return GateDecision(
            [
                metric_check(metrics, "val_accuracy", majority, True, name),
                metric_check(metrics, "val_accuracy", best, True, "the current champion", or_equal=True),
            ]
        )

    def serving_bundle(self, model: keras.Model, data: SpeechSplits, workdir: str | Path) -> ServingBundle:
        artifacts = save_keras_artifacts(model, data.x_test[:8], workdir)
        artifacts["class_names"] = save_class_names(data.class_names, workdir)
        # One test clip; 4 decimals (a rounding error under 5e-5 of full scale) keep its JSON small.
        request = np.round(data.x_test[:1].astype("float64"), 4)
        return ServingBundle(SpeechServingModel(), artifacts, serving_signature(data.class_names), request)

    def read_inputs(self, path: str | Path, served: SpeechServingModel) -> pd.DataFrame:
        """WAV file, or a folder searched recursively, as waveforms at the served model's rate and length.

        Args:
            path: A WAV file or a folder.
            served: The loaded served model (its `sample_rate` and `clip_samples`).

        Returns:
            A DataFrame `file, waveform`; in a folder, unreadable files are skipped with a warning naming them.

        Raises:
            AudioError: The one file given by name, or every file of the folder, is unreadable.
            DataError: `path` does not exist.
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

    def check_adaptable(
        self,
        served: SpeechServingModel,
        inputs: pd.DataFrame,
        data: SpeechSplits,
        config: SpeechConfig,
        settings: AdaptationSettings,
    ) -> None:
        """Refuse to adapt before anything trains.

        Args:
            served: The loaded served model.
            inputs: The new clips (`read_inputs`).
            data: The config's splits.
            config: The config the model was trained with.
            settings: The `adapt` command's settings.

        Raises:
            ConfigError: The model and the config's data differ in classes, sample rate or clip length.
            DataError: The model labels no input clip at `settings.threshold`.
        """
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
        confident_pseudo_labels(served.model_outputs(_waveforms(inputs)), settings.threshold)

    def adapt(
        self,
        served: SpeechServingModel,
        inputs: pd.DataFrame,
        data: SpeechSplits,
        config: SpeechConfig,
        settings: AdaptationSettings,
    ) -> tuple[dict[str, float], pd.DataFrame]:
        """Self-train the served model on the unlabelled clips of `inputs` (`adaptation.self_train`),
        replaying the config's training split.

        Args:
            served: The loaded served model; its Keras model changes in place.
            inputs: The new clips (`read_inputs`).
            data: The config's splits.
            config: The config the model was trained with.
            settings: The `adapt` command's settings.

        Returns:
            `(metrics, table)`: counts, the share of clips whose label changed and the test accuracy
            before adapting; a row per clip with its label before and after and whether it was
            trained on.
        """
        model = served.keras_model
        x_new = _waveforms(inputs)
        test_dataset = augment.evaluation_dataset(data.x_test, data.y_test, 256)
        test_predictions = model.predict(test_dataset, verbose=0).argmax(axis=1)
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
