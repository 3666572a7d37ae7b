"""Each layout and split on tiny WAV trees; the class setups and what load_source returns."""

import logging

import numpy as np
import pytest

from pipelines.config import load_config
from pipelines.errors import ConfigError, DataError
from pipelines.speech_commands import data
from pipelines.speech_commands.data import SILENCE, UNKNOWN, load_source
from pipelines.speech_commands.task import SpeechConfig, SpeechDataConfig
from tests.speech_commands.audio_trees import (
    COMMANDS,
    folders_tree,
    fsdd_tree,
    speech_commands_tree,
    tone,
    write_wav,
)


def test_detects_each_layout(tmp_path):
    assert data.detect_layout(speech_commands_tree(tmp_path / "sc", words=("yes",), speakers=2)) == "speech_commands"
    assert data.detect_layout(fsdd_tree(tmp_path / "fsdd", speakers=("a",), indices=[0])) == "fsdd"
    assert data.detect_layout(folders_tree(tmp_path / "f", per_label=1)) == "folders"
    unlisted = speech_commands_tree(tmp_path / "sc2", words=COMMANDS, speakers=1, lists=False)
    assert data.detect_layout(unlisted) == "speech_commands"  # the noise bank beside the ten commands
    noisy_folders = folders_tree(tmp_path / "f2", per_label=1)
    write_wav(noisy_folders / "_background_noise_" / "hum.wav", tone(50.0, seconds=2.0))
    assert data.detect_layout(noisy_folders) == "folders"


def test_split_lists_that_name_no_clip_are_an_error_and_stray_entries_a_warning(tmp_path, caplog):
    root = speech_commands_tree(tmp_path, words=("yes", "no"), speakers=4)
    listed = (root / "testing_list.txt").read_text()
    (root / "testing_list.txt").write_text(listed + "yes/deleted_nohash_0.wav\n")
    with caplog.at_level(logging.WARNING, logger="pipelines.speech_commands.data"):
        records = data.list_speech_commands(root)
    assert (records["split"] == "test").sum() == 2
    assert "testing_list.txt: 1 of its 3 entries name no clip (first: yes/deleted_nohash_0.wav)" in caplog.text
    (root / "validation_list.txt").write_text("".join(f"./{line}\n" for line in listed.split()))
    with pytest.raises(DataError, match=r"validation_list.txt: none of its 2 entries names a clip of the tree"):
        data.list_speech_commands(root)
    (root / "validation_list.txt").write_bytes(b"yes/\xff.wav\n")
    with pytest.raises(DataError, match=r"validation_list.txt: not UTF-8 text \(expected one clip path per line\)"):
        data.list_speech_commands(root)


def test_speech_commands_lists_name_the_validation_and_test_clips(tmp_path):
    root = speech_commands_tree(tmp_path, words=("yes", "no"), speakers=4)
    records = data.list_speech_commands(root)
    assert len(records) == 8
    assert set(records.loc[records["split"] == "val", "speaker"]) == {"spk0000"}
    assert set(records.loc[records["split"] == "test", "speaker"]) == {"spk0001"}
    assert (records["split"] == "train").sum() == 4


def test_split_lists_written_with_a_byte_order_mark_name_their_first_clip(tmp_path):
    root = speech_commands_tree(tmp_path, words=("yes", "no"), speakers=4)
    for name in ("validation_list.txt", "testing_list.txt"):
        (root / name).write_text("\ufeff" + (root / name).read_text(), encoding="utf-8")  # as Notepad saves UTF-8
    records = data.list_speech_commands(root)
    assert set(records.loc[records["split"] == "test", "word"]) == {"yes", "no"}
    assert (records["split"] == "val").sum() == 2 and (records["split"] == "train").sum() == 4


def test_hash_split_keeps_a_speaker_in_one_split():
    splits = {data.hash_split(f"speaker{n}_nohash_{k}.wav") for n in range(1) for k in range(5)}
    assert len(splits) == 1
    shares = [data.hash_split(f"s{n}_nohash_0.wav") for n in range(2000)]
    assert 0.05 < shares.count("val") / 2000 < 0.15 and 0.05 < shares.count("test") / 2000 < 0.15


