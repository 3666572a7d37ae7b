"""Read, check and split the clips: the task's `load_source`, once per run or tune.

Layouts (which file holds which word, in which split):
    speech_commands: Google Speech Commands. One folder per word of ~1 s 16 kHz clips named
        `{speaker}_nohash_{n}.wav`, `validation_list.txt` and `testing_list.txt` naming the
        validation and test clips (`word/file.wav`), `_background_noise_/` with long noise
        recordings. Without the lists, the dataset's own hash rule splits by speaker.
    fsdd: Free Spoken Digit Dataset, `recordings/{digit}_{speaker}_{index}.wav` at 8 kHz. Split
        `official`: index 0-4 test, 5-9 validation, 10-49 train. Split `speaker`: every clip of
        `test_speaker` is test; the other speakers' index 0-4 are validation, 5-49 train.
    folders: any tree with one folder per label; split by the Speech Commands hash rule (10 %
        validation, 10 % test, by file name with any `_nohash_...` suffix removed).
Folders whose name starts with `_` or `.` are not labels; `_background_noise_/` is the noise bank.

Every clip is read with `soundfile` and checked (each case is counted and logged by `load_clips`):
    unreadable (empty, truncated, not a WAV, no samples, a sample rate outside 1 to 768 kHz, NaN or
        infinite samples): `AudioError` naming the file; while loading a dataset the file is skipped.
    silent (peak below `SILENCE_PEAK`, -80 dBFS): kept by `load_clip`; a dataset loader skips it,
        since a silent clip in a word's folder carries no word.
    several channels: averaged to mono. Another sample rate: resampled (`scipy.signal.resample_poly`).
    longer than the clip: cropped to the loudest window; shorter: zero-padded on both sides.

Memory: with up to `data.in_memory_max_clips` clips each split's waveforms are one float32 array
`(clips, samples)`, filled in place; with more, each clip goes as it is read into a
`streaming.ClipFile` (a float32 file in the cache folder, read back a batch at a time), so loading
and training never hold a split in memory whole.

Class setups (`data.classes`):
    `12` (Speech Commands' standard task): the ten commands, `_unknown_` (other words, sampled to
        `unknown_fraction` of each split's command clips) and `_silence_` (1 s cuts of the
        background noise at a random level, `silence_fraction` of each split's command clips).
    `all`: one class per word folder (or per FSDD digit). `auto`: `12` for the Speech Commands
        layout, `all` otherwise.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import io
import logging
import math
import re
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import soundfile
from scipy.signal import resample_poly

from pipelines.downloads import CACHE_ENV, cache_dir, make_folder
from pipelines.errors import ConfigError, DataError
from pipelines.speech_commands.clip_file import ClipFile

if TYPE_CHECKING:
    from pipelines.speech_commands.task import SpeechDataConfig

LAYOUTS = ("auto", "speech_commands", "fsdd", "folders")
CLASS_SETUPS = ("auto", "12", "all")
SPLITS = ("train", "val", "test")
NOISE_FOLDER = "_background_noise_"
COMMANDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")  # the 12-class task's words
SILENCE, UNKNOWN = "_silence_", "_unknown_"
FSDD_NAME = re.compile(r"^(?P<digit>\d)_(?P<speaker>[A-Za-z0-9]+)_(?P<index>\d+)\.(?i:wav)$")
SILENCE_PEAK = 1e-4
MIN_RATE, MAX_RATE = 1_000, 768_000  # sample rates read_wav accepts
WAV_FORMATS = ("WAV", "WAVEX", "RF64")  # libsndfile's names of the RIFF, RIFX and RF64 WAVE containers
_MAX_CLIPS_PER_CLASS = 2**27 - 1  # the constant of the Speech Commands hash split
_PLACEHOLDER = 0xFFFFFFFF  # the size an encoder that cannot seek back leaves in a WAV header
logger = logging.getLogger(__name__)


class AudioError(DataError):
    """A file that cannot be used as audio; the message names the file."""


# WAV reading ------------------------------------------------------------------------------------------------


DataLayout = collections.namedtuple("DataLayout", ["start", "promised_bytes", "sample_rate"])
DataLayout.__doc__ = """Where a WAV file's samples start (byte offset), how many bytes its header promises
(None for the streaming placeholder) and the `fmt ` chunk's sample rate (None without one before the data)."""


