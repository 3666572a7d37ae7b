"""Tiny speech models and clips for the model and front-end tests."""

import keras
import numpy as np

from pipelines.config import load_config
from pipelines.speech_commands.model import build_speech_model
from pipelines.speech_commands.task import SpeechConfig
from tests.speech_commands.audio_trees import tone

SAMPLES = 4000  # 0.25 s clips keep these tests fast; the model takes any fixed length


def tiny_config(*overrides: str) -> SpeechConfig:
    """The default speech config with 4 units and 16 mel bins, then `overrides` (`--set` strings)."""
    return load_config(SpeechConfig, None, ["model.units=4", "features.num_mel_bins=16", *overrides])


def tiny_model(*overrides: str, classes: int = 3) -> keras.Model:
    """A compiled speech model of `tiny_config(*overrides)` over `SAMPLES`-sample clips, unit feature statistics."""
    config = tiny_config(*overrides)
    bins = config.features.num_mel_bins
    return build_speech_model(config, SAMPLES, classes, np.zeros(bins, "float32"), np.ones(bins, "float32"))


def tones(n: int = 4) -> np.ndarray:
    """`n` tones of different pitch, `SAMPLES` samples each."""
    return np.stack([tone(300.0 * (i + 1), seconds=SAMPLES / 16000, seed=i) for i in range(n)])