def test_twelve_classes_sample_unknown_and_cut_silence(tmp_path):
    root = speech_commands_tree(tmp_path, speakers=6)
    source = load_source(SpeechDataConfig(path=str(root)), seed=0)
    assert source.layout == "speech_commands"
    assert source.class_names == [SILENCE, UNKNOWN, *COMMANDS]
    train = source.splits["train"]
    counts = np.bincount(train.y, minlength=12)
    assert counts[2:].tolist() == [4] * 10  # 4 training speakers per command
    assert counts[1] == 4 and counts[0] == 4  # ceil(40 * 0.1) unknown clips and silence clips
    assert train.x.shape == (48, 16000) and train.x.dtype == np.float32
    assert sum(name.startswith("_background_noise_@") for name in train.files) == 4
    assert len(source.splits["val"].y) == len(source.splits["test"].y) == 12


def test_all_words_setup_and_missing_commands(tmp_path):
    root = speech_commands_tree(tmp_path, words=("yes", "cat", "dog"), speakers=4)
    source = load_source(SpeechDataConfig(path=str(root), classes="all"))
    assert source.class_names == ["cat", "dog", "yes"]
    with pytest.raises(DataError, match="missing: no, up"):
        load_source(SpeechDataConfig(path=str(root), classes="12"))


def test_fsdd_official_split_and_resampling(tmp_path):
    root = fsdd_tree(tmp_path)
    source = load_source(SpeechDataConfig(path=str(root)))
    assert source.layout == "fsdd" and source.class_names == [str(d) for d in range(10)]
    assert {name: len(split.y) for name, split in source.splits.items()} == {"train": 60, "val": 150, "test": 150}
    assert source.notes["resampled"] == 360 and source.notes["cropped"] == 90
    test_files = source.splits["test"].files
    assert all(int(name.rsplit("_", 1)[1].removesuffix(".wav")) < 5 for name in test_files)


def test_fsdd_held_out_speaker(tmp_path):
    root = fsdd_tree(tmp_path)
    source = load_source(SpeechDataConfig(path=str(root), split="speaker", test_speaker="bob"))
    assert all("_bob_" in name for name in source.splits["test"].files)
    assert not any("_bob_" in name for name in source.splits["train"].files + source.splits["val"].files)
    assert len(source.splits["test"].y) == 120
    with pytest.raises(ConfigError, match="data.test_speaker: 'zoe' is not in"):
        load_source(SpeechDataConfig(path=str(root), split="speaker", test_speaker="zoe"))


def test_extra_train_trees_join_the_training_split_only(tmp_path):
    root = fsdd_tree(tmp_path / "fsdd")
    plain = load_source(SpeechDataConfig(path=str(root), split="speaker", test_speaker="bob"))
    extra = tmp_path / "extra"
    for digit, count in ((3, 2), (7, 1)):
        for n in range(count):
            write_wav(extra / str(digit) / f"syn{n}_nohash_0.wav", tone(500.0 + n, rate=8000, seed=n), rate=8000)
    (extra / "3" / "broken.wav").write_bytes(b"RIFF....")
    write_wav(extra / "_background_noise_" / "hum.wav", tone(50.0, seed=9))  # not a label folder: ignored
    source = load_source(
        SpeechDataConfig(path=str(root), split="speaker", test_speaker="bob", extra_train=[str(extra)])
    )
    train, before = source.splits["train"], plain.splits["train"]
    assert len(train.y) == len(before.y) + 3
    np.testing.assert_array_equal(train.x[: len(before.y)], before.x)
    assert train.y[len(before.y) :].tolist() == [3, 3, 7]  # labelled by folder name
    assert all(str(extra) in name for name in train.files[len(before.y) :])
    assert train.x.shape[1] == 16000  # resampled and padded like the dataset's own clips
    assert source.notes["skipped_unreadable"] == 1
    for split in ("val", "test"):
        np.testing.assert_array_equal(source.splits[split].x, plain.splits[split].x)
    assert (source.records["split"] == "train").sum() == len(train.y)

    write_wav(extra / "seven" / "a_nohash_0.wav", tone(500.0, seed=1))
    with pytest.raises(DataError, match=r"data.extra_train: .*seven is not named after a class"):
        load_source(SpeechDataConfig(path=str(root), extra_train=str(extra)))
    with pytest.raises(ConfigError, match="data.extra_train: .*missing is not a folder"):
        load_source(SpeechDataConfig(path=str(root), extra_train=[str(tmp_path / "missing")]))
    with pytest.raises(ConfigError, match="data.extra_train: expected a folder or a list of folders"):
        SpeechDataConfig(extra_train=[3])


