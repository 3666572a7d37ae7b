"""Which file holds which word, in which split: the three folder layouts the task reads.

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
"""

import hashlib
import logging
import re
from pathlib import Path

import pandas as pd

from pipelines.errors import ConfigError, DataError

LAYOUTS = ("auto", "speech_commands", "fsdd", "folders")
SPLITS = ("train", "val", "test")
NOISE_FOLDER = "_background_noise_"
COMMANDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")  # the 12-class task's words
FSDD_NAME = re.compile(r"^(?P<digit>\d)_(?P<speaker>[A-Za-z0-9]+)_(?P<index>\d+)\.(?i:wav)$")
_MAX_CLIPS_PER_CLASS = 2**27 - 1  # the constant of the Speech Commands hash split
logger = logging.getLogger(__name__)


def wav_files(folder, recursive=False):
    """The `.wav` files of a folder (of its whole tree with `recursive`), any case of the extension, sorted."""
    paths = Path(folder).rglob("*") if recursive else Path(folder).glob("*")
    return sorted(path for path in paths if path.suffix.lower() == ".wav" and path.is_file())


def detect_layout(root):
    """`speech_commands` (split lists, or a noise bank beside the ten command folders), `fsdd` or
    `folders` for a dataset folder."""
    root = Path(root)
    if (root / "validation_list.txt").is_file() or (root / "testing_list.txt").is_file():
        return "speech_commands"
    if (root / NOISE_FOLDER).is_dir() and all((root / word).is_dir() for word in COMMANDS):
        return "speech_commands"
    if _fsdd_folder(root) is not None:
        return "fsdd"
    return "folders"


def _fsdd_folder(root):
    for folder in (root / "recordings", root):
        if folder.is_dir() and any(FSDD_NAME.match(path.name) for path in wav_files(folder)):
            return folder
    return None


def hash_split(file_name, val_percent=10.0, test_percent=10.0):
    """The Speech Commands split of a clip: every clip of one speaker lands in the same split."""
    stem = re.sub(r"_nohash_.*$", "", Path(file_name).name)
    value = int(hashlib.sha1(stem.encode()).hexdigest(), 16) % (_MAX_CLIPS_PER_CLASS + 1)
    percent = value * (100.0 / _MAX_CLIPS_PER_CLASS)
    if percent < val_percent:
        return "val"
    if percent < val_percent + test_percent:
        return "test"
    return "train"


def _speaker(path):
    name = Path(path).name
    return name.split("_nohash_")[0] if "_nohash_" in name else ""


def label_folders(root):
    """The label folders of a tree: every folder whose name does not start with `_` or `.`."""
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


def list_speech_commands(root):
    """Records of a Speech Commands tree: `file, word, split, speaker`."""
    root = Path(root)
    val_list, test_list = _read_list(root / "validation_list.txt"), _read_list(root / "testing_list.txt")
    use_lists = bool(val_list or test_list)
    rows, seen = [], set()
    for folder in label_folders(root):
        for path in wav_files(folder):
            relative = f"{folder.name}/{path.name}"
            seen.add(relative)
            if use_lists:
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


def list_folders(root):
    """Records of a one-folder-per-label tree, split by the Speech Commands hash rule."""
    rows = [
        (str(path), folder.name, hash_split(path.name), _speaker(path))
        for folder in label_folders(root)
        for path in wav_files(folder, recursive=True)
    ]
    return pd.DataFrame(rows, columns=["file", "word", "split", "speaker"])


def list_fsdd(root, split="official", test_speaker=None):
    """Records of a Free Spoken Digit Dataset folder for the `official` or `speaker` split."""
    folder = _fsdd_folder(Path(root))
    if folder is None:
        raise DataError(f"{root}: no FSDD recordings found (expected recordings/{{digit}}_{{speaker}}_{{index}}.wav)")
    rows = []
    for path in wav_files(folder):
        match = FSDD_NAME.match(path.name)
        if match:
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


def noise_files(root):
    """WAV files in `_background_noise_/` (empty when the folder is missing)."""
    return [str(path) for path in wav_files(Path(root) / NOISE_FOLDER)]


def list_records(root, layout="auto", split="official", test_speaker=None):
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
