"""Training-only augmentation: background noise mixed in tf.data, speed, shift and SpecAugment in the model.

Noise mixing runs in the input pipeline, not in the model, so the served model never sees it and
the noise bank (up to minutes of audio) is not saved with the model. The other augmentations are
registered layers inside the model, active only with `training=True`: speed change and time shift
(`RandomSpeedShift`, on the waveform) and SpecAugment (`SpecAugment`, on the normalised log-mel
features). A saved `.keras` model reloads with safe mode on once this module is imported.
"""

from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from pipelines.speech_commands.clip_file import ClipFile, clip_batches


def noise_mixer(
    noise: np.ndarray, clip_samples: int, batch_size: int, noise_probability: float, noise_max_gain: float
) -> Callable:
    """A function `(waveforms, labels) -> (noisy, labels)` on batches, for `Dataset.map`.

    The noise of a batch is one contiguous stretch of the (tiled) bank cut into clips: a slice and
    a multiply-add, cheap enough that fit through this pipeline runs as fast as on constant batches.

    Args:
        noise: 1-D float32 noise bank.
        clip_samples: Samples per clip.
        batch_size: Largest batch the function gets.
        noise_probability: Chance that a clip gets noise mixed in.
        noise_max_gain: Noise is scaled by a gain drawn uniformly from `[0, noise_max_gain]`.

    Returns:
        The function.
    """
    repeats = -(-(batch_size + 1) * clip_samples // len(noise))
    bank = tf.constant(np.tile(np.asarray(noise, dtype="float32"), repeats))

    def mix(waveforms, labels):
        batch = tf.shape(waveforms)[0]
        start = tf.random.uniform((), 0, tf.shape(bank)[0] - batch * clip_samples, dtype=tf.int32)
        segments = tf.reshape(bank[start : start + batch * clip_samples], (batch, clip_samples))
        gain = tf.random.uniform((batch, 1), 0.0, noise_max_gain)
        gain *= tf.cast(tf.random.uniform((batch, 1)) < noise_probability, tf.float32)
        return waveforms + gain * segments, labels

    return mix


def training_dataset(
    x: np.ndarray | ClipFile, y: np.ndarray, batch_size: int, augment: Callable | None = None, seed: int = 0
) -> tf.data.Dataset:
    """Shuffled, batched, augmented (when `augment` is given) and prefetched tf.data pipeline.

    Args:
        x: Waveforms `(n, samples)`: an array, or a `ClipFile` read a batch at a time.
        y: Labels `(n,)`.
        batch_size: Clips per batch.
        augment: A batch function such as `noise_mixer`'s, or `None`. Default: `None`.
        seed: Seed of the shuffle. Default: `0`.

    Returns:
        A `tf.data.Dataset` of `(waveforms, labels)` batches.
    """
    dataset = clip_batches(x, y, batch_size, shuffle_seed=seed)
    if augment is not None:
        dataset = dataset.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def evaluation_dataset(x: np.ndarray | ClipFile, y: np.ndarray, batch_size: int) -> tf.data.Dataset:
    """Batched, unshuffled, unaugmented tf.data pipeline (validation).

    Args:
        x: Waveforms `(n, samples)`: an array, or a `ClipFile` read a batch at a time.
        y: Labels `(n,)`.
        batch_size: Clips per batch.

    Returns:
        A `tf.data.Dataset` of `(waveforms, labels)` batches.
    """
    return clip_batches(x, y, batch_size).prefetch(tf.data.AUTOTUNE)


@keras.saving.register_keras_serializable(package="pipelines", name="RandomSpeedShift")
class RandomSpeedShift(keras.layers.Layer):
    """Random speed change and time shift of `(batch, samples)` waveforms, in training only.

    Each clip is resampled about its centre at a rate drawn from `[1 - max_speed_change,
    1 + max_speed_change]` (tempo and pitch together; `> 1` is faster and higher), shifted by up
    to `max_shift` samples either way, linearly interpolated, with zeros beyond its ends. It is a
    layer rather than a tf.data map: in the input pipeline its gathers stall the training step,
    inside the step they cost little.

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
        margin = int(samples * self.max_speed_change / 2) + self.max_shift + 2
        return stretch_and_shift(inputs, samples, rate, shift, margin=margin)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = {"max_speed_change": self.max_speed_change, "max_shift": self.max_shift, "seed": self.seed}
        return {**super().get_config(), **config}


def stretch_and_shift(waveforms: Any, samples: int, rate: Any, shift: Any, margin: int) -> Any:
    """`out[t] = in[c + (t - c) * rate - shift]` per clip (`c` the centre), linearly interpolated, zeros outside.

    Two flat gathers per batch.

    Args:
        waveforms: `(batch, samples)` tensor.
        samples: Its (fixed) clip length.
        rate: `(batch, 1)` speed factors (`> 1` is faster and higher).
        shift: `(batch, 1)` whole-sample shifts.
        margin: Zeros padded on each side; must cover the reach beyond either end.

    Returns:
        A `(batch, samples)` tensor.
    """
    batch = ops.shape(waveforms)[0]
    width = samples + 2 * margin
    flat = ops.reshape(ops.pad(waveforms, [[0, 0], [margin, margin]]), (-1,))
    center = (samples - 1) / 2
    source = (center + margin - shift - center * rate) + ops.expand_dims(ops.arange(samples, dtype="float32"), 0) * rate
    below = ops.floor(source)
    index = ops.cast(below, "int32") + ops.expand_dims(ops.arange(batch, dtype="int32"), 1) * width
    left, right = ops.take(flat, index), ops.take(flat, index + 1)
    return left + (right - left) * (source - below)


@keras.saving.register_keras_serializable(package="pipelines", name="SpecAugment")
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
