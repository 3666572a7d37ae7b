"""Clips loaded into arrays once per run or tune: the task's `load_source`.

The class setup:
    `12` (Speech Commands' standard task): the ten commands, `_unknown_` (other words, sampled to
        `unknown_fraction` of each split's command clips) and `_silence_` (1 s cuts of the
        background noise at a random level, `silence_fraction` of each split's command clips).
    `all`: one class per word folder (or per FSDD digit).
    `auto`: `12` for the Speech Commands layout, `all` otherwise.
"""

import collections
import dataclasses
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.errors import ConfigError, DataError
from pipelines.speech_commands import layouts, synthetic
from pipelines.speech_commands.audio import AudioError, load_clips, read_wav, resample

SILENCE, UNKNOWN = "_silence_", "_unknown_"
CLASS_SETUPS = ("auto", "12", "all")
# The config keys `load_source` reads; they cannot change between trials of one tune.
LOADING_KEYS = (
    "path", "layout", "classes", "split", "test_speaker", "sample_rate", "clip_seconds",
    "unknown_fraction", "silence_fraction", "extra_train", "extra_train_labels",
)  # fmt: skip
logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Split:
    """One split: waveforms `(n, samples)` float32, labels `(n,)` int64, and where each clip came from."""

    x: np.ndarray
    y: np.ndarray
    files: list[str]


@dataclasses.dataclass
class SpeechSource:
    """Everything read from disk, for every trial of a run or tune."""

    root: Path
    layout: str
    synthetic: bool
    class_names: list[str]
    splits: dict[str, Split]
    noise: np.ndarray
    records: pd.DataFrame
    notes: collections.Counter
    loaded_with: dict
    cache: dict = dataclasses.field(default_factory=dict)


def loading_settings(data_config):
    """The `data.*` values `load_source` depends on."""
    return {key: getattr(data_config, key) for key in LOADING_KEYS}


def _labelled(records, classes, unknown_fraction, rng):
    """Records with a `label` column for the class setup; `_unknown_` clips sampled per split."""
    if classes == "all":
        return records.assign(label=records["word"]), sorted(records["word"].unique())
    missing = [word for word in synthetic.COMMANDS if word not in set(records["word"])]
    if missing:
        raise DataError(
            f"data.classes=12 needs a folder for each of {', '.join(synthetic.COMMANDS)}; missing: "
            f"{', '.join(missing)}. Use data.classes=all for another vocabulary."
        )
    is_command = records["word"].isin(synthetic.COMMANDS)
    parts = [records[is_command].assign(label=records["word"])]
    for split in layouts.SPLITS:
        others = records[~is_command & (records["split"] == split)]
        wanted = math.ceil(int((is_command & (records["split"] == split)).sum()) * unknown_fraction)
        chosen = rng.choice(len(others), size=min(wanted, len(others)), replace=False)
        parts.append(others.iloc[np.sort(chosen)].assign(label=UNKNOWN))
    return pd.concat(parts, ignore_index=True), [SILENCE, UNKNOWN, *synthetic.COMMANDS]


def load_noise(root, sample_rate, rng):
    """The noise bank: `_background_noise_/` resampled and joined, or generated colored noise."""
    pieces = []
    for path in layouts.noise_files(root):
        try:
            rate, samples = read_wav(path)
        except AudioError as error:
            logger.warning("skipped background noise file: %s", error)
            continue
        samples = samples.mean(axis=1) if samples.ndim == 2 else samples
        pieces.append(resample(samples, rate, sample_rate))
    if not pieces:
        logger.info("no %s folder in %s: using generated white, pink, brown and hum noise", layouts.NOISE_FOLDER, root)
        generated = synthetic.noise_bank(rng, seconds=10.0)
        pieces = [resample(0.5 * samples, synthetic.SAMPLE_RATE, sample_rate) for samples in generated.values()]
    return np.concatenate(pieces).astype("float32")


