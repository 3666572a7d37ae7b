"""Clips streamed from disk (`data.in_memory_max_clips`): the same clips, labels and batches as in memory, in
bounded memory."""

import gc
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from pipelines import downloads
from pipelines.config import load_config
from pipelines.errors import ConfigError, DataError
from pipelines.speech_commands import augment, clip_file, data
from pipelines.speech_commands.clip_file import ClipFile, clip_batches
from pipelines.speech_commands.data import load_source
from pipelines.speech_commands.task import SpeechConfig, SpeechDataConfig
from tests.speech_commands.audio_trees import speech_commands_tree, tone, write_wav

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """The cache folder, where streamed clip files go."""
    monkeypatch.setenv(downloads.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache" / "speech_clips"


def test_a_clip_file_reads_back_like_the_array_it_was_written_from(tmp_path):
    x = np.random.default_rng(0).standard_normal((23, 40)).astype("float32")
    clips = ClipFile(tmp_path, 40)
    clips.append(x[:10])
    clips.append(x[10])  # one clip
    clips.append(x[11:])
    assert clips.shape == (23, 40) and len(clips) == 23 and clips.dtype == np.float32 and clips.nbytes == x.nbytes
    for key in (3, -1, slice(None), slice(5, 9), slice(20, 40), slice(None, None, 4), [7, 0, 7, -2], np.array([], int)):
        np.testing.assert_array_equal(clips[key], x[key])
    mask = x[:, 0] > 0
    np.testing.assert_array_equal(clips[mask], x[mask])
    np.testing.assert_array_equal(np.asarray(clips), x)
    np.testing.assert_array_equal(np.stack(list(clips)), x)
    with pytest.raises(IndexError, match="index 23 is out of bounds for axis 0 with size 23"):
        clips[[0, 23]]
    with pytest.raises(ValueError, match=r"Expected clips of shape \(k, 40\) or \(40,\). Received: shape=\(2, 39\)"):
        clips.append(np.zeros((2, 39)))
    with pytest.raises(ValueError, match="Expected a positive integer for samples. Received: samples=0"):
        ClipFile(tmp_path, 0)


def test_a_clip_file_is_deleted_when_closed_or_collected(tmp_path):
    closed, dropped = ClipFile(tmp_path, 8), ClipFile(tmp_path, 8)
    closed.append(np.ones(8))
    paths = [closed.path, dropped.path]
    assert all(path.is_file() for path in paths)
    closed.close()
    del dropped
    gc.collect()
    assert not any(path.exists() for path in paths)


def test_a_full_disk_names_the_clip_file_and_what_to_do(tmp_path, monkeypatch):
    clips = ClipFile(tmp_path, 8)

    def no_space(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(clip_file.os, "pwrite", no_space)
    with pytest.raises(DataError, match=r"clips-.*\.f32: cannot write the clips \(No space left on device\).*"
                                        r"LSTM_PIPELINES_CACHE.*data.in_memory_max_clips"):  # fmt: skip
        clips.append(np.ones(8))


def _trees(tmp_path):
    """A Speech Commands tree (12 classes: `_unknown_` and `_silence_` too) and an 8 kHz extra training tree."""
    root = speech_commands_tree(tmp_path / "sc", speakers=5)
    extra = tmp_path / "extra"
    for n, word in enumerate(("yes", "yes", "go")):
        write_wav(extra / word / f"x{n}_nohash_0.wav", tone(700.0 + n, rate=8000, seconds=1.3, seed=n), rate=8000)
    return root, extra


def test_streamed_splits_hold_the_same_clips_labels_and_files_as_in_memory(tmp_path, cache):
    root, extra = _trees(tmp_path)
    settings = {"path": str(root), "extra_train": [str(extra)]}
    held = load_source(SpeechDataConfig(**settings), seed=3)
    assert not cache.exists()  # under the limit: nothing on disk
    streamed = load_source(SpeechDataConfig(**settings, in_memory_max_clips=0), seed=3)
    assert held.class_names == streamed.class_names and "_silence_" in held.class_names
    for name in data.SPLITS:
        a, b = held.splits[name], streamed.splits[name]
        assert isinstance(a.x, np.ndarray) and isinstance(b.x, ClipFile) and b.x.path.parent == cache
        np.testing.assert_array_equal(np.asarray(b.x), a.x)  # the same float32 rows, in the same order
        np.testing.assert_array_equal(b.y, a.y)
        assert b.files == a.files
    assert any("@" in name for name in held.splits["train"].files)  # _silence_ cuts were compared
    assert sum(str(extra) in name for name in held.splits["train"].files) == 3  # so were the resampled extras
    assert held.records.equals(streamed.records)


def test_streamed_datasets_give_the_same_batches_every_epoch(tmp_path, cache):
    root, _ = _trees(tmp_path)
    held = load_source(SpeechDataConfig(path=str(root)))
    streamed = load_source(SpeechDataConfig(path=str(root), in_memory_max_clips=0))
    (x_train, y_train), (x_val, y_val) = ((held.splits[name].x, held.splits[name].y) for name in ("train", "val"))
    train, val = streamed.splits["train"], streamed.splits["val"]
    for seed in (None, 5):
        pairs = [
            (clip_batches(x_train, y_train, 8, seed), clip_batches(train.x, train.y, 8, seed)),
            (augment.evaluation_dataset(x_val, y_val, 8), augment.evaluation_dataset(val.x, val.y, 8)),
        ]
        for _ in range(2):  # a shuffled dataset reshuffles alike every epoch
            for in_memory, from_disk in pairs:
                for (x_a, y_a), (x_b, y_b) in zip(in_memory, from_disk, strict=True):
                    np.testing.assert_array_equal(x_b.numpy(), x_a.numpy())
                    np.testing.assert_array_equal(y_b.numpy(), y_a.numpy())
    batch = next(iter(augment.training_dataset(train.x, train.y, 8, seed=0)))
    assert batch[0].shape == (8, 16000) and batch[1].dtype == "int64"


@pytest.mark.slow
def test_a_streamed_run_trains_evaluates_and_serves(tmp_path, cache):
    from pipelines import workflows

    root, _ = _trees(tmp_path)
    overrides = [f"data.path={root}", "data.in_memory_max_clips=0", "train.epochs=1", "train.verbose=0",
                 "train.batch_size=16", "model.units=4", "features.num_mel_bins=16"]  # fmt: skip
    run = workflows.train("speech_commands", overrides=overrides)
    assert 0 <= run.evaluation.metrics["test_accuracy"] <= 1 and 0 <= run.evaluation.metrics["val_accuracy"] <= 1
    held = load_source(SpeechDataConfig(path=str(root)), seed=load_config(SpeechConfig, None, overrides).seed)
    assert run.evaluation.tables["test_predictions"]["file"].tolist() == held.splits["test"].files
    assert any(cache.iterdir())  # the run read its clips from files there


def test_the_limit_is_checked_and_a_disk_without_room_is_refused(tmp_path, cache, monkeypatch):
    with pytest.raises(ConfigError, match=r"^data.in_memory_max_clips: expected an integer >= 0, got -1"):
        load_config(SpeechConfig, None, ["data.in_memory_max_clips=-1"])
    with pytest.raises(ConfigError, match=r"^data.in_memory_max_clips: expected int, got 1.5"):
        load_config(SpeechConfig, None, ["data.in_memory_max_clips=1.5"])
    root, _ = _trees(tmp_path)
    monkeypatch.setattr(data.shutil, "disk_usage", lambda path: type("Usage", (), {"free": 10_000}))
    with pytest.raises(DataError, match=r"data.in_memory_max_clips: \d+ clips stream from a file of about .* GB in "
                                        r".*speech_clips, which has 0.0 GB free"):  # fmt: skip
        load_source(SpeechDataConfig(path=str(root), in_memory_max_clips=10))
    held = load_source(SpeechDataConfig(path=str(root), in_memory_max_clips=10_000))  # in memory: no disk needed
    assert isinstance(held.splits["train"].x, np.ndarray)


# Run in a fresh process, one phase after another: peak resident memory only grows, so each phase's growth is
# its own. The peak is VmHWM, not getrusage's ru_maxrss: a child's ru_maxrss starts at its parent's peak (Linux
# keeps it across fork and exec), which here is pytest's own.
MEMORY_PROBE = textwrap.dedent(
    """
    import json, sys
    import keras
    from pipelines.speech_commands.augment import evaluation_dataset, training_dataset
    from pipelines.speech_commands.data import load_source
    from pipelines.speech_commands.task import SpeechDataConfig

    def peak_mb():
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024  # kB

    model = keras.Sequential([
        keras.Input((16000,)), keras.layers.Reshape((40, 400)), keras.layers.GlobalAveragePooling1D(),
        keras.layers.Dense(8, activation="softmax"),
    ])
    model.compile("adam", "sparse_categorical_crossentropy")

    def epoch(path, limit):
        source = load_source(SpeechDataConfig(path=path, classes="all", in_memory_max_clips=limit))
        train, val, test = (source.splits[name] for name in ("train", "val", "test"))
        model.fit(training_dataset(train.x, train.y, 32), validation_data=evaluation_dataset(val.x, val.y, 32),
                  epochs=1, verbose=0)
        model.predict(evaluation_dataset(test.x, test.y, 32), verbose=0)
        return sum(len(split.y) for split in source.splits.values())

    small, big = sys.argv[1:3]
    epoch(small, 0)  # warm-up: TensorFlow's threads, tracing, tf.data's tuned buffers
    before = peak_mb()
    clips = epoch(big, 0)
    streamed = peak_mb()
    epoch(big, 10**9)
    print(json.dumps({"clips": clips, "streamed_mb": streamed - before, "in_memory_mb": peak_mb() - streamed}))
    """
)


def _tree_of_noise(root, clips, words=8):
    rng = np.random.default_rng(0)
    for n in range(clips):
        write_wav(root / f"w{n % words}" / f"s{n:05d}_nohash_0.wav", 0.3 * rng.uniform(-1, 1, 16000))
    return root


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads the peak resident memory from /proc")
def test_a_streamed_epoch_holds_a_few_batches_not_the_data_set(tmp_path, cache):
    clips = 3200
    dataset_mb = clips * 16000 * 4 / 2**20  # 195 MiB of float32 waveforms
    budget_mb = dataset_mb / 3  # batches in flight, tf.data's buffers, and the clips' names and labels
    small, big = _tree_of_noise(tmp_path / "small", 320), _tree_of_noise(tmp_path / "big", clips)
    result = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(small), str(big)],
        cwd=REPO, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert measured["clips"] == clips
    assert measured["streamed_mb"] < budget_mb, measured
    assert measured["in_memory_mb"] > 0.75 * dataset_mb, measured  # the probe sees a data set held in memory
