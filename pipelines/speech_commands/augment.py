"""The training input pipeline, with background noise mixed in as a batched tf.data map.

Noise mixing runs here, not in the model, so the served model never sees it and the noise bank
(up to minutes of audio) is not saved with the model. The other training-only augmentations are
layers in the model, active only with `training=True`: speed change and time shift
(`layers.RandomSpeedShift`) and SpecAugment (`layers.SpecAugment`).
"""

import numpy as np
import tensorflow as tf


def noise_mixer(noise, clip_samples, batch_size, noise_probability, noise_max_gain, snr_db=None):
    """A function `(waveforms, labels) -> (noisy, labels)` on batches, for `Dataset.map`.

    The noise of a batch is one contiguous stretch of the (tiled) bank cut into clips: a slice and
    a multiply-add, cheap enough that fit through this pipeline runs as fast as on constant batches.

    Args:
        noise: 1-D float32 noise bank.
        clip_samples: Samples per clip.
        batch_size: Largest batch the function gets.
        noise_probability: Chance that a clip gets noise mixed in.
        noise_max_gain: Noise is scaled by a gain drawn uniformly from `[0, noise_max_gain]`.
        snr_db: `(low, high)`: instead of `noise_max_gain`, scale the noise so that the clip's RMS
            over the noise's RMS is a signal-to-noise ratio drawn uniformly from `[low, high]` dB.
            Quiet and loud recordings then get noise at the same ratios; a silent clip gets none.

    Returns:
        The function.
    """
    repeats = -(-(batch_size + 1) * clip_samples // len(noise))
    bank = tf.constant(np.tile(np.asarray(noise, dtype="float32"), repeats))

    def mix(waveforms, labels):
        batch = tf.shape(waveforms)[0]
        start = tf.random.uniform((), 0, tf.shape(bank)[0] - batch * clip_samples, dtype=tf.int32)
        segments = tf.reshape(bank[start : start + batch * clip_samples], (batch, clip_samples))
        if snr_db is None:
            gain = tf.random.uniform((batch, 1), 0.0, noise_max_gain)
        else:
            ratio_db = tf.random.uniform((batch, 1), float(snr_db[0]), float(snr_db[1]))
            clip_rms = tf.sqrt(tf.reduce_mean(tf.square(waveforms), axis=1, keepdims=True))
            noise_rms = tf.sqrt(tf.reduce_mean(tf.square(segments), axis=1, keepdims=True))
            gain = clip_rms / tf.maximum(noise_rms, 1e-9) * tf.pow(10.0, -ratio_db / 20.0)
        gain *= tf.cast(tf.random.uniform((batch, 1)) < noise_probability, tf.float32)
        return waveforms + gain * segments, labels

    return mix


def training_dataset(x, y, batch_size, augment=None, seed=0):
    """Shuffled, batched, augmented (when `augment` is given) and prefetched tf.data pipeline."""
    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    dataset = dataset.shuffle(len(x), seed=seed, reshuffle_each_iteration=True).batch(batch_size)
    if augment is not None:
        dataset = dataset.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def evaluation_dataset(x, y, batch_size):
    """Batched, unshuffled, unaugmented tf.data pipeline (validation)."""
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size).prefetch(tf.data.AUTOTUNE)
