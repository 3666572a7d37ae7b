"""Keyword spotting in long recordings: posteriors every hop, smoothed, thresholded, one detection per word spoken.

A model that streams (`streaming_model.can_stream`: `model.architecture: zoo` with a unidirectional
variant) runs hop by hop with its state carried between calls: one step of a few frames per hop.
Any other model (the shipped CRNN, the attention RNN, a bidirectional or attention variant, an
ensemble) runs whole on the last clip length of audio ending at every hop (a sliding window): the
same answer a served model gives to that second of audio, at the cost of one full model call per
hop (50 per second of audio at the 20 ms default), batched.

Detection (`detect`), with the settings of the `spotting` config group: each class's probability
is averaged over the last `smoothing_seconds` of hops; at a hop where the highest averaged
probability of a reportable word (any class but `_silence_` and `_unknown_`) reaches `threshold`,
no detection was made in the last `refractory_seconds`, and the score fell below the threshold
since the last detection (a word the model holds for longer than the refractory period is
reported once), that word is reported. `end` is the
time of that hop's end (when the detector decides), `start` one clip length earlier (the audio the
decision rests on, from 0 at the latest), `confidence` the averaged probability.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING

import keras
import numpy as np
import pandas as pd

from pipelines.errors import DataError
from pipelines.speech_commands.data import AudioError, read_wav, resample, wav_files
from pipelines.speech_commands.streaming_model import (
    build_streaming_model,
    can_stream,
    compiled_step,
    stream_probabilities,
)

if TYPE_CHECKING:
    from pipelines.speech_commands.task import SpeechSpottingConfig

NEVER_REPORTED = ("_silence_", "_unknown_")
COLUMNS = ["file", "word", "start", "end", "confidence"]
logger = logging.getLogger(__name__)


def detect(
    probabilities: np.ndarray, class_names: list[str], settings: SpeechSpottingConfig, clip_seconds: float
) -> pd.DataFrame:
    """Detections in a track of per-hop class probabilities (the rule of the module docstring).

    Args:
        probabilities: `(hops, classes)`, row `t` after the audio up to `(t + 1) * hop_seconds`.
        class_names: The model's classes.
        settings: The `spotting` group (`hop_seconds`, `smoothing_seconds`, `threshold`,
            `refractory_seconds`).
        clip_seconds: The model's clip length (how far back `start` lies).

    Returns:
        A DataFrame `word, start, end, confidence` (seconds), in time order.
    """
    hop = settings.hop_seconds
    reportable = [i for i, name in enumerate(class_names) if name not in NEVER_REPORTED]
    window = max(1, int(round(settings.smoothing_seconds / hop)))
    smoothed = pd.DataFrame(np.asarray(probabilities, "float64")[:, reportable]).rolling(window, min_periods=1).mean()
    smoothed = smoothed.to_numpy()
    best = smoothed.argmax(axis=1) if len(smoothed) else np.zeros(0, int)
    score = smoothed[np.arange(len(smoothed)), best] if len(smoothed) else np.zeros(0)
    refractory = int(round(settings.refractory_seconds / hop))
    rows, free_from, previous = [], 0, -2
    for t in np.flatnonzero(score >= settings.threshold):
        # One detection per stretch above the threshold: the next needs a fall below it in between.
        rearmed, previous = t > previous + 1, t
        if t < free_from or not (rearmed or not rows):
            continue
        end = round((t + 1) * hop, 3)  # milliseconds: the hop grid, without float noise such as 1.3000000000000003
        rows.append((class_names[reportable[best[t]]], round(max(0.0, end - clip_seconds), 3), end, float(score[t])))
        free_from = t + 1 + refractory
    frame = pd.DataFrame(rows, columns=COLUMNS[1:])
    return frame.astype({"start": "float64", "end": "float64", "confidence": "float64"})


def sliding_probabilities(
    model: keras.Model, waveform: np.ndarray, hop_samples: int, batch_size: int = 128
) -> np.ndarray:
    """The full model on the clip-length window ending at every hop (zeros before the recording starts).

    Args:
        model: A speech model taking `(batch, clip_samples)` waveforms.
        waveform: `(samples,)` float32 at the model's rate.
        hop_samples: Samples between windows.
        batch_size: Windows per model call. Default: `128`.

    Returns:
        float32 `(hops, classes)`, row `t` for the window ending at `(t + 1) * hop_samples`.
    """
    clip = int(model.input_shape[-1])
    hops = max(1, math.ceil(len(waveform) / hop_samples))
    padded = np.zeros(clip + hops * hop_samples, "float32")
    padded[clip : clip + len(waveform)] = waveform
    windows = np.lib.stride_tricks.sliding_window_view(padded, clip)[hop_samples::hop_samples][:hops]
    rows = [
        np.asarray(model(np.ascontiguousarray(windows[start : start + batch_size]), training=False))
        for start in range(0, hops, batch_size)
    ]
    return np.concatenate(rows).astype("float32")


class Spotter:
    """Per-hop class probabilities of a speech model over recordings of any length.

    Args:
        model: A trained speech model (`build_speech_model`), streamable or not.
        hop_seconds: Audio per hop.

    Attributes:
        mode: `"streaming"` (state carried hop by hop) or `"sliding window"` (the whole model every hop).
        sample_rate: The model's rate, Hz.
        clip_seconds: The model's clip length.
        hop_samples: Samples per hop.
    """

    def __init__(self, model: keras.Model, hop_seconds: float, sample_rate: int) -> None:
        self.model = model
        self.sample_rate = sample_rate
        self.clip_seconds = int(model.input_shape[-1]) / sample_rate
        if can_stream(model):
            self.mode = "streaming"
            self.streaming = build_streaming_model(model, hop_seconds)
            self.hop_samples = self.streaming.layout.hop_samples
            self._step = compiled_step(self.streaming)
        else:
            self.mode = "sliding window"
            self.streaming = None
            self.hop_samples = int(round(hop_seconds * sample_rate))
            if self.hop_samples < 1:
                raise DataError(f"spotting.hop_seconds: {hop_seconds!r} s is less than one sample at {sample_rate} Hz")

    def probabilities(self, waveform: np.ndarray) -> np.ndarray:
        """`(hops, classes)` probabilities over one recording at the model's rate.

        Args:
            waveform: `(samples,)` float32.

        Returns:
            float32 `(ceil(samples / hop_samples), classes)`.
        """
        if self.streaming is not None:
            return stream_probabilities(self._step, waveform, self.hop_samples, self.streaming.layout.state_size)
        return sliding_probabilities(self.model, waveform, self.hop_samples)


def read_recording(path: str | Path, sample_rate: int) -> np.ndarray:
    """One WAV file as a mono float32 waveform at `sample_rate` (downmixed and resampled as `predict` does).

    Args:
        path: A WAV file of any length.
        sample_rate: The model's rate, Hz.

    Returns:
        `(samples,)` float32.

    Raises:
        AudioError: As `data.read_wav`, naming the file.
    """
    rate, samples = read_wav(path)
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    return np.asarray(resample(samples, rate, sample_rate), "float32")


def recordings(path: str | Path) -> list[Path]:
    """The WAV file `path`, or the WAV files under the folder `path` (recursively, sorted).

    Args:
        path: A file or folder.

    Returns:
        The files.

    Raises:
        DataError: `path` does not exist, or the folder holds no WAV file.
    """
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(f"{path}: no such file or folder")
    files = wav_files(path, recursive=True)
    if not files:
        raise DataError(f"{path}: no WAV files in this folder")
    return files


def spot(
    model: keras.Model, class_names: list[str], sample_rate: int, input_path: str | Path, settings: SpeechSpottingConfig
) -> pd.DataFrame:
    """Detections in one recording or every recording of a folder.

    Args:
        model: A trained speech model.
        class_names: Its classes.
        sample_rate: Its rate, Hz.
        input_path: A WAV file, or a folder of them (searched recursively).
        settings: The `spotting` config group.

    Returns:
        A DataFrame `file, word, start, end, confidence` (seconds).

    Raises:
        AudioError: The one file given by name, or every file of the folder, is unreadable (in a
            folder, an unreadable file is skipped with a warning naming it).
        DataError: `input_path` does not exist or holds no WAV file.
    """
    spotter = Spotter(model, settings.hop_seconds, sample_rate)
    if spotter.mode == "sliding window":
        logger.warning(
            "model %s cannot stream state by state: running the whole model on the last %g s of audio every "
            "%g s (one full model call per hop)",
            model.name,
            spotter.clip_seconds,
            settings.hop_seconds,
        )
    files, single = recordings(input_path), Path(input_path).is_file()
    tables, problems = [], []
    for file in files:
        try:
            waveform = read_recording(file, sample_rate)
        except AudioError as error:
            if single:
                raise
            problems.append(str(error))
            continue
        found = detect(spotter.probabilities(waveform), class_names, settings, spotter.clip_seconds)
        found.insert(0, "file", str(file))
        tables.append(found)
        logger.info("%s: %.1f s, %d detection(s) (%s)", file, len(waveform) / sample_rate, len(found), spotter.mode)
    if problems:
        logger.warning("skipped %d unreadable file(s): %s", len(problems), "; ".join(problems[:5]))
    if not tables:
        raise AudioError(f"{input_path}: no readable WAV files")
    return pd.concat(tables, ignore_index=True)[COLUMNS]
