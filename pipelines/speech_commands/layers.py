"""Layers that live inside the speech model: the log-mel front end and the training-only augmentations.

All are written with `keras.ops` and registered, so a saved `.keras` model reloads with safe
mode on once this module is imported. `keras.layers.MelSpectrogram` is not used: its `top_db`
floor is taken from the maximum over the whole batch, so one clip's features (and its served
prediction) would depend on the other clips sent with it; here it is taken per clip.
"""

import math

import keras
import numpy as np
from keras import ops

_TFLITE_MIN_QUANTIZED_ELEMENTS = 1024  # constants this large get int8 weights in dynamic-range mode


def mel_filterbank(num_mel_bins, fft_length, sample_rate, min_freq=20.0, max_freq=None):
    """HTK-style triangular mel filters, `(fft_length // 2 + 1, num_mel_bins)` float32."""
    max_freq = max_freq or sample_rate / 2

    def to_mel(hertz):
        return 1127.0 * np.log1p(np.asarray(hertz) / 700.0)

    bin_mels = to_mel(np.linspace(0.0, sample_rate / 2, fft_length // 2 + 1))
    edges = np.linspace(to_mel(min_freq), to_mel(max_freq), num_mel_bins + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bin_mels[:, None] - lower) / (center - lower)
    falling = (upper - bin_mels[:, None]) / (upper - center)
    return np.maximum(0.0, np.minimum(rising, falling)).astype("float32")


@keras.saving.register_keras_serializable(package="pipelines")
class LogMelSpectrogram(keras.layers.Layer):
    """Waveform -> log mel energies per frame, clip by clip (no batch statistics).

    A Hann window of `frame_seconds` every `hop_seconds`, zero-padded to the next power of two for
    the FFT (TFLite's RFFT needs one), power spectrum, triangular mel filters, `log(mel + 1e-6)`,
    then made relative to the clip's loudest value and floored `top_db` below it (natural-log
    units, as dB / 10 * ln 10). That makes the features independent of the recording level, and
    digital silence and faint noise look alike; on held-out FSDD speakers it and speed
    perturbation together raised the accuracy for the hardest speaker from 0.43 to 0.74.

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

    def frames(self, samples):
        """Frames produced for a clip of `samples` samples."""
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


@keras.saving.register_keras_serializable(package="pipelines")
class SpecAugment(keras.layers.Layer):
    """SpecAugment masks (Park et al. 2019) on `(batch, frames, bins)` features, in training only.

    Each example gets `freq_masks` bands of up to `freq_mask_width` bins and `time_masks` spans of
    up to `time_mask_width` frames set to zero (the mean, after normalisation). With
    `training=False` the layer returns its input unchanged, so a served model is unaffected.

    Args:
        freq_masks: Frequency masks per example. Default: `2`.
        freq_mask_width: Largest frequency mask, in bins. Default: `8`.
        time_masks: Time masks per example. Default: `2`.
        time_mask_width: Largest time mask, in frames. Default: `10`.
        seed: Seed of the masks. Default: `None`.

    Call arguments:
        inputs: `(batch, frames, bins)`.
        training: Python bool; masks are drawn only when true.

    Returns:
        A tensor shaped like `inputs`.

    Example:
        >>> SpecAugment(time_masks=1)(features, training=True)
    """

    def __init__(self, freq_masks=2, freq_mask_width=8, time_masks=2, time_mask_width=10, seed=None, **kwargs):
        super().__init__(**kwargs)
        for name, value in (
            ("freq_masks", freq_masks),
            ("freq_mask_width", freq_mask_width),
            ("time_masks", time_masks),
            ("time_mask_width", time_mask_width),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"Expected a non-negative integer for {name}. Received: {name}={value!r}")
        self.freq_masks = freq_masks
        self.freq_mask_width = freq_mask_width
        self.time_masks = time_masks
        self.time_mask_width = time_mask_width
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def _masked(self, batch, size, count, width):
        """Boolean `(batch, size)`: true where any of `count` random spans covers a position."""
        positions = ops.expand_dims(ops.arange(size), 0)
        masked = ops.zeros((batch, size), dtype="bool")
        for _ in range(count):
            span = ops.floor(keras.random.uniform((batch, 1), 0.0, width + 1.0, seed=self.seed_generator))
            start = ops.floor(keras.random.uniform((batch, 1), seed=self.seed_generator) * (size - span + 1.0))
            span, start = ops.cast(span, "int32"), ops.cast(start, "int32")
            masked = ops.logical_or(masked, ops.logical_and(positions >= start, positions < start + span))
        return masked

    def call(self, inputs, training=None):
        if not training or (self.freq_masks == 0 and self.time_masks == 0):
            return inputs
        batch, frames, bins = ops.shape(inputs)[0], inputs.shape[1], inputs.shape[2]
        frames = ops.shape(inputs)[1] if frames is None else frames
        freq = self._masked(batch, bins, self.freq_masks, min(self.freq_mask_width, bins))
        time = self._masked(batch, frames, self.time_masks, self.time_mask_width)
        drop = ops.logical_or(ops.expand_dims(freq, 1), ops.expand_dims(time, 2))
        return ops.where(drop, ops.zeros_like(inputs), inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = {
            "freq_masks": self.freq_masks,
            "freq_mask_width": self.freq_mask_width,
            "time_masks": self.time_masks,
            "time_mask_width": self.time_mask_width,
            "seed": self.seed,
        }
        return {**super().get_config(), **config}


@keras.saving.register_keras_serializable(package="pipelines")
class RandomEqualizer(keras.layers.Layer):
    """A random smooth gain across the mel bins of log-mel features, in training only.

    Every microphone, room and sound card colours speech with its own frequency response; a
    filter's gain is an addition to log energies. Each example gets `sum_k a_k cos(pi k (b + 1/2)
    / bins)` added to bin `b`, for `k = 1 .. components`, with each `a_k` drawn from
    `[-max_gain_db, max_gain_db]`; the result is made relative to its maximum again and floored
    `top_db` below it, as `LogMelSpectrogram` leaves it. With `training=False` the layer returns
    its input unchanged, so a served model is unaffected.

    Args:
        max_gain_db: Largest amplitude of each cosine, in dB. Default: `6.0`.
        components: Cosines in the curve (1 is a tilt). Default: `3`.
        top_db: The floor of the input, in dB below its maximum; `None` for absolute log
            energies (no re-flooring). Default: `80.0`.
        seed: Seed of the draws. Default: `None`.

    Call arguments:
        inputs: `(batch, frames, bins)` natural-log energies (`LogMelSpectrogram` output).
        training: Python bool; the features change only when true.

    Returns:
        A tensor shaped like `inputs`.

    Example:
        >>> RandomEqualizer(max_gain_db=6.0)(log_mel, training=True)
    """

    def __init__(self, max_gain_db=6.0, components=3, top_db=80.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(max_gain_db, bool) or not max_gain_db >= 0:
            raise ValueError(f"Expected a non-negative number for max_gain_db. Received: max_gain_db={max_gain_db!r}")
        if isinstance(components, bool) or not isinstance(components, int) or components < 1:
            raise ValueError(f"Expected a positive integer for components. Received: components={components!r}")
        self.max_gain_db = max_gain_db
        self.components = components
        self.top_db = top_db
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        if not training or self.max_gain_db == 0:
            return inputs
        bins = inputs.shape[-1]
        positions = (np.arange(bins) + 0.5) / bins
        basis = np.cos(np.pi * np.arange(1, self.components + 1)[:, None] * positions[None, :]).astype("float32")
        amplitude = self.max_gain_db * math.log(10.0) / 10.0
        weights = keras.random.uniform(
            (ops.shape(inputs)[0], self.components), -amplitude, amplitude, seed=self.seed_generator
        )
        gains = ops.matmul(weights, ops.convert_to_tensor(basis))  # (batch, bins)
        outputs = inputs + ops.expand_dims(gains, 1)
        if self.top_db is None:
            return outputs
        relative = outputs - ops.max(outputs, axis=(1, 2), keepdims=True)
        return ops.maximum(relative, -self.top_db * math.log(10.0) / 10.0)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = {
            "max_gain_db": self.max_gain_db,
            "components": self.components,
            "top_db": self.top_db,
            "seed": self.seed,
        }
        return {**super().get_config(), **config}


@keras.saving.register_keras_serializable(package="pipelines")
class RandomSpeedShift(keras.layers.Layer):
    """Random speed change and time shift of `(batch, samples)` waveforms, in training only.

    Each clip is resampled about its centre at a rate drawn from `[1 - max_speed_change,
    1 + max_speed_change]` (tempo and pitch together; `> 1` is faster and higher), shifted by up
    to `max_shift` samples either way, linearly interpolated, with zeros beyond its ends. It is a
    layer rather than a tf.data map: in the input pipeline its gathers stalled the training step
    on 2 cores (epochs 2x slower than on constant batches), inside the step they cost ~20 %.

    Args:
        max_speed_change: Largest relative speed change, in [0, 0.5). Default: `0.15`.
        max_shift: Largest shift in samples. Default: `1600`.
        seed: Seed of the draws. Default: `None`.

    Call arguments:
        inputs: `(batch, samples)` with a fixed `samples`.
        training: Python bool; the clips change only when true.

    Returns:
        A tensor shaped like `inputs`.

    Example:
        >>> RandomSpeedShift(0.1, 800)(waveforms, training=True)
    """

    def __init__(self, max_speed_change=0.15, max_shift=1600, seed=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(max_speed_change, bool) or not 0.0 <= max_speed_change < 0.5:
            raise ValueError(
                f"Expected a float in [0, 0.5) for max_speed_change. Received: max_speed_change={max_speed_change!r}"
            )
        if isinstance(max_shift, bool) or not isinstance(max_shift, int) or max_shift < 0:
            raise ValueError(f"Expected a non-negative integer for max_shift. Received: max_shift={max_shift!r}")
        self.max_speed_change = max_speed_change
        self.max_shift = max_shift
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        if not training or (self.max_speed_change == 0 and self.max_shift == 0):
            return inputs
        batch, samples = ops.shape(inputs)[0], inputs.shape[1]
        rate = keras.random.uniform(
            (batch, 1), 1.0 - self.max_speed_change, 1.0 + self.max_speed_change, seed=self.seed_generator
        )
        shift = ops.floor(
            keras.random.uniform((batch, 1), -self.max_shift, self.max_shift + 1.0, seed=self.seed_generator)
        )
        return resample(
            inputs, samples, rate, shift, margin=int(samples * self.max_speed_change / 2) + self.max_shift + 2
        )

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = {"max_speed_change": self.max_speed_change, "max_shift": self.max_shift, "seed": self.seed}
        return {**super().get_config(), **config}


def resample(waveforms, samples, rate, shift, margin):
    """`out[t] = in[c + (t - c) * rate - shift]` per clip (`c` the centre), linearly interpolated,
    zeros outside; `margin` must cover the reach beyond either end. Two flat gathers per batch."""
    batch = ops.shape(waveforms)[0]
    width = samples + 2 * margin
    flat = ops.reshape(ops.pad(waveforms, [[0, 0], [margin, margin]]), (-1,))
    center = (samples - 1) / 2
    source = (center + margin - shift - center * rate) + ops.expand_dims(ops.arange(samples, dtype="float32"), 0) * rate
    below = ops.floor(source)
    index = ops.cast(below, "int32") + ops.expand_dims(ops.arange(batch, dtype="int32"), 1) * width
    left, right = ops.take(flat, index), ops.take(flat, index + 1)
    return left + (right - left) * (source - below)


@keras.saving.register_keras_serializable(package="pipelines")
class RandomTrim(keras.layers.Layer):
    """Cut `(batch, samples)` waveforms tightly around their loud part, at random, in training only.

    Some recordings are cut close to the word, with no lead-in or trailing silence, and padded with
    digital silence; a model trained only on loosely cut clips has never seen that. With probability
    `probability`, a clip's energy is taken over frames of `frame_samples`; everything before the
    first and after the last frame within a cut of `min_db` to `max_db` dB (drawn per clip) below
    the loudest is set to zero, as a tight cut padded with digital silence would be. With
    `training=False` the layer returns its input unchanged, so a served model is unaffected.

    Args:
        probability: Chance that a clip is cut. Default: `0.5`.
        min_db: Tightest cut, in dB below the loudest frame. Default: `15.0`.
        max_db: Loosest cut, in dB below the loudest frame. Default: `30.0`.
        frame_samples: Samples per energy frame (10 ms at 16 kHz). Default: `160`.
        seed: Seed of the draws. Default: `None`.

    Call arguments:
        inputs: `(batch, samples)` with a fixed `samples` of at least `frame_samples`.
        training: Python bool; the clips change only when true.

    Returns:
        A tensor shaped like `inputs`.

    Example:
        >>> RandomTrim(probability=0.5, min_db=15.0, max_db=30.0)(waveforms, training=True)
    """

    def __init__(self, probability=0.5, min_db=15.0, max_db=30.0, frame_samples=160, seed=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(probability, bool) or not 0.0 <= probability <= 1.0:
            raise ValueError(f"Expected a probability in [0, 1]. Received: probability={probability!r}")
        if not 0.0 < min_db <= max_db:
            raise ValueError(f"Expected 0 < min_db <= max_db. Received: min_db={min_db!r}, max_db={max_db!r}")
        if isinstance(frame_samples, bool) or not isinstance(frame_samples, int) or frame_samples < 1:
            raise ValueError(
                f"Expected a positive integer for frame_samples. Received: frame_samples={frame_samples!r}"
            )
        self.probability = probability
        self.min_db = min_db
        self.max_db = max_db
        self.frame_samples = frame_samples
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        if not training or self.probability == 0:
            return inputs
        batch, samples = ops.shape(inputs)[0], inputs.shape[1]
        frames = samples // self.frame_samples
        framed = ops.reshape(inputs[:, : frames * self.frame_samples], (-1, frames, self.frame_samples))
        level = 10.0 * ops.log10(ops.mean(ops.square(framed), axis=-1) + 1e-12)
        cut_db = keras.random.uniform((batch, 1), self.min_db, self.max_db, seed=self.seed_generator)
        loud = ops.cast(level >= ops.max(level, axis=1, keepdims=True) - cut_db, "int32")
        first = ops.argmax(loud, axis=1)
        last = frames - 1 - ops.argmax(ops.flip(loud, axis=1), axis=1)
        frame_of = np.minimum(np.arange(samples) // self.frame_samples, frames - 1).astype("int32")[None, :]
        keep = ops.logical_and(frame_of >= ops.expand_dims(first, 1), frame_of <= ops.expand_dims(last, 1))
        chosen = keras.random.uniform((batch, 1), seed=self.seed_generator) < self.probability
        return ops.where(ops.logical_and(chosen, ops.logical_not(keep)), ops.zeros_like(inputs), inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = {
            "probability": self.probability,
            "min_db": self.min_db,
            "max_db": self.max_db,
            "frame_samples": self.frame_samples,
            "seed": self.seed,
        }
        return {**super().get_config(), **config}