def test_extra_train_labels_map_other_words_onto_the_classes(tmp_path, caplog):
    # Speech Commands' digit words as extra FSDD speakers: folder "three" -> class "3"; other words skipped.
    root = fsdd_tree(tmp_path / "fsdd")
    plain = load_source(SpeechDataConfig(path=str(root), split="speaker", test_speaker="bob"))
    extra = tmp_path / "speech_commands"
    for word, count in (("three", 2), ("seven", 1), ("bed", 2)):
        for n in range(count):
            write_wav(extra / word / f"0a{n}_nohash_0.wav", tone(400.0 + n, seed=n))
    write_wav(extra / "_background_noise_" / "hum.wav", tone(50.0, seed=9))
    (extra / "testing_list.txt").write_text("three/0a0_nohash_0.wav\n")  # its own test split: training clips here
    config = SpeechDataConfig(
        path=str(root), split="speaker", test_speaker="bob", extra_train=[str(extra)],
        extra_train_labels={"three": 3, "seven": "7", "nine": "9"},
    )  # fmt: skip
    assert config.extra_train_labels == {"three": "3", "seven": "7", "nine": "9"}  # YAML's 3 is the class "3"
    given = load_config(SpeechConfig, None, [f"data.extra_train=[{extra}]", "data.extra_train_labels={three: 3}"])
    assert given.data.extra_train_labels == {"three": "3"}
    with caplog.at_level(logging.INFO, logger="pipelines.speech_commands.data"):
        source = load_source(config)
    train, before = source.splits["train"], plain.splits["train"]
    assert len(train.y) == len(before.y) + 3
    assert train.y[len(before.y) :].tolist() == [7, 3, 3]  # folders in name order: seven, three
    assert not any("/bed/" in name for name in train.files)
    assert "skipped the folders data.extra_train_labels does not name: ['bed']" in caplog.text
    for split in ("val", "test"):
        np.testing.assert_array_equal(source.splits[split].x, plain.splits[split].x)

    with pytest.raises(ConfigError, match=r"data.extra_train_labels: 'three' maps to 'three', which is not a class"):
        load_source(SpeechDataConfig(path=str(root), extra_train=str(extra), extra_train_labels={"three": "three"}))
    with pytest.raises(DataError, match=r"has none of the folders data.extra_train_labels names \(zero\)"):
        load_source(SpeechDataConfig(path=str(root), extra_train=str(extra), extra_train_labels={"zero": "0"}))
    with pytest.raises(ConfigError, match="data.extra_train_labels: set, but data.extra_train names no folder"):
        SpeechDataConfig(extra_train_labels={"zero": "0"})
    for bad in (["zero", "0"], {}, {"zero": ["0"]}, {"zero": True}):
        with pytest.raises(ConfigError, match="data.extra_train_labels: expected"):
            SpeechDataConfig(extra_train=str(extra), extra_train_labels=bad)


def test_folders_layout_and_bad_files_are_skipped(tmp_path):
    root = folders_tree(tmp_path, per_label=30)
    for clip in ("clip000", "clip001"):  # recorders that write upper-case extensions
        (root / "high" / f"{clip}.wav").rename(root / "high" / f"{clip}.WAV")
    (root / "low" / "broken.wav").write_bytes(b"RIFF....")
    write_wav(root / "mid" / "quiet.wav", np.zeros(8000, "float32"))
    source = load_source(SpeechDataConfig(path=str(root)))
    assert source.layout == "folders" and source.class_names == ["high", "low", "mid"]
    assert source.notes["skipped_unreadable"] == 1 and source.notes["skipped_silent"] == 1
    assert sum(len(split.y) for split in source.splits.values()) == 90
    assert sum(name.endswith(".WAV") for split in source.splits.values() for name in split.files) == 2
    assert all(len(split.y) for split in source.splits.values())


def test_bad_paths_and_values(tmp_path):
    with pytest.raises(DataError, match="is not a folder"):
        load_source(SpeechDataConfig(path=str(tmp_path / "missing")))
    with pytest.raises(DataError, match="no label folders"):
        load_source(SpeechDataConfig(path=str(tmp_path)))
    with pytest.raises(ConfigError, match="data.layout: expected one of"):
        SpeechDataConfig(layout="kaldi")
    root = speech_commands_tree(tmp_path / "sc", words=("yes",), speakers=3)
    with pytest.raises(ConfigError, match="data.split=speaker is for the FSDD layout"):
        load_source(SpeechDataConfig(path=str(root), split="speaker"))