def silence_clips(noise, count, clip_samples, rng):
    """`count` clips cut from the noise bank at random offsets and levels (gain 0-1)."""
    if len(noise) <= clip_samples:
        noise = np.tile(noise, clip_samples // max(len(noise), 1) + 2)
    starts = rng.integers(0, len(noise) - clip_samples, size=count)
    gains = rng.uniform(0.0, 1.0, size=(count, 1)).astype("float32")
    clips = noise[starts[:, None] + np.arange(clip_samples)] * gains
    return clips.astype("float32"), [f"{layouts.NOISE_FOLDER}@{start}" for start in starts]


def extra_training_clips(root, class_names, sample_rate, clip_samples, folder_labels=None):
    """The clips of a one-folder-per-label tree that `data.extra_train` adds to the training split.

    Args:
        root: The tree; every folder not starting with `_` or `.` is a label folder.
        class_names: The dataset's classes.
        sample_rate: Target rate in Hz.
        clip_samples: Target length in samples.
        folder_labels: `data.extra_train_labels`: folder name -> class, e.g. Speech Commands' `zero`
            -> FSDD's `0`; only the folders it names are read. `None`: every label folder is read
            and must be named after a class.

    Returns:
        `(x, labels, files, notes)` as `load_clips` reads them, `labels` the class names.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ConfigError(f"data.extra_train: {root} is not a folder")
    for name, label in (folder_labels or {}).items():
        if label not in class_names:
            raise ConfigError(
                f"data.extra_train_labels: {name!r} maps to {label!r}, which is not a class of the dataset "
                f"({', '.join(class_names)})"
            )
    files, labels, skipped = [], [], []
    for folder in layouts.label_folders(root):
        if folder_labels is not None and folder.name not in folder_labels:
            skipped.append(folder.name)
            continue
        label = folder.name if folder_labels is None else folder_labels[folder.name]
        if label not in class_names:
            raise DataError(
                f"data.extra_train: {folder} is not named after a class of the dataset ({', '.join(class_names)})"
            )
        paths = [str(path) for path in layouts.wav_files(folder, recursive=True)]
        files += paths
        labels += [label] * len(paths)
    if skipped:
        logger.info(
            "data.extra_train: %s: skipped the folders data.extra_train_labels does not name: %s", root, skipped
        )
    if not files and folder_labels is not None:
        raise DataError(
            f"data.extra_train: {root} has none of the folders data.extra_train_labels names "
            f"({', '.join(folder_labels)}) with WAV clips"
        )
    x, kept, notes = load_clips(files, sample_rate, clip_samples, what=f"extra training clips in {root}")
    if len(kept) == 0:
        raise DataError(f"data.extra_train: {root} has no usable WAV clips")
    return x, [labels[i] for i in kept], [files[i] for i in kept], notes


def load_source(data_config, seed=0):
    """Read, check and label every clip of the dataset the config names.

    Args:
        data_config: The `data` section (`SpeechDataConfig`).
        seed: Seed of the `_unknown_` sampling and the `_silence_` cuts. Default: `0`.

    Returns:
        A `SpeechSource`.
    """
    d = data_config
    rng = np.random.default_rng(seed)
    is_synthetic = d.path is None
    root = synthetic.ensure_default_data() if is_synthetic else Path(d.path).expanduser()
    layout, records = layouts.list_records(root, d.layout, d.split, d.test_speaker)
    if d.split == "speaker" and layout != "fsdd":
        raise ConfigError(f"data.split=speaker is for the FSDD layout; {root} is {layout} (already split by speaker)")
    classes = ("12" if layout == "speech_commands" else "all") if d.classes == "auto" else d.classes
    records, class_names = _labelled(records, classes, d.unknown_fraction, rng)
    clip_samples = int(round(d.clip_seconds * d.sample_rate))
    noise = load_noise(root, d.sample_rate, rng)
    index = {name: i for i, name in enumerate(class_names)}
    notes, splits, kept_records = collections.Counter(), {}, []
    for split in layouts.SPLITS:
        part = records[records["split"] == split].reset_index(drop=True)
        x, kept, split_notes = load_clips(part["file"].tolist(), d.sample_rate, clip_samples, what=f"{split} clips")
        notes.update(split_notes)
        part = part.iloc[kept].reset_index(drop=True)
        y = part["label"].map(index).to_numpy(dtype="int64")
        files = part["file"].tolist()
        if classes == "12":
            count = math.ceil(int((part["label"] != UNKNOWN).sum()) * d.silence_fraction)
            quiet, names = silence_clips(noise, count, clip_samples, rng)
            x, y = np.concatenate([x, quiet]), np.concatenate([y, np.full(count, index[SILENCE], dtype="int64")])
            files += names
            part = pd.concat([part, pd.DataFrame({"file": names, "word": SILENCE, "split": split, "label": SILENCE})])
        if len(x) == 0:
            raise DataError(f"{root}: the {split} split has no usable clips (layout {layout})")
        if split == "train":
            for extra_root in d.extra_train or ():
                extra_x, labels, extra_files, extra_notes = extra_training_clips(
                    extra_root, class_names, d.sample_rate, clip_samples, d.extra_train_labels
                )
                notes.update(extra_notes)
                x, files = np.concatenate([x, extra_x]), files + extra_files
                y = np.concatenate([y, np.array([index[label] for label in labels], dtype="int64")])
                extra = pd.DataFrame({"file": extra_files, "word": labels, "split": split, "label": labels})
                part = pd.concat([part, extra], ignore_index=True)
        splits[split] = Split(x, y, files)
        kept_records.append(part)
    counts = {split: len(part.y) for split, part in splits.items()}
    logger.info(
        "%s data in %s (%s layout, %d classes): %s",
        "SYNTHETIC" if is_synthetic else "speech",
        root,
        layout,
        len(class_names),
        counts,
    )
    return SpeechSource(
        root=root,
        layout=layout,
        synthetic=is_synthetic,
        class_names=class_names,
        splits=splits,
        noise=noise,
        records=pd.concat(kept_records, ignore_index=True).fillna({"speaker": ""}),
        notes=notes,
        loaded_with=loading_settings(d),
    )