def _data_layout(content: bytes) -> DataLayout | None:
    """Walk a WAV file's chunks up to its `data` chunk; `None` when there is none (or no RIFF/RIFX/RF64 WAVE)."""
    form = content[:4]
    if form not in (b"RIFF", b"RIFX", b"RF64") or content[8:12] != b"WAVE":
        return None
    size_format = ">I" if form == b"RIFX" else "<I"
    position, sample_rate, rf64_data_bytes = 12, None, None
    while position + 8 <= len(content):
        chunk_id = content[position : position + 4]
        (size,) = struct.unpack(size_format, content[position + 4 : position + 8])
        body = position + 8
        if chunk_id == b"ds64" and len(content) >= body + 16:
            (rf64_data_bytes,) = struct.unpack("<Q", content[body + 8 : body + 16])
        elif chunk_id == b"fmt " and len(content) >= body + 8:
            (sample_rate,) = struct.unpack(size_format, content[body + 4 : body + 8])
        elif chunk_id == b"data":
            if size != _PLACEHOLDER:
                promised = size
            else:  # RF64 keeps the real size in ds64; RIFF and RIFX mean "to the end of the file"
                promised = rf64_data_bytes if form == b"RF64" else None
            return DataLayout(body, promised, sample_rate)
        position = body + size + (size & 1)
    return None


def _check_rate(path, rate) -> None:
    if not MIN_RATE <= rate <= MAX_RATE:  # an absurd rate would make resampling allocate gigabytes
        raise AudioError(
            f"{path}: WAV header gives a sample rate of {rate} Hz (expected {MIN_RATE:,} to {MAX_RATE:,} Hz)"
        )


def read_wav(path: str | Path) -> tuple[int, np.ndarray]:
    """Read a WAV file as float32 in [-1, 1].

    libsndfile decodes it (PCM 8 to 32 bits, float, and the compressed WAV codecs it knows; RIFF,
    RIFX or RF64) and skips metadata chunks; a streamed file (placeholder sizes) that ends inside a
    frame loses that frame. libsndfile reads a truncated file quietly, so the `data` chunk's size is
    checked here against the bytes there are (a wrong RIFF size alone is ignored).

    Args:
        path: A `.wav` file.

    Returns:
        `(sample_rate, samples)`; samples are `(n,)` or `(n, channels)` float32.

    Raises:
        AudioError: The file is empty, truncated, not a WAV file, has no samples, gives a sample
            rate outside `MIN_RATE` to `MAX_RATE` or holds NaN or infinite samples.
    """
    try:
        content = Path(path).read_bytes()
    except OSError as error:
        raise AudioError(f"{path}: not a readable WAV file ({error.strerror or error})") from None
    layout = _data_layout(content)
    if layout is not None and layout.sample_rate is not None:
        _check_rate(path, layout.sample_rate)  # libsndfile's own message for a rate of 0 says nothing of it
    try:
        with soundfile.SoundFile(io.BytesIO(content)) as file:
            if file.format not in WAV_FORMATS:
                raise AudioError(f"{path}: not a WAV file (it holds {file.format_info})")
            rate, samples = file.samplerate, file.read(dtype="float32")
    except soundfile.LibsndfileError as error:
        raise AudioError(f"{path}: not a readable WAV file ({error.error_string})") from None
    if layout is not None and layout.promised_bytes is not None:
        available = len(content) - layout.start
        if available < layout.promised_bytes:
            raise AudioError(
                f"{path}: truncated WAV file (the data chunk holds {available:,} of {layout.promised_bytes:,} bytes)"
            )
    if samples.size == 0:
        raise AudioError(f"{path}: WAV file has no samples")
    _check_rate(path, rate)
    if not np.isfinite(samples).all():
        raise AudioError(f"{path}: WAV file holds NaN or infinite samples")
    return int(rate), samples


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int = 16000) -> None:
    """Write float samples in [-1, 1] as 16-bit PCM (rounded, clipped at full scale).

    Args:
        path: The `.wav` file to write.
        samples: `(n,)` or `(n, channels)` floats.
        sample_rate: In Hz. Default: `16000`.
    """
    pcm = np.clip(np.asarray(samples, dtype="float32"), -1.0, 1.0 - 1.0 / 32768)
    soundfile.write(path, np.round(pcm * 32768).astype("int16"), sample_rate, subtype="PCM_16", format="WAV")


