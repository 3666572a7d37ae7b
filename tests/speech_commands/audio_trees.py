"""Tiny WAV trees in the real layouts, made of tones (one pitch per class, so they are learnable)."""

from pathlib import Path

import numpy as np
from scipy.io import wavfile

COMMANDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")


def tone(frequency, rate=16000, seconds=0.5, amplitude=0.5, seed=0):
    """A tone with a little noise, as float32 in [-1, 1]."""
    rng = np.random.default_rng(seed)
    time = np.arange(int(rate * seconds)) / rate
    wave = amplitude * np.sin(2 * np.pi * frequency * time + rng.uniform(0, 2 * np.pi))
    return (wave + 0.01 * rng.standard_normal(len(time))).astype("float32")


def write_wav(path, samples, rate=16000):
    """Write float samples as 16-bit PCM (a 2-D array writes several channels)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wavfile.write(path, rate, np.round(np.clip(samples, -1, 1 - 1 / 32768) * 32767).astype("int16"))
    return path


def pitch(index):
    return 300.0 * (index + 1)


def speech_commands_tree(root, words=COMMANDS + ("bed", "cat"), speakers=6, noise=True, lists=True):
    """Speech Commands layout: word folders, `{speaker}_nohash_{n}.wav`, lists, `_background_noise_`.

    Speaker 0 is listed for validation and speaker 1 for testing.
    """
    root = Path(root)
    val, test = [], []
    for index, word in enumerate(words):
        for speaker in range(speakers):
            name = f"spk{speaker:04d}_nohash_0.wav"
            seconds = 0.3 + 0.1 * (speaker % 5)
            write_wav(root / word / name, tone(pitch(index), seconds=seconds, seed=speaker * 100 + index))
            (val if speaker == 0 else test if speaker == 1 else []).append(f"{word}/{name}")
    if lists:
        (root / "validation_list.txt").write_text("\n".join(val) + "\n")
        (root / "testing_list.txt").write_text("\n".join(test) + "\n")
    if noise:
        rng = np.random.default_rng(1)
        write_wav(root / "_background_noise_" / "white_noise.wav", 0.3 * rng.standard_normal(16000 * 3))
    return root


def fsdd_tree(root, speakers=("alice", "bob", "carol"), indices=range(12), rate=8000):
    """FSDD layout: `recordings/{digit}_{speaker}_{index}.wav` at 8 kHz, shorter and longer than 1 s."""
    root = Path(root)
    for digit in range(10):
        for s, speaker in enumerate(speakers):
            for index in indices:
                seconds = 0.4 if index % 4 else 1.3
                samples = tone(pitch(digit) / 2, rate=rate, seconds=seconds, seed=digit * 1000 + s * 100 + index)
                write_wav(root / "recordings" / f"{digit}_{speaker}_{index}.wav", samples, rate=rate)
    return root


def folders_tree(root, labels=("low", "mid", "high"), per_label=30):
    """One folder per label, clips named so the hash split puts some in every split."""
    root = Path(root)
    for index, label in enumerate(labels):
        for n in range(per_label):
            write_wav(root / label / f"clip{n:03d}.wav", tone(pitch(2 * index), seconds=0.6, seed=index * 100 + n))
    return root
