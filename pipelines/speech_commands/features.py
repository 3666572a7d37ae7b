"""What the model sees: log-mel features of each clip, computed inside the model, and their statistics.

`LogMelSpectrogram` is written with `keras.ops` and registered, so a saved `.keras` model reloads
with safe mode on once this module is imported. `keras.layers.MelSpectrogram` is not used: its
`top_db` floor is taken from the maximum over the whole batch, so one clip's features (and its
served prediction) would depend on the other clips sent with it; here it is taken per clip.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import keras
import numpy as np
import tensorflow as tf
from keras import ops

if TYPE_CHECKING:
    from pipelines.speech_commands.task import SpeechFeaturesConfig

_TFLITE_MIN_QUANTIZED_ELEMENTS = 1024  # constants this large get int8 weights in dynamic-range mode


def mel_filterbank(
    num_mel_bins: int, fft_length: int, sample_rate: int, min_freq: float = 20.0, max_freq: float | None = None
) -> np.ndarray:
    """HTK-style triangular mel filters (`tf.signal.linear_to_mel_weight_matrix`).

    Args:
        num_mel_bins: Filters.
        fft_length: FFT size; the filters cover its `fft_length // 2 + 1` bins from 0 Hz to Nyquist.
        sample_rate: In Hz.
        min_freq: Lowest filter edge in Hz. Default: `20.0`.
        max_freq: Highest filter edge in Hz; `None` is `sample_rate / 2`. Default: `None`.

    Returns:
        float32 `(fft_length // 2 + 1, num_mel_bins)`.
    """
    matrix = tf.signal.linear_to_mel_weight_matrix(
        num_mel_bins, fft_length // 2 + 1, sample_rate, min_freq, max_freq or sample_rate / 2, dtype=tf.float64
    )  # computed in float64: the float32 matrix is rounded once, whatever the band
    return matrix.numpy().astype("float32")


@keras.saving.register_keras_serializable(package="pipelines", name="LogMelSpectrogram")
class LogMelSpectrogram(keras.layers.Layer):
    """Waveform -> log mel energies per frame, clip by clip (no batch statistics).

    A Hann window of `frame_seconds` every `hop_seconds`, zero-padded to the next power of two for
    the FFT (TFLite's RFFT needs one), power spectrum, triangular mel filters, `log(mel + 1e-6)`,
    then made relative to the clip's loudest value and floored `top_db` below it (natural-log
    units, as dB / 10 * ln 10). That makes the features independent of the recording level, and
    digital silence and faint noise look alike.

    Args:
        sample_rate: Input rate in Hz. Default: `16000`.
        num_mel_bins: Mel filters. Default: `40`.
        frame_seconds: Window length. Default: `0.025`.
        hop_seconds: Hop between frames. Default: `0.010`.
        min_freq: Lowest filter edge in Hz. Default: `20.0`.
        max_freq: Highest filter edge in Hz; `None` is `sample_rate / 2`. Default: `None`.
        top_db: Floor, in dB below the clip's maximum; `None` keeps absolute log energies.
            Default: `80.0`.

    Call arguments:
        inputs: `(batch, samples)` float waveforms in [-1, 1].

    Returns:
        `(batch, frames, num_mel_bins)` with `frames = 1 + (samples - fft_length) // hop`.

    Example:
        >>> LogMelSpectrogram()(np.zeros((2, 16000), "float32")).shape   # (2, 97, 40)
    """

    def __init__(
        self,
        sample_rate=16000,
        num_mel_bins=40,
        frame_seconds=0.025,
        hop_seconds=0.010,
        min_freq=20.0,
        max_freq=None,
        top_db=80.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        for name, value in (("sample_rate", sample_rate), ("num_mel_bins", num_mel_bins)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"Expected a positive integer for {name}. Received: {name}={value!r}")
        if not 0 < hop_seconds <= frame_seconds:
            raise ValueError(
                "Expected 0 < hop_seconds <= frame_seconds. "
                f"Received: hop_seconds={hop_seconds!r}, frame_seconds={frame_seconds!r}"
            )
        self.sample_rate = sample_rate
        self.num_mel_bins = num_mel_bins
        self.frame_seconds = frame_seconds
        self.hop_seconds = hop_seconds
        self.min_freq = min_freq
        self.max_freq = max_freq
        self.top_db = top_db
        self.frame_length = int(round(frame_seconds * sample_rate))
        self.hop_length = int(round(hop_seconds * sample_rate))
        self.fft_length = 2 ** math.ceil(math.log2(self.frame_length))
        self.filterbank = mel_filterbank(num_mel_bins, self.fft_length, sample_rate, min_freq, max_freq)
        width = max(1, (_TFLITE_MIN_QUANTIZED_ELEMENTS - 1) // self.filterbank.shape[0])
        self._filter_chunks = [self.filterbank[:, i : i + width] for i in range(0, num_mel_bins, width)]

    def frames(self, samples: int) -> int:
        """Frames produced for a clip.

        Args:
            samples: The clip's length.

        Returns:
            `1 + (samples - fft_length) // hop_length`.
        """
        return 1 + (samples - self.fft_length) // self.hop_length

    def call(self, inputs):
        real, imag = ops.stft(
            ops.cast(inputs, "float32"),
            sequence_length=self.frame_length,
            sequence_stride=self.hop_length,
            fft_length=self.fft_length,
            window="hann",
            center=False,
        )
        power = ops.square(real) + ops.square(imag)
        # TFLite's dynamic-range quantization turns a matmul with a constant of 1024 or more elements
        # into a hybrid op that quantizes its input to 8 bits per frame: the power spectrum's quiet
        # bins become zero and the log is off by up to 16. Filter chunks below that size stay float.
        mel = ops.concatenate(
            [ops.matmul(power, ops.convert_to_tensor(chunk)) for chunk in self._filter_chunks], axis=-1
        )
        log_mel = ops.log(mel + 1e-6)
        if self.top_db is None:
            return log_mel
        relative = log_mel - ops.max(log_mel, axis=(1, 2), keepdims=True)
        return ops.maximum(relative, -self.top_db * math.log(10.0) / 10.0)

    def compute_output_shape(self, input_shape):
        samples = input_shape[-1]
        return (input_shape[0], None if samples is None else self.frames(samples), self.num_mel_bins)

    def get_config(self):
        config = {
            "sample_rate": self.sample_rate,
            "num_mel_bins": self.num_mel_bins,
            "frame_seconds": self.frame_seconds,
            "hop_seconds": self.hop_seconds,
            "min_freq": self.min_freq,
            "max_freq": self.max_freq,
            "top_db": self.top_db,
        }
        return {**super().get_config(), **config}


def front_end(features_config: SpeechFeaturesConfig, sample_rate: int) -> LogMelSpectrogram:
    """The log-mel layer of a config (also used to compute the normalisation statistics).

    Args:
        features_config: The `features` group.
        sample_rate: `data.sample_rate`, in Hz.

    Returns:
        A `LogMelSpectrogram` named `log_mel`.
    """
    return LogMelSpectrogram(
        sample_rate=sample_rate,
        num_mel_bins=features_config.num_mel_bins,
        min_freq=features_config.mel_min_hz,
        max_freq=features_config.mel_max_hz,
        top_db=features_config.top_db,
        name="log_mel",
    )


def feature_statistics(
    features_config: SpeechFeaturesConfig,
    sample_rate: int,
    waveforms: np.ndarray,
    limit: int = 2000,
    batch_size: int = 250,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-mel-bin mean and variance of the log-mel features of the training clips.

    Args:
        features_config: The `features` group (the front end's settings).
        sample_rate: `data.sample_rate`, in Hz.
        waveforms: Training clips `(n, samples)`, in any order (datasets list them word by word).
        limit: At most this many clips, drawn at random without replacement. Default: `2000`.
        batch_size: Clips per front-end call. Default: `250`.
        seed: Seed of the draw. Default: `0`.

    Returns:
        `(mean, variance)`, float32 `(num_mel_bins,)` each.
    """
    layer = front_end(features_config, sample_rate)
    if len(waveforms) > limit:
        chosen = np.random.default_rng(seed).choice(len(waveforms), size=limit, replace=False)
        waveforms = waveforms[np.sort(chosen)]
    total, squares, count = 0.0, 0.0, 0
    for start in range(0, len(waveforms), batch_size):
        features = np.asarray(layer(waveforms[start : start + batch_size]), dtype="float64")
        total = total + features.sum(axis=(0, 1))
        squares = squares + np.square(features).sum(axis=(0, 1))
        count += features.shape[0] * features.shape[1]
    mean = total / count
    return mean.astype("float32"), np.maximum(squares / count - mean**2, 1e-6).astype("float32")