def resample(samples: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """Resample a mono signal (polyphase filter).

    Args:
        samples: `(n,)` floats.
        rate: Their rate in Hz.
        target_rate: The rate wanted, in Hz.

    Returns:
        float32 `(round(n * target_rate / rate),)`; `samples` itself when the rates are equal.
    """
    if rate == target_rate:
        return samples
    divisor = math.gcd(rate, target_rate)
    return resample_poly(samples, target_rate // divisor, rate // divisor).astype("float32")


def fit_length(samples: np.ndarray, length: int) -> np.ndarray:
    """Crop to the loudest `length`-sample window, or zero-pad on both sides to `length`.

    Args:
        samples: `(n,)` floats.
        length: Samples wanted.

    Returns:
        `(length,)`.
    """
    if len(samples) > length:
        energy = np.concatenate([[0.0], np.cumsum(np.square(samples, dtype="float64"))])
        start = int(np.argmax(energy[length:] - energy[:-length]))
        return samples[start : start + length]
    missing = length - len(samples)
    return np.pad(samples, (missing // 2, missing - missing // 2))


def _is_silent(samples: np.ndarray) -> bool:
    """True when the peak amplitude is below `SILENCE_PEAK` (-80 dBFS)."""
    return float(np.max(np.abs(samples))) < SILENCE_PEAK


def load_clip(
    path: str | Path, sample_rate: int = 16000, clip_samples: int = 16000, notes: collections.Counter | None = None
) -> np.ndarray:
    """One clip as the model takes it: mono float32 `(clip_samples,)` at `sample_rate`.

    Args:
        path: WAV file.
        sample_rate: Target rate in Hz. Default: `16000`.
        clip_samples: Target length in samples. Default: `16000`.
        notes: Counts `downmixed`, `resampled`, `cropped`, `padded` when given. Default: `None`.

    Returns:
        float32 array `(clip_samples,)`.

    Raises:
        AudioError: As `read_wav`.
    """
    notes = notes if notes is not None else collections.Counter()
    rate, samples = read_wav(path)
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
        notes["downmixed"] += 1
    if rate != sample_rate:
        samples = resample(samples, rate, sample_rate)
        notes["resampled"] += 1
    if len(samples) != clip_samples:
        notes["cropped" if len(samples) > clip_samples else "padded"] += 1
    return np.asarray(fit_length(samples, clip_samples), dtype="float32")


def load_clips(
    paths: list,
    sample_rate: int = 16000,
    clip_samples: int = 16000,
    what: str = "clips",
    keep_silent: bool = False,
    into: ClipFile | None = None,
) -> tuple[np.ndarray | ClipFile, np.ndarray, collections.Counter]:
    """Load many clips, skipping unreadable and silent files; logs what was done and skipped.

    Args:
        paths: WAV files.
        sample_rate: Target rate in Hz. Default: `16000`.
        clip_samples: Target length in samples. Default: `16000`.
        what: Name used in the log line. Default: `"clips"`.
        keep_silent: Keep silent clips (counted as `silent`) instead of skipping them. Default: `False`.
        into: Append each kept clip to this file as it is read, instead of collecting them in an
            array. Default: `None`.

    Returns:
        `(waveforms, kept, notes)`: float32 `(n_kept, clip_samples)` (`into` itself when given), the
        indices into `paths` that were kept, and a `Counter` of what happened (`skipped_unreadable`,
        `skipped_silent`, ...).
    """
    notes = collections.Counter()
    kept, problems = [], []
    # Filled in place, not stacked from a list: the clips are never held twice.
    waveforms = np.empty((len(paths) if into is None else 0, clip_samples), dtype="float32")
    for index, path in enumerate(paths):
        try:
            clip = load_clip(path, sample_rate, clip_samples, notes)
        except AudioError as error:
            notes["skipped_unreadable"] += 1
            problems.append(str(error))
            continue
        if _is_silent(clip) and keep_silent:
            notes["silent"] += 1
        elif _is_silent(clip):
            notes["skipped_silent"] += 1
            problems.append(f"{path}: silent (peak below {SILENCE_PEAK})")
            continue
        if into is None:
            waveforms[len(kept)] = clip
        else:
            into.append(clip)
        kept.append(index)
    summary = ", ".join(f"{key} {count}" for key, count in sorted(notes.items())) or "nothing to fix"
    logger.info("loaded %d of %d %s (%s)", len(kept), len(paths), what, summary)
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        logger.warning("skipped %d bad %s: %s", len(problems), what, shown)
    return (waveforms[: len(kept)] if into is None else into), np.asarray(kept, dtype="int64"), notes


# Layouts ----------------------------------------------------------------------------------------------------


def wav_files(folder: str | Path, recursive: bool = False) -> list[Path]:
    """The `.wav` files of a folder, any case of the extension.

    Args:
        folder: Where to look.
        recursive: Search its whole tree. Default: `False`.

    Returns:
        The files, sorted.
    """
    paths = Path(folder).rglob("*") if recursive else Path(folder).glob("*")
    return sorted(path for path in paths if path.suffix.lower() == ".wav" and path.is_file())


def detect_layout(root: str | Path) -> str:
    """The layout of a dataset folder.

    Args:
        root: Dataset folder.

    Returns:
        `speech_commands` (split lists, or a noise bank beside the ten command folders), `fsdd` or `folders`.
    """
    root = Path(root)
    if (root / "validation_list.txt").is_file() or (root / "testing_list.txt").is_file():
        return "speech_commands"
    if (root / NOISE_FOLDER).is_dir() and all((root / word).is_dir() for word in COMMANDS):
        return "speech_commands"
    return "fsdd" if _fsdd_folder(root) is not None else "folders"


def _fsdd_folder(root):
    for folder in (root / "recordings", root):
        if folder.is_dir() and any(FSDD_NAME.match(path.name) for path in wav_files(folder)):
            return folder
    return None


def hash_split(file_name: str, val_percent: float = 10.0, test_percent: float = 10.0) -> str:
    """The Speech Commands split of a clip, by a hash of its name: every clip of one speaker lands in one split.

    Args:
        file_name: The clip's file name; a `_nohash_...` suffix is left out of the hash.
        val_percent: Share of validation clips. Default: `10.0`.
        test_percent: Share of test clips. Default: `10.0`.

    Returns:
        `train`, `val` or `test`.
    """
    stem = re.sub(r"_nohash_.*$", "", Path(file_name).name)
    value = int(hashlib.sha1(stem.encode()).hexdigest(), 16) % (_MAX_CLIPS_PER_CLASS + 1)
    percent = value * (100.0 / _MAX_CLIPS_PER_CLASS)
    if percent < val_percent:
        return "val"
    return "test" if percent < val_percent + test_percent else "train"


def _speaker(path):
    name = Path(path).name
    return name.split("_nohash_")[0] if "_nohash_" in name else ""


def _label_folders(root: str | Path) -> list[Path]:
    """The label folders of a tree: every folder whose name does not start with `_` or `.`; at least one."""
    folders = sorted(p for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
    if not folders:
        raise DataError(f"{root}: no label folders found (expected one folder of WAV files per word)")
    return folders


def _read_list(path):
    if not path.is_file():
        return set()
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark (Notepad's "UTF-8") is not a path
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text (expected one clip path per line): {error}") from None
    return {line.strip().replace("\\", "/") for line in text.splitlines() if line.strip()}


def list_speech_commands(root: str | Path) -> pd.DataFrame:
    """Records of a Speech Commands tree, split by its lists (or, without them, by `hash_split`).

    Args:
        root: Dataset folder.

    Returns:
        A DataFrame `file, word, split, speaker`.
    """
    root = Path(root)
    val_list, test_list = _read_list(root / "validation_list.txt"), _read_list(root / "testing_list.txt")
    rows, seen = [], set()
    for folder in _label_folders(root):
        for path in wav_files(folder):
            relative = f"{folder.name}/{path.name}"
            seen.add(relative)
            if val_list or test_list:
                split = "val" if relative in val_list else "test" if relative in test_list else "train"
            else:
                split = hash_split(path.name)
            rows.append((str(path), folder.name, split, _speaker(path)))
    for name, listed in (("validation_list.txt", val_list), ("testing_list.txt", test_list)):
        _check_list(root / name, listed, seen)
    return pd.DataFrame(rows, columns=["file", "word", "split", "speaker"])


def _check_list(path, listed, seen):
    """A split list must name clips of the tree: none found is an error, some missing a warning."""
    missing = sorted(listed - seen)
    if listed and len(missing) == len(listed):
        raise DataError(
            f"{path}: none of its {len(listed)} entries names a clip of the tree (first: {missing[0]!r}; "
            "expected paths relative to the dataset folder, such as 'yes/0a7c2a8d_nohash_0.wav')"
        )
    if missing:
        logger.warning("%s: %d of its %d entries name no clip (first: %s)", path, len(missing), len(listed), missing[0])


def list_folders(root: str | Path) -> pd.DataFrame:
    """Records of a one-folder-per-label tree, split by `hash_split`.

    Args:
        root: Dataset folder.

    Returns:
        A DataFrame `file, word, split, speaker`.
    """
    rows = [
        (str(path), folder.name, hash_split(path.name), _speaker(path))
        for folder in _label_folders(root)
        for path in wav_files(folder, recursive=True)
    ]
    return pd.DataFrame(rows, columns=["file", "word", "split", "speaker"])


def list_fsdd(root: str | Path, split: str = "official", test_speaker: str | None = None) -> pd.DataFrame:
    """Records of a Free Spoken Digit Dataset folder.

    Args:
        root: Dataset folder (or its `recordings/`).
        split: `official` or `speaker`. Default: `"official"`.
        test_speaker: The speaker `speaker` holds out; `None` is the first in alphabetical order.

    Returns:
        A DataFrame `file, word, split, speaker`.
    """
    folder = _fsdd_folder(Path(root))
    if folder is None:
        raise DataError(f"{root}: no FSDD recordings found (expected recordings/{{digit}}_{{speaker}}_{{index}}.wav)")
    rows = []
    for path in wav_files(folder):
        if match := FSDD_NAME.match(path.name):
            rows.append((str(path), match["digit"], match["speaker"], int(match["index"])))
    frame = pd.DataFrame(rows, columns=["file", "word", "speaker", "index"])
    if split == "official":
        frame["split"] = ["test" if i < 5 else "val" if i < 10 else "train" for i in frame["index"]]
    else:
        speakers = sorted(frame["speaker"].unique())
        test_speaker = test_speaker or speakers[0]
        if test_speaker not in speakers:
            raise ConfigError(
                f"data.test_speaker: {test_speaker!r} is not in {folder}; speakers: {', '.join(speakers)}"
            )
        frame["split"] = [
            "test" if s == test_speaker else "val" if i < 5 else "train"
            for s, i in zip(frame["speaker"], frame["index"], strict=True)
        ]
    return frame[["file", "word", "split", "speaker"]]


def noise_files(root: str | Path) -> list[str]:
    """The noise recordings of a dataset.

    Args:
        root: Dataset folder.

    Returns:
        The WAV files in its `_background_noise_/` (none when the folder is missing).
    """
    return [str(path) for path in wav_files(Path(root) / NOISE_FOLDER)]


def list_records(
    root: str | Path, layout: str = "auto", split: str = "official", test_speaker: str | None = None
) -> tuple[str, pd.DataFrame]:
    """Records of any supported layout.

    Args:
        root: Dataset folder.
        layout: One of `LAYOUTS`. Default: `"auto"`.
        split: FSDD split, `official` or `speaker`. Default: `"official"`.
        test_speaker: FSDD held-out speaker; `None` is the first in alphabetical order.

    Returns:
        `(layout, records)`: the resolved layout and a DataFrame `file, word, split, speaker`.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data.path: {root} is not a folder")
    layout = detect_layout(root) if layout == "auto" else layout
    if layout == "fsdd":
        records = list_fsdd(root, split, test_speaker)
    elif layout == "speech_commands":
        records = list_speech_commands(root)
    else:
        records = list_folders(root)
    if records.empty:
        raise DataError(f"{root}: no WAV files found for layout {layout!r}")
    return layout, records


# Loading ----------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Split:
    """One split: waveforms `(n, samples)` float32 (an array, or a `ClipFile` streamed from disk), labels
    `(n,)` int64, and where each clip came from."""

    x: np.ndarray | ClipFile
    y: np.ndarray
    files: list[str]


@dataclasses.dataclass
class SpeechSource:
    """Everything read from disk, for every trial of a run or tune; `loaded_with` is the `data` group read."""

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


def _labelled(records, classes, unknown_fraction, rng):
    """Records with a `label` column for the class setup; `_unknown_` clips sampled per split."""
    if classes == "all":
        return records.assign(label=records["word"]), sorted(records["word"].unique())
    missing = [word for word in COMMANDS if word not in set(records["word"])]
    if missing:
        raise DataError(
            f"data.classes=12 needs a folder for each of {', '.join(COMMANDS)}; missing: "
            f"{', '.join(missing)}. Use data.classes=all for another vocabulary."
        )
    is_command = records["word"].isin(COMMANDS)
    parts = [records[is_command].assign(label=records["word"])]
    for split in SPLITS:
        others = records[~is_command & (records["split"] == split)]
        wanted = math.ceil(int((is_command & (records["split"] == split)).sum()) * unknown_fraction)
        chosen = rng.choice(len(others), size=min(wanted, len(others)), replace=False)
        parts.append(others.iloc[np.sort(chosen)].assign(label=UNKNOWN))
    return pd.concat(parts, ignore_index=True), [SILENCE, UNKNOWN, *COMMANDS]


def _load_noise(root: str | Path, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """The noise bank, 1-D float32: `_background_noise_/` resampled and joined, or generated colored noise."""
    from pipelines.speech_commands import synthetic  # it writes its trees with this module's WAV functions

    pieces = []
    for path in noise_files(root):
        try:
            rate, samples = read_wav(path)
        except AudioError as error:
            logger.warning("skipped background noise file: %s", error)
            continue
        samples = samples.mean(axis=1) if samples.ndim == 2 else samples
        pieces.append(resample(samples, rate, sample_rate))
    if not pieces:
        logger.info("no %s folder in %s: using generated white, pink, brown and hum noise", NOISE_FOLDER, root)
        generated = synthetic.noise_bank(rng, seconds=10.0)
        pieces = [resample(0.5 * samples, synthetic.SAMPLE_RATE, sample_rate) for samples in generated.values()]
    return np.concatenate(pieces).astype("float32")


def _silence_clips(
    noise: np.ndarray, count: int, clip_samples: int, rng: np.random.Generator, chunk: int | None = None
) -> tuple[Iterator[np.ndarray], list[str]]:
    """`_silence_` clips cut from the noise bank at random offsets and gains (0-1), and their names.

    The offsets and gains are drawn at once; the clips come `chunk` at a time (all at once for `None`).
    """
    if len(noise) <= clip_samples:
        noise = np.tile(noise, clip_samples // max(len(noise), 1) + 2)
    starts = rng.integers(0, len(noise) - clip_samples, size=count)
    gains = rng.uniform(0.0, 1.0, size=(count, 1)).astype("float32")
    chunk = chunk or max(count, 1)

    def cut(first):
        rows = starts[first : first + chunk, None] + np.arange(clip_samples)
        return (noise[rows] * gains[first : first + chunk]).astype("float32")

    clips = (cut(first) for first in range(0, count, chunk))
    return clips, [f"{NOISE_FOLDER}@{start}" for start in starts]


def _extra_training_files(
    root: str | Path, class_names: list[str], folder_labels: dict | None = None
) -> tuple[list[str], list[str]]:
    """The WAV files of a one-folder-per-label tree that `data.extra_train` adds to the training split.

    Args:
        root: The tree; every folder not starting with `_` or `.` is a label folder.
        class_names: The dataset's classes.
        folder_labels: `data.extra_train_labels`: folder name -> class, e.g. Speech Commands' `zero`
            -> FSDD's `0`; only the folders it names are read. `None`: every label folder is read
            and must be named after a class.

    Returns:
        `(files, labels)`, `labels` the class names.
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
    for folder in _label_folders(root):
        if folder_labels is not None and folder.name not in folder_labels:
            skipped.append(folder.name)
            continue
        label = folder.name if folder_labels is None else folder_labels[folder.name]
        if label not in class_names:
            raise DataError(
                f"data.extra_train: {folder} is not named after a class of the dataset ({', '.join(class_names)})"
            )
        paths = [str(path) for path in wav_files(folder, recursive=True)]
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
    return files, labels


def _append(x: np.ndarray | ClipFile, clips: np.ndarray) -> np.ndarray | ClipFile:
    """`x` followed by `clips`: written to the end of a `ClipFile`, or a new array."""
    if isinstance(x, ClipFile):
        x.append(clips)
        return x
    return np.concatenate([x, clips])


def _clip_folder(clips: int, clip_bytes: int, limit: int) -> Path | None:
    """Where a source of `clips` clips from the tree streams from (`None`: held in memory).

    `clip_bytes` is the disk each one takes with its share of `_silence_` clips; a disk without room
    for them all is refused before anything is read.
    """
    if clips <= limit:
        return None
    folder = make_folder(cache_dir("speech_clips"))
    needed, free = clips * clip_bytes, shutil.disk_usage(folder).free
    if needed > free:
        raise DataError(
            f"data.in_memory_max_clips: {clips:,} clips stream from a file of about {needed / 1e9:.1f} GB in "
            f"{folder}, which has {free / 1e9:.1f} GB free; free space there, set {CACHE_ENV} to a folder on a "
            "larger disk, or raise data.in_memory_max_clips to hold them in memory"
        )
    logger.info(
        "%d clips (more than data.in_memory_max_clips=%d): streaming them from a file in %s", clips, limit, folder
    )
    return folder


def load_source(data_config: SpeechDataConfig, seed: int = 0) -> SpeechSource:
    """Read, check and label every clip of the dataset the config names.

    With more clips than `data.in_memory_max_clips` every split's waveforms go, as they are read,
    into a `streaming.ClipFile` (a float32 file in the cache folder, deleted when the process ends)
    instead of an array: the same rows in the same order.

    Args:
        data_config: The `data` group; all of it is read here, once.
        seed: Seed of the `_unknown_` sampling and the `_silence_` cuts. Default: `0`.

    Returns:
        A `SpeechSource`.
    """
    from pipelines.speech_commands import synthetic  # it writes its trees with this module's WAV functions

    d = data_config
    rng = np.random.default_rng(seed)
    is_synthetic = d.path is None
    root = synthetic.ensure_default_data() if is_synthetic else Path(d.path).expanduser()
    layout, records = list_records(root, d.layout, d.split, d.test_speaker)
    if d.split == "speaker" and layout != "fsdd":
        raise ConfigError(f"data.split=speaker is for the FSDD layout; {root} is {layout} (already split by speaker)")
    classes = ("12" if layout == "speech_commands" else "all") if d.classes == "auto" else d.classes
    records, class_names = _labelled(records, classes, d.unknown_fraction, rng)
    clip_samples = int(round(d.clip_seconds * d.sample_rate))
    silence = d.silence_fraction if classes == "12" else 0.0
    folder = _clip_folder(len(records), int(4 * clip_samples * (1 + silence)), d.in_memory_max_clips)  # float32
    noise = _load_noise(root, d.sample_rate, rng)
    index = {name: i for i, name in enumerate(class_names)}
    notes, splits, kept_records = collections.Counter(), {}, []
    for split in SPLITS:
        part = records[records["split"] == split].reset_index(drop=True)
        into = None if folder is None else ClipFile(folder, clip_samples)
        x, kept, split_notes = load_clips(
            part["file"].tolist(), d.sample_rate, clip_samples, what=f"{split} clips", into=into
        )
        notes.update(split_notes)
        part = part.iloc[kept].reset_index(drop=True)
        y = part["label"].map(index).to_numpy(dtype="int64")
        files = part["file"].tolist()
        if classes == "12":
            count = math.ceil(int((part["label"] != UNKNOWN).sum()) * d.silence_fraction)
            quiet, names = _silence_clips(noise, count, clip_samples, rng, chunk=None if into is None else 1024)
            for clips in quiet:
                x = _append(x, clips)
            y = np.concatenate([y, np.full(count, index[SILENCE], dtype="int64")])
            files += names
            part = pd.concat([part, pd.DataFrame({"file": names, "word": SILENCE, "split": split, "label": SILENCE})])
        if len(x) == 0:
            raise DataError(f"{root}: the {split} split has no usable clips (layout {layout})")
        if split == "train":
            for extra_root in d.extra_train or ():
                extra_files, labels = _extra_training_files(extra_root, class_names, d.extra_train_labels)
                extra_x, extra_kept, extra_notes = load_clips(
                    extra_files, d.sample_rate, clip_samples, what=f"extra training clips in {extra_root}", into=into
                )
                if len(extra_kept) == 0:
                    raise DataError(f"data.extra_train: {Path(extra_root).expanduser()} has no usable WAV clips")
                notes.update(extra_notes)
                extra_files, labels = [extra_files[i] for i in extra_kept], [labels[i] for i in extra_kept]
                x, files = (x if into is not None else np.concatenate([x, extra_x])), files + extra_files
                y = np.concatenate([y, np.array([index[label] for label in labels], dtype="int64")])
                extra = pd.DataFrame({"file": extra_files, "word": labels, "split": split, "label": labels})
                part = pd.concat([part, extra], ignore_index=True)
        splits[split] = Split(x, y, files)
        kept_records.append(part)
    counts = {split: len(part.y) for split, part in splits.items()}
    kind = "SYNTHETIC" if is_synthetic else "speech"
    logger.info("%s data in %s (%s layout, %d classes): %s", kind, root, layout, len(class_names), counts)
    return SpeechSource(
        root=root,
        layout=layout,
        synthetic=is_synthetic,
        class_names=class_names,
        splits=splits,
        noise=noise,
        records=pd.concat(kept_records, ignore_index=True).fillna({"speaker": ""}),
        notes=notes,
        loaded_with=dataclasses.asdict(d),
    )
