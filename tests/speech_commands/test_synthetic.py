"""The SYNTHETIC default data: eSpeak NG through espeakng-loader, written in the Speech Commands layout."""

import builtins
import subprocess
import sys

import numpy as np
import pytest

from pipelines.errors import DataError
from pipelines.speech_commands import synthetic
from pipelines.speech_commands.data import detect_layout, list_speech_commands, load_source, read_wav
from pipelines.speech_commands.task import SpeechDataConfig
from tests.speech_commands.audio_trees import fsdd_tree


def test_missing_espeak_names_the_extra(monkeypatch, tmp_path):
    real_import = builtins.__import__

    def no_espeak(name, *args, **kwargs):
        if name == "espeakng_loader":
            raise ImportError("No module named 'espeakng_loader'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_espeak)
    monkeypatch.setattr(synthetic.Espeak, "_instance", None)
    monkeypatch.setenv(synthetic.CACHE_ENV, str(tmp_path / "cache"))
    with pytest.raises(DataError, match=r"pip install -e '\.\[speech\]'"):
        load_source(SpeechDataConfig())


def test_synthetic_tree_has_the_speech_commands_layout(tmp_path):
    pytest.importorskip("espeakng_loader")
    root = synthetic.write_synthetic_dataset(tmp_path / "syn", words=("yes", "no", "cat"), speakers=10, seed=1)
    assert detect_layout(root) == "speech_commands"
    assert "SYNTHETIC" in (root / "README.md").read_text()
    records = list_speech_commands(root)
    assert len(records) == 30 and records["speaker"].nunique() == 10
    assert (records.groupby("speaker")["split"].nunique() == 1).all(), "a speaker stays in one split"
    assert records["split"].value_counts().to_dict() == {"train": 24, "val": 3, "test": 3}
    assert len(list((root / "_background_noise_").glob("*.wav"))) == 5
    source = load_source(SpeechDataConfig(path=str(root), classes="all"))
    clip = source.splits["train"].x[0]
    assert clip.shape == (16000,) and 0.05 < np.abs(clip).max() <= 1.0


def test_a_tree_written_twice_is_bit_identical(tmp_path):
    pytest.importorskip("espeakng_loader")
    for name in ("a", "b"):  # separate processes: eSpeak NG seeds its breath noise from the clock otherwise
        command = [sys.executable, "-m", "pipelines.speech_commands.synthetic", "--digits", "--speakers", "12"]
        subprocess.run([*command, str(tmp_path / name)], check=True, capture_output=True)
    files = sorted(path.relative_to(tmp_path / "a") for path in (tmp_path / "a").rglob("*.wav"))
    assert len(files) == 120
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)


def test_synthetic_digits_are_extra_training_data_for_fsdd(tmp_path):
    pytest.importorskip("espeakng_loader")
    synthetic.main([str(tmp_path / "digits"), "--digits", "--speakers", "3", "--sample-rate", "8000"])
    root = tmp_path / "digits"
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == [str(d) for d in range(10)]
    assert "SYNTHETIC" in (root / "README.md").read_text()
    rate, clip = read_wav(next((root / "7").glob("*.wav")))
    assert rate == 8000 and len(clip) == 8000
    spectrum = np.abs(np.fft.rfft(clip))
    assert spectrum[np.fft.rfftfreq(len(clip), 1 / rate) > 300].sum() > 0.5 * spectrum.sum()  # speech, not hum
    fsdd = fsdd_tree(tmp_path / "fsdd", speakers=("alice",))
    source = load_source(SpeechDataConfig(path=str(fsdd), extra_train=[str(root)]))
    train = source.splits["train"]
    assert np.bincount(train.y[-30:], minlength=10).tolist() == [3] * 10  # 3 speakers say every digit once


def test_default_data_is_generated_once_into_the_cache(tmp_path, monkeypatch):
    pytest.importorskip("espeakng_loader")
    monkeypatch.setenv(synthetic.CACHE_ENV, str(tmp_path))
    calls = []
    real = synthetic.write_synthetic_dataset
    monkeypatch.setattr(
        synthetic,
        "write_synthetic_dataset",
        lambda root: calls.append(root) or real(root, words=synthetic.COMMANDS + ("cat",), speakers=10),
    )
    first = synthetic.ensure_default_data()
    assert synthetic.ensure_default_data() == first == synthetic.default_data_dir()
    assert len(calls) == 1 and (first / ".complete").is_file()
    source = load_source(SpeechDataConfig())
    assert source.synthetic and source.layout == "speech_commands" and len(source.class_names) == 12
